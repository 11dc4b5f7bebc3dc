//! Immutable tags (`[[policies.immutable]]`): a tag matching a rule can be created once; then it
//! can be neither moved to another digest nor deleted (nor removed with the revision it names).
//! Pushing the same digest under it again is accepted (CI retries do it).
//!
//! The decisions here are pure; `registry::manifests` asks them inside the write transaction
//! that changes the tag, with the tag's current digest read in that transaction, so two pushes
//! racing for one tag end with exactly one winner.

use serde::{Deserialize, Serialize};

use super::patterns::Patterns;
use crate::error::{Code, Error, Result};

/// One `[[policies.immutable]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repository globs (`*` stays within one path segment, `**` crosses `/`); default every
    /// repository.
    pub repositories: Vec<String>,
    /// Tag globs (e.g. `v*`, `release-*`); at least one.
    pub tags: Vec<String>,
}

impl Default for ImmutableRule {
    fn default() -> Self {
        ImmutableRule {
            repositories: vec!["**".into()],
            tags: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Compiled {
    repositories: Patterns,
    tags: Patterns,
}

/// The compiled immutable-tag rules.
#[derive(Debug, Default)]
pub struct ImmutableTags {
    rules: Vec<Compiled>,
}

impl ImmutableTags {
    /// No rule: what the mirror cache (which follows its upstream) and repairs use.
    pub const NONE: ImmutableTags = ImmutableTags { rules: Vec::new() };

    pub fn compile(rules: &[ImmutableRule]) -> std::result::Result<ImmutableTags, String> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let what = format!("policies.immutable[{i}]");
            if r.tags.is_empty() {
                return Err(format!(
                    "{what}: `tags` is empty; list the tag patterns that are immutable (e.g. [\"v*\"])"
                ));
            }
            if r.repositories.is_empty() {
                return Err(format!(
                    "{what}: `repositories` is empty; leave it out for every repository (\"**\")"
                ));
            }
            out.push(Compiled {
                repositories: Patterns::compile(&r.repositories, &format!("{what}.repositories"))?,
                tags: Patterns::compile(&r.tags, &format!("{what}.tags"))?,
            });
        }
        Ok(ImmutableTags { rules: out })
    }

    fn rule_for(&self, repo: &str, tag: &str) -> Option<&Compiled> {
        self.rules
            .iter()
            .find(|r| r.repositories.matches(repo) && r.tags.matches(tag))
    }

    /// Whether tag `tag` of `repo` is immutable.
    pub fn is_immutable(&self, repo: &str, tag: &str) -> bool {
        self.rule_for(repo, tag).is_some()
    }

    /// May tag `tag` of `repo`, now pointing at `current`, point at `digest`? Creating it and
    /// re-pushing the same digest are allowed; moving an immutable tag is `DENIED`.
    pub fn check_set(
        &self,
        repo: &str,
        tag: &str,
        current: Option<&str>,
        digest: &str,
    ) -> Result<()> {
        match current {
            Some(c) if c != digest => self.check_remove(repo, tag),
            _ => Ok(()),
        }
    }

    /// May tag `tag` of `repo` be removed (deleted, or with the revision it names)?
    pub fn check_remove(&self, repo: &str, tag: &str) -> Result<()> {
        match self.rule_for(repo, tag) {
            None => Ok(()),
            Some(rule) => Err(Error::new(
                Code::Denied,
                format!(
                    "tag {tag} of {repo} is immutable (policies.immutable tags = {:?}): it cannot be moved or deleted",
                    rule.tags.source()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(repos: &[&str], tags: &[&str]) -> ImmutableTags {
        ImmutableTags::compile(&[ImmutableRule {
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }])
        .unwrap()
    }

    #[test]
    fn single_star_stays_in_one_segment_and_double_star_crosses_slashes() {
        let one = rules(&["prod/*"], &["v*"]);
        assert!(one.is_immutable("prod/app", "v1.0"));
        assert!(!one.is_immutable("prod/team/app", "v1.0"));
        let all = rules(&["prod/**"], &["v*"]);
        assert!(all.is_immutable("prod/team/app", "v1.0"));
        assert!(!all.is_immutable("dev/app", "v1.0"));
        assert!(!all.is_immutable("prod/app", "latest"));
    }

    #[test]
    fn creating_and_repushing_the_same_digest_are_allowed_moving_is_denied() {
        let r = rules(&["**"], &["v*", "release-*"]);
        r.check_set("a", "v1", None, "sha256:aa").unwrap();
        r.check_set("a", "v1", Some("sha256:aa"), "sha256:aa")
            .unwrap();
        let e = r
            .check_set("a", "v1", Some("sha256:aa"), "sha256:bb")
            .unwrap_err();
        assert_eq!(e.code, Code::Denied);
        assert!(
            e.message.contains("tag v1 of a is immutable"),
            "{}",
            e.message
        );
        assert!(e.message.contains("release-*"), "{}", e.message);
        r.check_set("a", "latest", Some("sha256:aa"), "sha256:bb")
            .unwrap();
        assert!(r.check_remove("a", "release-2").is_err());
        assert!(r.check_remove("a", "latest").is_ok());
    }

    #[test]
    fn a_rule_without_tags_or_with_a_bad_glob_is_refused() {
        let e = ImmutableTags::compile(&[ImmutableRule::default()]).unwrap_err();
        assert!(e.contains("policies.immutable[0]"), "{e}");
        let e = ImmutableTags::compile(&[ImmutableRule {
            tags: vec!["v[".into()],
            ..ImmutableRule::default()
        }])
        .unwrap_err();
        assert!(e.contains("invalid pattern"), "{e}");
    }
}
