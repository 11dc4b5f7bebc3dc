//! Tag writes under the immutable-tag policy (`policy::immutable`): pointing a tag, removing
//! it, and deleting a tag or revision on a client's behalf. Each reads the tag in the write
//! transaction that changes it, so the decision and the change are one commit.

use super::Registry;
use super::manifests::{manifest_unknown, name_unknown, remove_revision};
use crate::error::Result;
use crate::events::Target;
use crate::meta::{WriteTables, repos, tags};
use crate::names::{Reference, RepoName};
use crate::policy::immutable::ImmutableTags;

impl Registry {
    /// Deletes a tag, or a manifest revision (and every tag on it) by digest; an immutable tag
    /// (`policies.immutable`) refuses both.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.delete_manifest_under(repo, reference, true).await
    }

    /// `delete_manifest` for the mirror cache, which follows its upstream: a tag removed
    /// upstream goes from the cache whatever `policies.immutable` says.
    pub(crate) async fn delete_cached_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()> {
        self.delete_manifest_under(repo, reference, false).await
    }

    async fn delete_manifest_under(
        &self,
        repo: &RepoName,
        reference: &Reference,
        enforce_immutable: bool,
    ) -> Result<()> {
        let (repo, reference) = (repo.to_string(), reference.clone());
        let policies = self.policies();
        self.blocking(move |r| {
            let immutable = if enforce_immutable {
                &policies.immutable
            } else {
                &ImmutableTags::NONE
            };
            r.meta().write(|t| {
                if !repos::exists(t, &repo)? {
                    return Err(name_unknown(&repo));
                }
                match &reference {
                    Reference::Tag(tag) => remove_tag(t, immutable, &repo, tag)?,
                    Reference::Digest(d) => remove_revision(t, immutable, &repo, &d.to_string())?,
                }
                .ok_or_else(|| manifest_unknown(&reference))?;
                r.queue_event(t, "delete", |_| {
                    let mut target = Target {
                        repository: repo.clone(),
                        ..Default::default()
                    };
                    match &reference {
                        Reference::Tag(tag) => target.tag = Some(tag.clone()),
                        Reference::Digest(d) => target.digest = d.to_string(),
                    }
                    target
                })
            })?;
            r.events_committed();
            Ok(())
        })
        .await
    }
}

/// Points `tag` of `repo` at revision `digest`, unless `immutable` forbids moving it; the
/// check reads the tag in this transaction, so of two pushes racing for it one wins.
pub(crate) fn set_tag(
    t: &mut WriteTables<'_>,
    immutable: &ImmutableTags,
    repo: &str,
    tag: &str,
    digest: &str,
) -> Result<()> {
    let current = tags::get(t, repo, tag)?;
    immutable.check_set(repo, tag, current.as_deref(), digest)?;
    tags::set(t, repo, tag, digest)?;
    Ok(())
}

/// Removes `tag` of `repo` unless it is immutable; `None` when there is no such tag.
pub(crate) fn remove_tag(
    t: &mut WriteTables<'_>,
    immutable: &ImmutableTags,
    repo: &str,
    tag: &str,
) -> Result<Option<()>> {
    if tags::get(t, repo, tag)?.is_none() {
        return Ok(None);
    }
    immutable.check_remove(repo, tag)?;
    Ok(tags::remove(t, repo, tag)?.map(|_| ()))
}
