//! The `blobs` table (digest → size, reference count, touched) and the `repo_blobs` /
//! `blob_links` pair of link tables.

use super::rows::ReadTx;
use super::{WriteTables, now_secs, stats, usage};
use crate::error::{Error, Result};

/// A row of the `blobs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRow {
    pub size: u64,
    /// Manifest revisions referencing the blob (see ARCHITECTURE.md, "Counting rules").
    pub refs: u64,
    /// Start of the grace period (unix seconds): the last upload, mount, loss of the last
    /// reference, or client sighting while unreferenced. A sighting sets it up to
    /// `SIGHTING_LEASE` ahead, so it may lie in the future (see `sight`).
    pub touched: u64,
}

/// How far ahead a client sighting (`HEAD`/`GET` of an unreferenced blob or of a manifest)
/// moves the start of the grace period. Sightings while it lies ahead need no write, so a
/// busy blob costs at most one durable write per lease, and every sighting still gets at
/// least a full grace period from the moment the client was answered.
pub const SIGHTING_LEASE: u64 = 60;

/// The row of `digest`.
pub fn get(t: &(impl ReadTx + ?Sized), digest: &str) -> Result<Option<BlobRow>> {
    t.blob(digest)
}

/// Writes the row of `digest`, keeping `stats.blob_bytes` in step. Every change to the
/// `blobs` table goes through here or `remove`.
fn insert(t: &mut WriteTables<'_>, digest: &str, row: BlobRow) -> Result<()> {
    let old = t.put_blob(digest, row)?.map_or(0, |r| r.size);
    stats::add(t, stats::BLOB_BYTES, row.size as i64 - old as i64)
}

/// Records a blob file of `size` bytes, or restarts the grace period of an existing row now
/// (never moving it back: a sighting's lease is kept). A new row starts with the references
/// cached manifests made to it before it was stored (`deferred`).
pub fn touch(t: &mut WriteTables<'_>, digest: &str, size: u64) -> Result<()> {
    let (refs, touched) = match get(t, digest)? {
        Some(r) => (r.refs, r.touched),
        None => (super::deferred::take(t, digest)?, 0),
    };
    insert(
        t,
        digest,
        BlobRow {
            size,
            refs,
            touched: touched.max(now_secs()),
        },
    )
}

/// Restarts the grace period of the existing row of `digest` now (never moving it back).
pub fn touch_existing(t: &mut WriteTables<'_>, digest: &str) -> Result<()> {
    if let Some(row) = get(t, digest)? {
        insert(
            t,
            digest,
            BlobRow {
                touched: row.touched.max(now_secs()),
                ..row
            },
        )?;
    }
    Ok(())
}

/// True when a client sighting of `row` at `now` needs no write: it is referenced (its grace
/// period starts when its last reference goes), or its lease still covers `now`.
pub fn sighting_covered(row: &BlobRow, now: u64) -> bool {
    row.refs > 0 || row.touched >= now
}

/// Records a client sighting of `digest` in one transaction that re-checks the row: moves the
/// start of its grace period `SIGHTING_LEASE` ahead. Returns the row, or `None` when the blob
/// is gone (collected meanwhile): the client must then be told it is unknown.
pub fn sight(t: &mut WriteTables<'_>, digest: &str) -> Result<Option<BlobRow>> {
    let Some(row) = get(t, digest)? else {
        return Ok(None);
    };
    let now = now_secs();
    if sighting_covered(&row, now) {
        return Ok(Some(row));
    }
    let row = BlobRow {
        touched: now + SIGHTING_LEASE,
        ..row
    };
    put(t, digest, row)?;
    Ok(Some(row))
}

/// Sets the row of `digest` (used by repairs).
pub fn put(t: &mut WriteTables<'_>, digest: &str, row: BlobRow) -> Result<()> {
    insert(t, digest, row)
}

/// Removes the row of `digest` and every repository link to it; returns the removed row.
pub fn remove(t: &mut WriteTables<'_>, digest: &str) -> Result<Option<BlobRow>> {
    // Links first: their usage is released while the row still gives the size.
    for repo in t.links_of(digest)? {
        unlink(t, &repo, digest)?;
    }
    let row = t.remove_blob(digest)?;
    if let Some(r) = row {
        stats::add(t, stats::BLOB_BYTES, -(r.size as i64))?;
    }
    Ok(row)
}

/// Adds `delta` (which may be negative) to the reference count of `digest`. When the last
/// reference goes, the grace period starts now: a client may have seen the blob a moment ago
/// (skipping its upload) and be about to push a manifest naming it.
pub fn add_ref(t: &mut WriteTables<'_>, digest: &str, delta: i64) -> Result<()> {
    let row = get(t, digest)?
        .ok_or_else(|| Error::internal("reference count", format!("no blob row for {digest}")))?;
    let refs = row.refs.checked_add_signed(delta).ok_or_else(|| {
        Error::internal(
            "reference count",
            format!("count of {digest} would go negative"),
        )
    })?;
    let touched = if refs == 0 && row.refs > 0 {
        row.touched.max(now_secs())
    } else {
        row.touched
    };
    insert(
        t,
        digest,
        BlobRow {
            size: row.size,
            refs,
            touched,
        },
    )
}

/// True when `repo` may serve `digest`.
pub fn is_linked(t: &(impl ReadTx + ?Sized), repo: &str, digest: &str) -> Result<bool> {
    Ok(t.link(repo, digest)?.is_some())
}

/// Lets `repo` serve `digest`; a new link counts toward the repository's usage (`usage`).
pub fn link(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    if t.put_link(repo, digest, now_secs())? {
        let size = usage::size_of(t, digest, 0)?;
        usage::hold(t, repo, digest, size)?;
    }
    Ok(())
}

/// Stops `repo` serving `digest`; returns whether it did.
pub fn unlink(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<bool> {
    // A cached blob's last pull goes with its link.
    t.remove_mirror_pull(repo, digest)?;
    let found = t.remove_link(repo, digest)?;
    if found {
        usage::release(t, repo, digest)?;
    }
    Ok(found)
}

/// Every repository linking `digest`.
pub fn links_of(t: &(impl ReadTx + ?Sized), digest: &str) -> Result<Vec<String>> {
    t.links_of(digest)
}

/// How many rows `scan` reads at a time.
const PAGE: usize = 1024;

/// Calls `f` with every blob row in digest order until it returns false.
pub fn scan(
    t: &(impl ReadTx + ?Sized),
    mut f: impl FnMut(&str, BlobRow) -> Result<bool>,
) -> Result<()> {
    super::paging::each(
        None,
        PAGE,
        |after: Option<&String>, n| t.blobs_page(after.map(String::as_str), n),
        |(d, _)| d.clone(),
        |(d, row)| f(&d, row),
    )
}

/// Calls `f` with every link (repository, digest) of repositories starting with `prefix`, in
/// order, until it returns false.
pub fn scan_links(
    t: &(impl ReadTx + ?Sized),
    prefix: &str,
    mut f: impl FnMut(&str, &str) -> Result<bool>,
) -> Result<()> {
    super::paging::each(
        None,
        PAGE,
        |after: Option<&(String, String)>, n| {
            t.links_page(prefix, after.map(|(r, d)| (r.as_str(), d.as_str())), n)
        },
        Clone::clone,
        |(r, d)| f(&r, &d),
    )
}
