//! Required signatures (`[[policies.signatures]]`): in a repository matching a rule, a manifest
//! is served by tag (`GET`/`HEAD /v2/<name>/manifests/<tag>`) only when a signature made with a
//! trusted key exists for the digest the tag names and verifies. Pulls by digest are not
//! restricted: that is how clients fetch the signatures themselves and an index's children,
//! and a digest names exactly what its holder already decided to trust.
//!
//! Verdicts are cached per compiled policy, keyed by (repository, digest, the signature
//! manifests found): a pull of a verified image costs one read snapshot and a lookup; a new or
//! deleted signature changes the key, and a reload compiles a new policy with an empty cache.

mod cosign;
mod found;
pub mod metrics;
mod notation;
mod trust;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use found::{Format, Found};

use super::patterns::Patterns;
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::registry::Registry;

/// One `[[policies.signatures]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignatureRule {
    /// Repository patterns (globs: `*` within one path segment, `**` across `/`).
    pub repositories: Vec<String>,
    /// PEM files of trusted cosign public keys (`PUBLIC KEY` blocks: ECDSA P-256/P-384/P-521,
    /// RSA, Ed25519).
    pub cosign_keys: Vec<PathBuf>,
    /// PEM files of trusted certificates for notation signatures (roots, intermediates or the
    /// signing certificates themselves).
    pub notation_certificates: Vec<PathBuf>,
}

/// A compiled rule: its patterns and its trusted material, read from the files.
#[derive(Debug)]
struct Rule {
    repositories: Patterns,
    keys: Vec<trust::PublicKey>,
    certs: trust::CertPool,
}

impl Rule {
    fn compile(i: usize, r: &SignatureRule) -> std::result::Result<Rule, String> {
        let at = |e: String| format!("policies.signatures[{i}]: {e}");
        if r.repositories.is_empty() {
            return Err(at("`repositories` is empty".into()));
        }
        if r.cosign_keys.is_empty() && r.notation_certificates.is_empty() {
            return Err(at(
                "no trusted key: give `cosign_keys` or `notation_certificates`".into(),
            ));
        }
        let repositories = Patterns::compile(&r.repositories, "repositories").map_err(at)?;
        let mut keys = Vec::new();
        for path in &r.cosign_keys {
            keys.extend(trust::load_keys(path).map_err(at)?);
        }
        let mut certs = trust::CertPool::default();
        for path in &r.notation_certificates {
            certs.load(path).map_err(at)?;
        }
        Ok(Rule {
            repositories,
            keys,
            certs,
        })
    }

    /// Why none of `sigs` is a valid signature of `target` under this rule (`None`: one is).
    fn unsatisfied(
        &self,
        reg: &Registry,
        sigs: &[Found],
        target: &notation::Target<'_>,
    ) -> Result<Option<String>> {
        let mut why = Vec::new();
        for s in sigs {
            match self.verify_one(reg, s, target)? {
                Ok(()) => return Ok(None),
                Err(e) => why.push(format!("{:?} {}: {e}", s.format, s.digest).to_lowercase()),
            }
        }
        Ok(Some(why.join("; ")))
    }

    /// Whether signature manifest `s` holds a layer that verifies for `target`.
    fn verify_one(
        &self,
        reg: &Registry,
        s: &Found,
        target: &notation::Target<'_>,
    ) -> Result<std::result::Result<(), String>> {
        let (trusted, media_types): (bool, &[&str]) = match s.format {
            Format::Cosign => (!self.keys.is_empty(), &[cosign::PAYLOAD_MEDIA_TYPE]),
            Format::Notation => (
                !self.certs.is_empty(),
                &[notation::JWS_MEDIA_TYPE, notation::COSE_MEDIA_TYPE],
            ),
        };
        if !trusted {
            return Ok(Err("no trusted key of this format".into()));
        }
        let layers = match found::layers(reg, &s.digest)? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let mut last = "no signature layer".to_string();
        for layer in layers
            .iter()
            .filter(|l| media_types.contains(&l.media_type.as_str()))
        {
            let bytes = match found::layer_bytes(reg, layer)? {
                Ok(b) => b,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let verdict = match s.format {
                Format::Cosign => match layer.annotations.get(cosign::SIGNATURE_ANNOTATION) {
                    Some(sig) => cosign::verify_layer(&bytes, sig, target.digest, &self.keys),
                    None => Err(format!("no {} annotation", cosign::SIGNATURE_ANNOTATION)),
                },
                Format::Notation => notation::verify_envelope(
                    &layer.media_type,
                    &bytes,
                    target,
                    &self.certs,
                    SystemTime::now(),
                ),
            };
            match verdict {
                Ok(()) => return Ok(Ok(())),
                Err(e) => last = e,
            }
        }
        Ok(Err(last))
    }
}

/// The outcome of a signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused, with the reason (the policy and why no signature qualified).
    Denied(String),
}

