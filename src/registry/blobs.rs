//! Reading and deleting a repository's blobs.

use std::fs::File;

use super::Registry;
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::meta::blobs;
use crate::names::RepoName;

fn blob_unknown(digest: &Digest) -> Error {
    Error::new(
        Code::BlobUnknown,
        format!("blob {digest} is unknown to this repository"),
    )
}

impl Registry {
    /// The size of blob `digest` if `repo` may serve it.
    pub fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let d = digest.to_string();
        self.meta()
            .read(|t| {
                if !blobs::is_linked(&t.repo_blobs, repo.as_str(), &d)? {
                    return Ok(None);
                }
                Ok(blobs::get(&t.blobs, &d)?.map(|b| b.size))
            })?
            .ok_or_else(|| blob_unknown(digest))
    }

    /// Opens blob `digest` of `repo` for reading; returns the file and its size.
    pub fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(File, u64)> {
        let size = self.blob_size(repo, digest)?;
        let file = self.store().open_blob(digest)?.ok_or_else(|| {
            Error::internal(
                "blob store",
                format!("blob {digest} is recorded but its file is missing"),
            )
        })?;
        Ok((file, size))
    }

    /// Stops `repo` serving blob `digest` (its file is reclaimed by garbage collection).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        let found = self
            .blocking(move |r| r.meta().write(|t| blobs::unlink(t, &repo, &d)))
            .await?;
        if found {
            Ok(())
        } else {
            Err(blob_unknown(digest))
        }
    }
}
