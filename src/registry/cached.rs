//! Content a mirror fetched from its upstream, recorded in the same tables as pushed content
//! (so listings, GC and fsck see it) but without the push's rules: a cached manifest is
//! recorded before the blobs it names (their references are deferred, `meta::deferred`), and
//! no webhook event is queued for it. The mirror (`src/mirror/`) decides what to fetch; this
//! only records it.

use bytes::Bytes;

use super::Registry;
use super::manifests::{Origin, record_manifest};
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest;
use crate::meta::{blobs, mirror, now_secs};
use crate::names::{Reference, RepoName};

impl Registry {
    /// Records manifest `body` (already checked against `digest`) fetched from upstream as
    /// revision `digest` of `repo`, and points `tag` at it (confirmed upstream now).
    pub async fn record_cached_manifest(
        &self,
        repo: &RepoName,
        tag: Option<&str>,
        digest: &Digest,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<()> {
        let parsed = manifest::parse(content_type, &body)?;
        let reference = match tag {
            Some(t) => Reference::Tag(t.to_string()),
            None => Reference::Digest(digest.clone()),
        };
        let (repo, digest) = (repo.to_string(), digest.clone());
        self.blocking(move |r| {
            let size = body.len() as u64;
            r.publish_manifest(&digest, body, |t| {
                record_manifest(t, &repo, &reference, &digest, &parsed, size, Origin::Cached)?;
                let now = now_secs();
                if let Reference::Tag(tag) = &reference {
                    mirror::set_tag_checked(t, &repo, tag, now)?;
                }
                mirror::set_pulled(t, &repo, &digest.to_string(), now)
            })
        })
        .await
    }

    /// Records that cached tag `tag` of `repo` still names what upstream names.
    pub async fn confirm_cached_tag(&self, repo: &RepoName, tag: &str) -> Result<()> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.blocking(move |r| {
            r.meta()
                .write(|t| mirror::set_tag_checked(t, &repo, &tag, now_secs()))
        })
        .await
    }

    /// When cached tag `tag` of `repo` was last confirmed upstream (unix seconds).
    pub fn cached_tag_checked(&self, repo: &RepoName, tag: &str) -> Result<Option<u64>> {
        self.meta()
            .read(|t| mirror::tag_checked(t, repo.as_str(), tag))
    }

    /// Records pulls of cached items, `(repository, digest, when)` each, in one transaction
    /// (eviction evicts the least recently pulled first).
    pub async fn record_cached_pulls(&self, pulls: Vec<(String, String, u64)>) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        self.blocking(move |r| {
            r.meta().write(|t| {
                for (repo, digest, at) in &pulls {
                    // Only items still cached: a pull racing an eviction must not leave a row.
                    let cached = crate::meta::manifests::exists(t, repo, digest)?
                        || blobs::is_linked(t, repo, digest)?;
                    if cached {
                        mirror::set_pulled(t, repo, digest, *at)?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// The size of blob `digest` when the store holds it (whatever repository links it).
    pub fn stored_blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let d = digest.to_string();
        Ok(self.meta().read(|t| blobs::get(t, &d))?.map(|r| r.size))
    }
}