/// Cache key: repository, digest, the signature manifests found.
type CacheKey = (String, String, Vec<Found>);
/// Cached outcome: `None` allowed, `Some(why)` denied (without the tag, which varies).
type Cached = Option<String>;

/// Verdicts kept at most; the cache is cleared when full (a verdict is cheap to redo).
const CACHE_CAPACITY: usize = 4096;
/// How long a verdict is reused: certificates and signatures expire, so a verdict is redone
/// at least this often even when nothing in the registry changed.
const CACHE_TTL: Duration = Duration::from_secs(300);

/// The signature manifests found for (repository, digest), with the metadata generation
/// (`Meta::generation`) they were read at.
type FoundCache = HashMap<(String, String), ((u64, u64), Vec<Found>)>;

/// The compiled signature requirements.
#[derive(Debug, Default)]
pub struct SignaturePolicy {
    rules: Vec<Rule>,
    cache: Mutex<HashMap<CacheKey, (Cached, Instant)>>,
    /// What `found::signatures_of` returned, reused while no commit happened since: a pull of
    /// a verified tag then costs no metadata read of its own.
    found: Mutex<FoundCache>,
}

impl SignaturePolicy {
    /// Compiles the rules, reading and parsing every key and certificate file; a file that
    /// is missing or holds no usable key is an error naming the rule and the file.
    pub fn compile(rules: &[SignatureRule]) -> std::result::Result<SignaturePolicy, String> {
        Ok(SignaturePolicy {
            rules: rules
                .iter()
                .enumerate()
                .map(|(i, r)| Rule::compile(i, r))
                .collect::<std::result::Result<_, _>>()?,
            cache: Mutex::default(),
            found: Mutex::default(),
        })
    }

    /// Whether pulls by tag of `repo` need a signature.
    pub fn applies(&self, repo: &str) -> bool {
        self.rules.iter().any(|r| r.repositories.matches(repo))
    }

