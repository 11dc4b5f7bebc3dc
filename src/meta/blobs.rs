//! The `blobs` table (digest → size, reference count, created) and `repo_blobs` links.

use redb::ReadableTable;

use super::{WriteTables, now_secs};
use crate::error::{Error, Result};

/// A row of the `blobs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRow {
    pub size: u64,
    pub refs: u64,
    pub created: u64,
}

/// The row of `digest`.
pub fn get(
    t: &impl ReadableTable<&'static str, (u64, u64, u64)>,
    digest: &str,
) -> Result<Option<BlobRow>> {
    Ok(t.get(digest)?.map(|v| {
        let (size, refs, created) = v.value();
        BlobRow {
            size,
            refs,
            created,
        }
    }))
}

/// Records a blob file of `size` bytes if it has no row yet.
pub fn ensure(t: &mut WriteTables<'_>, digest: &str, size: u64) -> Result<()> {
    if t.blobs.get(digest)?.is_none() {
        t.blobs.insert(digest, (size, 0, now_secs()))?;
    }
    Ok(())
}

/// Adds `delta` (which may be negative) to the reference count of `digest`.
pub fn add_ref(t: &mut WriteTables<'_>, digest: &str, delta: i64) -> Result<()> {
    let (size, refs, created) =
        t.blobs.get(digest)?.map(|v| v.value()).ok_or_else(|| {
            Error::internal("reference count", format!("no blob row for {digest}"))
        })?;
    let refs = refs.checked_add_signed(delta).ok_or_else(|| {
        Error::internal(
            "reference count",
            format!("count of {digest} would go negative"),
        )
    })?;
    t.blobs.insert(digest, (size, refs, created))?;
    Ok(())
}

/// True when `repo` may serve `digest`.
pub fn is_linked(
    t: &impl ReadableTable<(&'static str, &'static str), u64>,
    repo: &str,
    digest: &str,
) -> Result<bool> {
    Ok(t.get((repo, digest))?.is_some())
}

/// Lets `repo` serve `digest`.
pub fn link(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    t.repo_blobs.insert((repo, digest), now_secs())?;
    Ok(())
}

/// Stops `repo` serving `digest`; returns whether it did.
pub fn unlink(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<bool> {
    Ok(t.repo_blobs.remove((repo, digest))?.is_some())
}
