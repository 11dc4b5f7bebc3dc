//! Retention (`[[policies.retention]]`): which tags the collector removes. The first rule whose
//! `repositories` match a repository governs it. Of that repository's tags matching the rule's
//! `tags`, those matching `protect` and immutable tags (`policies.immutable`) are never removed;
//! the others ("candidates") are ranked by push time, newest first, and a candidate is removed
//! when it is outside the `keep_last` newest candidates, or when it was neither pulled nor pushed
//! for longer than `not_pulled_for` (a tag never pulled counts from its push time). A rule names
//! at least one of the two.
//!
//! `select` is the pure decision; `gc::retention` plans it on a read snapshot and removes each
//! tag in its own write transaction that re-checks it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::immutable::ImmutableTags;
use super::patterns::Patterns;

/// One `[[policies.retention]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRule {
    /// Repository globs (`*` within one path segment, `**` across `/`); default every one.
    pub repositories: Vec<String>,
    /// The tags this rule governs; default all (`*`).
    pub tags: Vec<String>,
    /// Keep the N most recently pushed candidates.
    pub keep_last: Option<usize>,
    /// Remove candidates neither pulled nor pushed for this long (e.g. `30d`).
    #[serde(with = "humantime_serde")]
    pub not_pulled_for: Option<Duration>,
    /// Tags never removed (e.g. `latest`, `v*`).
    pub protect: Vec<String>,
}

impl Default for RetentionRule {
    fn default() -> Self {
        RetentionRule {
            repositories: vec!["**".into()],
            tags: vec!["*".into()],
            keep_last: None,
            not_pulled_for: None,
            protect: Vec::new(),
        }
    }
}

/// A rule compiled.
#[derive(Debug)]
pub struct Rule {
    repositories: Patterns,
    tags: Patterns,
    keep_last: Option<usize>,
    not_pulled_for: Option<Duration>,
    protect: Patterns,
}

/// The compiled retention rules.
#[derive(Debug, Default)]
pub struct RetentionRules {
    rules: Vec<Rule>,
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagState {
    pub tag: String,
    pub digest: String,
    /// When it was last pushed (unix seconds).
    pub pushed: u64,
    /// When it was last pulled, if ever (unix seconds).
    pub pulled: Option<u64>,
}

/// Why a tag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// Outside the `keep_last` newest candidates.
    KeepLast,
    /// Not pulled (nor pushed) for `not_pulled_for`.
    NotPulled,
}

impl RetentionRules {
    pub fn compile(rules: &[RetentionRule]) -> Result<RetentionRules, String> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let what = format!("policies.retention[{i}]");
            if r.keep_last.is_none() && r.not_pulled_for.is_none() {
                return Err(format!(
                    "{what}: set keep_last, not_pulled_for or both (the rule would remove nothing)"
                ));
            }
            if r.not_pulled_for.is_some_and(|d| d.is_zero()) {
                return Err(format!("{what}: not_pulled_for must be longer than 0s"));
            }
            if r.repositories.is_empty() || r.tags.is_empty() {
                return Err(format!(
                    "{what}: `repositories` and `tags` need a pattern (leave them out for all)"
                ));
            }
            out.push(Rule {
                repositories: Patterns::compile(&r.repositories, &format!("{what}.repositories"))?,
                tags: Patterns::compile(&r.tags, &format!("{what}.tags"))?,
                keep_last: r.keep_last,
                not_pulled_for: r.not_pulled_for,
                protect: Patterns::compile(&r.protect, &format!("{what}.protect"))?,
            });
        }
        Ok(RetentionRules { rules: out })
    }

    /// Whether any rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule governing `repo`: the first whose `repositories` match.
    pub fn rule_for(&self, repo: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.repositories.matches(repo))
    }
}

