//! Quotas (`[[policies.quota]]`): the most unique bytes a repository or a namespace (a name
//! prefix ending in `/`) may hold. Usage is kept exact by the metadata store (`meta/usage.rs`);
//! this module holds the rules and the decision, which the registry makes inside the write
//! transaction that links a blob or records a manifest (`QuotaCheck`).

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Code, Error, Result};
use crate::meta::{WriteTables, usage};

/// One `[[policies.quota]]` rule: exactly one of `repository` and `namespace`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaRule {
    /// An exact repository name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A namespace prefix ending in `/` (`team/`): every repository whose name starts with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The most unique bytes the scope may hold: an integer, or a string such as `"10GiB"`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_bytes: u64,
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses `"123"`, `"10GiB"`, `"1.5 MiB"`, `"500MB"` (KB/MB/GB/TB are powers of 1000,
/// KiB/MiB/GiB/TiB of 1024).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u64.pow(2),
        "g" | "gb" => 1000_u64.pow(3),
        "t" | "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(format!("{s:?} is not a size (use bytes or e.g. \"10GiB\")")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use bytes or e.g. \"10GiB\")"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// `n` bytes for people: `2000 B`, `9.5 MiB` (bytes up to 10 KiB, where rounding would hide
/// too much).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 10 << 10 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.1}");
    format!("{} {}", s.strip_suffix(".0").unwrap_or(&s), UNITS[i])
}

/// What a quota limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Repository(String),
    Namespace(String),
}

impl Scope {
    /// The key of its row in the `usage` table.
    pub fn key(&self) -> String {
        match self {
            Scope::Repository(r) => usage::repo_scope(r),
            Scope::Namespace(p) => usage::ns_scope(p),
        }
    }

    /// True when pushes to `repo` count toward it.
    pub fn contains(&self, repo: &str) -> bool {
        match self {
            Scope::Repository(r) => r == repo,
            Scope::Namespace(p) => repo.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Repository(r) => write!(f, "repository {r}"),
            Scope::Namespace(p) => write!(f, "namespace {p}"),
        }
    }
}

/// One compiled quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub scope: Scope,
    pub max_bytes: u64,
}

impl Quota {
    /// Refuses a change that took the scope's usage from `before` to `after` when it grew
    /// and ends above the limit (a change adding nothing, and every removal, is allowed).
    pub fn decide(&self, before: u64, after: u64) -> Result<()> {
        if after <= self.max_bytes || after <= before {
            return Ok(());
        }
        Err(Error::new(
            Code::Denied,
            format!(
                "quota of {} ({}) exceeded: {} used, this push needs {}",
                self.scope,
                human(self.max_bytes),
                human(before),
                human(after - before)
            ),
        ))
    }
}

/// The compiled quotas.
#[derive(Debug, Default, Clone)]
pub struct Quotas {
    quotas: Vec<Quota>,
}

impl Quotas {
    /// Compiles `rules`: each names exactly one repository or namespace (ending in `/`), once,
    /// with a limit above zero.
    pub fn compile(rules: &[QuotaRule]) -> Result<Quotas, String> {
        let mut quotas: Vec<Quota> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let at = format!("policies.quota[{i}]");
            let scope = match (&r.repository, &r.namespace) {
                (Some(repo), None) => {
                    crate::names::RepoName::parse(repo)
                        .map_err(|e| format!("{at}: repository {repo:?}: {e}"))?;
                    Scope::Repository(repo.clone())
                }
                (None, Some(ns)) => {
                    if !ns.ends_with('/') || ns.len() < 2 {
                        return Err(format!(
                            "{at}: namespace {ns:?} must be a name prefix ending in '/' (e.g. \"team/\")"
                        ));
                    }
                    crate::names::RepoName::parse(&format!("{ns}x"))
                        .map_err(|e| format!("{at}: namespace {ns:?}: {e}"))?;
                    Scope::Namespace(ns.clone())
                }
                _ => {
                    return Err(format!(
                        "{at}: set exactly one of `repository` and `namespace`"
                    ));
                }
            };
            if r.max_bytes == 0 {
                return Err(format!("{at}: max_bytes must be above zero"));
            }
            if quotas.iter().any(|q| q.scope == scope) {
                return Err(format!("{at}: a second quota for {scope}"));
            }
            quotas.push(Quota {
                scope,
                max_bytes: r.max_bytes,
            });
        }
        Ok(Quotas { quotas })
    }

    /// Every quota, in configuration order.
    pub fn all(&self) -> &[Quota] {
        &self.quotas
    }

    /// The namespace prefixes the quotas name (whose usage must be tracked).
    pub fn namespaces(&self) -> Vec<String> {
        self.quotas
            .iter()
            .filter_map(|q| match &q.scope {
                Scope::Namespace(p) => Some(p.clone()),
                Scope::Repository(_) => None,
            })
            .collect()
    }

    /// The quotas that pushes to `repo` count toward.
    pub fn applicable(&self, repo: &str) -> Vec<Quota> {
        self.quotas
            .iter()
            .filter(|q| q.scope.contains(repo))
            .cloned()
            .collect()
    }
}

