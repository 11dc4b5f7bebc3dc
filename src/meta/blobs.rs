//! The `blobs` table (digest → size, reference count, touched) and the `repo_blobs` /
//! `blob_links` pair of link tables.

use redb::ReadableTable;

use super::{WriteTables, now_secs, stats};
use crate::error::{Error, Result};

/// A row of the `blobs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRow {
    pub size: u64,
    /// Manifest revisions referencing the blob (see ARCHITECTURE.md, "Counting rules").
    pub refs: u64,
    /// Last upload, mount or client sighting while unreferenced (unix seconds).
    pub touched: u64,
}

type LinkKey = (&'static str, &'static str);

/// The row of `digest`.
pub fn get(
    t: &impl ReadableTable<&'static str, (u64, u64, u64)>,
    digest: &str,
) -> Result<Option<BlobRow>> {
    Ok(t.get(digest)?.map(|v| {
        let (size, refs, touched) = v.value();
        BlobRow {
            size,
            refs,
            touched,
        }
    }))
}

/// Writes the row of `digest`, keeping `stats.blob_bytes` in step. Every change to the
/// `blobs` table goes through here or `remove`.
fn insert(t: &mut WriteTables<'_>, digest: &str, row: BlobRow) -> Result<()> {
    let old = t
        .blobs
        .insert(digest, (row.size, row.refs, row.touched))?
        .map_or(0, |v| v.value().0);
    stats::add(t, stats::BLOB_BYTES, row.size as i64 - old as i64)
}

/// Records a blob file of `size` bytes, or marks an existing row as touched now.
pub fn touch(t: &mut WriteTables<'_>, digest: &str, size: u64) -> Result<()> {
    let refs = get(&t.blobs, digest)?.map_or(0, |r| r.refs);
    insert(
        t,
        digest,
        BlobRow {
            size,
            refs,
            touched: now_secs(),
        },
    )
}

/// Sets the row of `digest` (used by repairs).
pub fn put(t: &mut WriteTables<'_>, digest: &str, row: BlobRow) -> Result<()> {
    insert(t, digest, row)
}

/// Removes the row of `digest` and every repository link to it; returns the removed row.
pub fn remove(t: &mut WriteTables<'_>, digest: &str) -> Result<Option<BlobRow>> {
    let row = t.blobs.remove(digest)?.map(|v| {
        let (size, refs, touched) = v.value();
        BlobRow {
            size,
            refs,
            touched,
        }
    });
    if let Some(r) = row {
        stats::add(t, stats::BLOB_BYTES, -(r.size as i64))?;
    }
    for repo in links_of(&t.blob_links, digest)? {
        unlink(t, &repo, digest)?;
    }
    Ok(row)
}

/// Adds `delta` (which may be negative) to the reference count of `digest`.
pub fn add_ref(t: &mut WriteTables<'_>, digest: &str, delta: i64) -> Result<()> {
    let row = get(&t.blobs, digest)?
        .ok_or_else(|| Error::internal("reference count", format!("no blob row for {digest}")))?;
    let refs = row.refs.checked_add_signed(delta).ok_or_else(|| {
        Error::internal(
            "reference count",
            format!("count of {digest} would go negative"),
        )
    })?;
    t.blobs.insert(digest, (row.size, refs, row.touched))?;
    Ok(())
}

/// True when `repo` may serve `digest`.
pub fn is_linked(t: &impl ReadableTable<LinkKey, u64>, repo: &str, digest: &str) -> Result<bool> {
    Ok(t.get((repo, digest))?.is_some())
}

/// Lets `repo` serve `digest`.
pub fn link(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    t.repo_blobs.insert((repo, digest), now_secs())?;
    t.blob_links.insert((digest, repo), ())?;
    Ok(())
}

/// Stops `repo` serving `digest`; returns whether it did.
pub fn unlink(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<bool> {
    t.blob_links.remove((digest, repo))?;
    Ok(t.repo_blobs.remove((repo, digest))?.is_some())
}

/// Every repository linking `digest`.
pub fn links_of(t: &impl ReadableTable<LinkKey, ()>, digest: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, &str)>((digest, "")..)? {
        let (k, _) = item?;
        let (d, repo) = k.value();
        if d != digest {
            break;
        }
        out.push(repo.to_string());
    }
    Ok(out)
}