impl Rule {
    /// The tags of `repo` (all of them, `tags`) this rule removes at `now`, with why, newest
    /// push first. Protected and immutable tags are never among them.
    pub fn select(
        &self,
        repo: &str,
        mut tags: Vec<TagState>,
        immutable: &ImmutableTags,
        now: u64,
    ) -> Vec<(TagState, Reason)> {
        tags.retain(|t| {
            self.tags.matches(&t.tag)
                && !self.protect.matches(&t.tag)
                && !immutable.is_immutable(repo, &t.tag)
        });
        tags.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| a.tag.cmp(&b.tag)));
        let mut out = Vec::new();
        for (i, t) in tags.into_iter().enumerate() {
            let last_used = t.pulled.map_or(t.pushed, |p| p.max(t.pushed));
            let reason = if self.keep_last.is_some_and(|n| i >= n) {
                Some(Reason::KeepLast)
            } else if self
                .not_pulled_for
                .is_some_and(|d| now.saturating_sub(last_used) > d.as_secs())
            {
                Some(Reason::NotPulled)
            } else {
                None
            };
            if let Some(r) = reason {
                out.push((t, r));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::immutable::ImmutableRule;

    const DAY: u64 = 86_400;

    fn rule(r: RetentionRule) -> RetentionRules {
        RetentionRules::compile(&[r]).unwrap()
    }

    fn tag(name: &str, pushed: u64, pulled: Option<u64>) -> TagState {
        TagState {
            tag: name.into(),
            digest: format!("sha256:{name}"),
            pushed,
            pulled,
        }
    }

    fn names(v: &[(TagState, Reason)]) -> Vec<&str> {
        v.iter().map(|(t, _)| t.tag.as_str()).collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_pushes_and_removes_the_rest() {
        let r = rule(RetentionRule {
            keep_last: Some(2),
            ..RetentionRule::default()
        });
        let tags = vec![
            tag("a", 10, None),
            tag("b", 30, None),
            tag("c", 20, Some(99)),
            tag("d", 5, None),
        ];
        let out = r
            .rule_for("x")
            .unwrap()
            .select("x", tags, &ImmutableTags::NONE, 100);
        assert_eq!(names(&out), ["a", "d"]);
        assert!(out.iter().all(|(_, why)| *why == Reason::KeepLast));
    }

    #[test]
    fn not_pulled_for_counts_from_the_last_pull_or_else_the_push() {
        let r = rule(RetentionRule {
            not_pulled_for: Some(Duration::from_secs(30 * DAY)),
            ..RetentionRule::default()
        });
        let now = 100 * DAY;
        let tags = vec![
            tag("old-never-pulled", 10 * DAY, None),
            tag("old-pulled-lately", 10 * DAY, Some(90 * DAY)),
            tag("new", 95 * DAY, None),
            tag("old-pulled-long-ago", 10 * DAY, Some(20 * DAY)),
        ];
        let out = r
            .rule_for("x")
            .unwrap()
            .select("x", tags, &ImmutableTags::NONE, now);
        assert_eq!(names(&out), ["old-never-pulled", "old-pulled-long-ago"]);
        assert!(out.iter().all(|(_, why)| *why == Reason::NotPulled));
    }

    #[test]
    fn protected_immutable_and_ungoverned_tags_are_never_removed_nor_counted() {
        let r = rule(RetentionRule {
            repositories: vec!["team/**".into()],
            tags: vec!["build-*".into(), "latest".into(), "v*".into()],
            keep_last: Some(1),
            protect: vec!["latest".into()],
            ..RetentionRule::default()
        });
        let imm = ImmutableTags::compile(&[ImmutableRule {
            repositories: vec!["**".into()],
            tags: vec!["v*".into()],
        }])
        .unwrap();
        let tags = vec![
            tag("latest", 50, None),
            tag("v1", 40, None),
            tag("build-2", 30, None),
            tag("build-1", 20, None),
            tag("other", 1, None),
        ];
        assert!(r.rule_for("dev/app").is_none());
        let out = r
            .rule_for("team/a/app")
            .unwrap()
            .select("team/a/app", tags, &imm, 100);
        assert_eq!(names(&out), ["build-1"]);
    }

    #[test]
    fn a_rule_that_removes_nothing_or_has_a_bad_pattern_is_refused() {
        let e = RetentionRules::compile(&[RetentionRule::default()]).unwrap_err();
        assert!(e.contains("policies.retention[0]"), "{e}");
        let e = RetentionRules::compile(&[RetentionRule {
            keep_last: Some(1),
            protect: vec!["[".into()],
            ..RetentionRule::default()
        }])
        .unwrap_err();
        assert!(e.contains("protect"), "{e}");
    }

    #[test]
    fn a_rule_reads_from_toml_with_a_humane_duration() {
        let r: RetentionRule = toml::from_str(
            "repositories = [\"team/**\"]\nkeep_last = 10\nnot_pulled_for = \"30d\"\nprotect = [\"latest\"]\n",
        )
        .unwrap();
        assert_eq!(r.not_pulled_for, Some(Duration::from_secs(30 * DAY)));
        assert_eq!(r.tags, ["*"]);
        RetentionRules::compile(&[r]).unwrap();
    }
}