/// The usage of a repository's quotas before a change, taken in the change's transaction.
#[derive(Debug)]
pub struct QuotaCheck {
    before: Vec<(Quota, u64)>,
}

impl QuotaCheck {
    /// Reads the usage of `quotas` in transaction `t` (tracking a namespace first if needed).
    pub fn start(t: &mut WriteTables<'_>, quotas: Vec<Quota>) -> Result<QuotaCheck> {
        let mut before = Vec::with_capacity(quotas.len());
        for q in quotas {
            if let Scope::Namespace(p) = &q.scope {
                usage::track_namespace(t, p)?;
            }
            let used = usage::get(t, &q.scope.key())?;
            before.push((q, used));
        }
        Ok(QuotaCheck { before })
    }

    /// Refuses the change (its transaction then rolls back) if it took any quota over its limit.
    pub fn finish(self, t: &WriteTables<'_>) -> Result<()> {
        for (q, before) in self.before {
            q.decide(before, usage::get(t, &q.scope.key())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repo: Option<&str>, ns: Option<&str>, max: u64) -> QuotaRule {
        QuotaRule {
            repository: repo.map(str::to_string),
            namespace: ns.map(str::to_string),
            max_bytes: max,
        }
    }

    #[test]
    fn sizes_parse_as_integers_and_units() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_bytes("1.5 MiB").unwrap(), 3 << 19);
        assert_eq!(parse_bytes("500MB").unwrap(), 500_000_000);
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn max_bytes_accepts_an_integer_or_a_string() {
        let r: QuotaRule = toml::from_str("namespace = \"team/\"\nmax_bytes = \"2KiB\"").unwrap();
        assert_eq!(r.max_bytes, 2048);
        let r: QuotaRule = toml::from_str("repository = \"a/b\"\nmax_bytes = 7").unwrap();
        assert_eq!(r.max_bytes, 7);
    }

    #[test]
    fn invalid_rules_are_refused_with_their_position() {
        let bad = [
            vec![rule(Some("a"), Some("b/"), 1)],
            vec![rule(None, None, 1)],
            vec![rule(None, Some("team"), 1)],
            vec![rule(Some("a"), None, 0)],
            vec![rule(Some("a"), None, 1), rule(Some("a"), None, 2)],
            vec![rule(Some("UPPER"), None, 1)],
        ];
        for rules in bad {
            let e = Quotas::compile(&rules).unwrap_err();
            assert!(e.starts_with("policies.quota["), "{e}");
        }
        let ok = Quotas::compile(&[rule(None, Some("team/"), 5), rule(Some("team/a"), None, 3)])
            .unwrap();
        assert_eq!(ok.applicable("team/a").len(), 2);
        assert_eq!(ok.applicable("teamx/a").len(), 0);
        assert_eq!(ok.namespaces(), vec!["team/".to_string()]);
    }

    #[test]
    fn a_change_is_refused_only_when_it_grows_past_the_limit() {
        let q = Quota {
            scope: Scope::Namespace("team/".into()),
            max_bytes: 10 << 20,
        };
        assert!(q.decide(0, 10 << 20).is_ok());
        assert!(q.decide(20 << 20, 20 << 20).is_ok(), "nothing added");
        assert!(q.decide(20 << 20, 19 << 20).is_ok(), "a removal");
        let e = q.decide(19 << 19, (19 << 19) + (1 << 20)).unwrap_err();
        assert_eq!(e.code, Code::Denied);
        assert_eq!(
            e.message,
            "quota of namespace team/ (10 MiB) exceeded: 9.5 MiB used, this push needs 1 MiB"
        );
    }
}
