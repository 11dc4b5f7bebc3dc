//! Reading and deleting a repository's blobs.

use super::Registry;
use super::outbox::blob_target;
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::meta::{blobs, now_secs};
use crate::names::RepoName;
use crate::store::BlobBody;

fn blob_unknown(digest: &Digest) -> Error {
    Error::new(
        Code::BlobUnknown,
        format!("blob {digest} is unknown to this repository"),
    )
}

impl Registry {
    /// The size of blob `digest` if `repo` may serve it, without side effects.
    pub fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        Ok(self.blob_row(repo, digest)?.size)
    }

    fn blob_row(&self, repo: &RepoName, digest: &Digest) -> Result<blobs::BlobRow> {
        let d = digest.to_string();
        self.meta()
            .read(|t| {
                if !blobs::is_linked(t, repo.as_str(), &d)? {
                    return Ok(None);
                }
                blobs::get(t, &d)
            })?
            .ok_or_else(|| blob_unknown(digest))
    }

    /// The size of blob `digest` as shown to a client (`HEAD`/`GET`). A client told that an
    /// unreferenced blob exists may push a manifest naming it next, so such a sighting starts
    /// a grace period (`blobs::sight`). Unless a lease already covers it, the sighting is
    /// recorded in a write transaction that re-checks the row: either it commits first and the
    /// collector's own re-check keeps the blob, or the collector's removal commits first and
    /// the client is told the blob is unknown — never 200 for a blob being removed. Read-only
    /// mode makes no write.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let row = self.blob_row(repo, digest)?;
        if blobs::sighting_covered(&row, now_secs()) || self.is_read_only() {
            return Ok(row.size);
        }
        let (r, d) = (repo.to_string(), digest.to_string());
        let seen = self
            .blocking(move |reg| {
                reg.meta().write(|t| {
                    if !blobs::is_linked(t, &r, &d)? {
                        return Ok(None);
                    }
                    blobs::sight(t, &d)
                })
            })
            .await?;
        seen.map(|row| row.size).ok_or_else(|| blob_unknown(digest))
    }

    /// Streams `len` bytes from `start` of blob `digest` of `repo`, whose size `stat_blob`
    /// gave.
    pub async fn blob_body(
        &self,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<BlobBody> {
        match self.store().read_range(digest, start, len).await? {
            Some(body) => Ok(body),
            // Collected between the lookup and the open: the blob is gone, not broken.
            None if self.blob_row(repo, digest).is_err() => Err(blob_unknown(digest)),
            None => Err(Error::internal(
                "blob store",
                format!("blob {digest} is recorded but its file is missing"),
            )),
        }
    }

    /// Lets `repo` serve blob `digest`, which this store already holds (for another
    /// repository): what a mirror does once its upstream confirmed the blob, and an import for a
    /// layer it has already brought in. False when the store no longer holds it (the collector
    /// removed it meanwhile): the caller stores it again instead.
    pub async fn link_recorded(&self, repo: &str, digest: &str) -> Result<bool> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.blocking(move |r| {
            // Under the digest's lock the collector is never between its removal commit and
            // the file's unlink, so a row seen here has its file.
            let lock = r.digest_locks().lock(&d)?;
            let committed = r.meta().commit(|t| {
                if blobs::get(t, &d)?.is_none() {
                    return Ok(false);
                }
                blobs::touch_existing(t, &d)?;
                blobs::link(t, &repo, &d)?;
                crate::meta::repos::ensure(t, &repo)?;
                Ok(true)
            })?;
            drop(lock);
            committed.durable()
        })
        .await
    }

    /// Stops `repo` serving blob `digest` (its file is reclaimed by garbage collection).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        let found = self
            .blocking(move |r| {
                let found = r.meta().write(|t| {
                    let found = blobs::unlink(t, &repo, &d)?;
                    if found {
                        r.queue_event(t, "delete", |base| blob_target(base, &repo, &d, 0))?;
                    }
                    Ok(found)
                })?;
                r.events_committed();
                Ok(found)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(blob_unknown(digest))
        }
    }
}