    /// How many verdicts are cached (for tests and diagnostics).
    pub fn cached_verdicts(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The rules matching `repo`.
    fn matching(&self, repo: &str) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.repositories.matches(repo))
            .collect()
    }

    /// The signature manifests of `digest` in `repo` (`found::signatures_of`), read again only
    /// when the metadata changed since they were last read.
    fn signatures_of(&self, reg: &Registry, repo: &str, digest: &Digest) -> Result<Vec<Found>> {
        let generation = reg.meta().generation();
        let key = (repo.to_string(), digest.to_string());
        if let Some((g, sigs)) = self
            .found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && *g == generation
        {
            return Ok(sigs.clone());
        }
        let sigs = found::signatures_of(reg, repo, digest)?;
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if found.len() >= CACHE_CAPACITY {
            found.clear();
        }
        found.insert(key, (generation, sigs.clone()));
        Ok(sigs)
    }

    fn cached(&self, key: &CacheKey) -> Option<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(c, _)| c.clone())
    }

    /// The verdict for `tag` of `repo` naming `digest` if it needs no verification: no rule
    /// matches, or a verdict for the same signatures is cached. One read snapshot, no file
    /// read: fit for the request's own thread.
    pub fn check_cached(
        &self,
        reg: &Registry,
        repo: &str,
        tag: &str,
        digest: &Digest,
    ) -> Result<Option<Verdict>> {
        if self.matching(repo).is_empty() {
            return Ok(Some(Verdict::Allowed));
        }
        let sigs = self.signatures_of(reg, repo, digest)?;
        let key = (repo.to_string(), digest.to_string(), sigs);
        Ok(self.cached(&key).map(|c| verdict(repo, tag, c)))
    }

    /// Decides whether `tag` of `repo`, naming manifest `digest` of `size` bytes, may be served.
    /// Every rule matching `repo` must be satisfied by at least one signature. Reads files on
    /// a cache miss: call from a blocking context (`check_pull` does).
    pub fn check(
        &self,
        reg: &Registry,
        repo: &str,
        tag: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Verdict> {
        let matching = self.matching(repo);
        if matching.is_empty() {
            return Ok(Verdict::Allowed);
        }
        let sigs = self.signatures_of(reg, repo, digest)?;
        let key = (repo.to_string(), digest.to_string(), sigs);
        let outcome = match self.cached(&key) {
            Some(c) => c,
            None => {
                metrics::get().verifications.inc();
                let c = self.decide(reg, &matching, &key.2, &key.1, size)?;
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(key, (c.clone(), Instant::now()));
                c
            }
        };
        Ok(verdict(repo, tag, outcome))
    }

    fn decide(
        &self,
        reg: &Registry,
        matching: &[&Rule],
        sigs: &[Found],
        digest: &str,
        size: u64,
    ) -> Result<Cached> {
        let target = notation::Target { digest, size };
        for rule in matching {
            let policy = format!(
                "is not signed by a trusted key (policies.signatures repositories = {:?})",
                rule.repositories.source()
            );
            if sigs.is_empty() {
                return Ok(Some(format!("{policy}: no signature found for {digest}")));
            }
            if let Some(why) = rule.unsatisfied(reg, sigs, &target)? {
                return Ok(Some(format!(
                    "{policy}: {} signature(s) found for {digest}, none verifies ({why})",
                    sigs.len()
                )));
            }
        }
        Ok(None)
    }
}

fn verdict(repo: &str, tag: &str, c: Cached) -> Verdict {
    match c {
        None => Verdict::Allowed,
        Some(why) => Verdict::Denied(format!("{repo}:{tag} {why}")),
    }
}

/// The check the manifest handler makes for a pull by tag: `Ok` when `repo` has no rule, or
/// the manifest `digest` that `tag` names is signed by a trusted key (or is itself a cosign
/// signature under cosign's tag); else 403 `DENIED` stating the policy.
pub async fn check_pull(
    reg: &Registry,
    repo: &str,
    tag: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let policies = reg.policies();
    if !policies.signatures.applies(repo) {
        return Ok(());
    }
    let quick = if cosign::is_cosign_tag(tag) {
        None
    } else {
        policies.signatures.check_cached(reg, repo, tag, digest)?
    };
    let verdict = match quick {
        Some(v) => v,
        None => verify_blocking(reg, policies, repo, tag, digest, size).await?,
    };
    let result = match &verdict {
        Verdict::Allowed => "allowed",
        Verdict::Denied(_) => "denied",
    };
    metrics::get()
        .checks
        .get_or_create(&metrics::ResultLabels {
            result: result.into(),
        })
        .inc();
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Denied(why) => {
            tracing::info!(reason = %why, "pull refused by policies.signatures");
            Err(Error::new(Code::Denied, why))
        }
    }
}

/// `SignaturePolicy::check` (and cosign's own tags) on the blocking pool.
async fn verify_blocking(
    reg: &Registry,
    policies: std::sync::Arc<super::Policies>,
    repo: &str,
    tag: &str,
    digest: &Digest,
    size: u64,
) -> Result<Verdict> {
    let (reg, repo, tag, digest) = (
        reg.clone(),
        repo.to_string(),
        tag.to_string(),
        digest.clone(),
    );
    tokio::task::spawn_blocking(move || {
        if cosign::is_cosign_tag(&tag) && cosign::is_cosign_artifact(&reg, &digest)? {
            return Ok(Verdict::Allowed);
        }
        policies.signatures.check(&reg, &repo, &tag, &digest, size)
    })
    .await
    .map_err(|e| Error::internal("blocking task", e))?
}

#[cfg(test)]
mod tests;
