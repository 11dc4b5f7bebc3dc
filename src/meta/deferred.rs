//! Deferred references: references of cached (mirrored) manifest revisions to blobs and
//! child manifests not stored yet. A mirror records an upstream manifest as soon as a client
//! pulls it, before its layers are fetched; each reference to content without a `blobs` row
//! waits here and is counted when that row is created (`blobs::touch`), or dropped with the
//! revision. So the counting rules hold: a stored blob's count is every revision naming it.

use super::WriteTables;
use super::rows::ReadTx;
use crate::error::Result;

/// Records that revision `manifest` of `repo` references `digest`, which has no row yet.
pub fn defer(t: &mut WriteTables<'_>, digest: &str, repo: &str, manifest: &str) -> Result<()> {
    t.put_deferred(digest, repo, manifest)
}

/// Removes the deferred reference of revision `manifest` of `repo` to `digest`; returns
/// whether there was one (the reference was then never counted).
pub fn remove(t: &mut WriteTables<'_>, digest: &str, repo: &str, manifest: &str) -> Result<bool> {
    t.remove_deferred(digest, repo, manifest)
}

/// Removes every deferred reference to `digest` and returns how many there were: the count a
/// row created for it now starts with.
pub fn take(t: &mut WriteTables<'_>, digest: &str) -> Result<u64> {
    let keys = t.deferred_of(digest)?;
    for (repo, manifest) in &keys {
        t.remove_deferred(digest, repo, manifest)?;
    }
    Ok(keys.len() as u64)
}

/// The (repository, manifest) pairs waiting for `digest`.
pub fn of(t: &(impl ReadTx + ?Sized), digest: &str) -> Result<Vec<(String, String)>> {
    t.deferred_of(digest)
}

/// How many deferred references `everything` reads at a time.
const PAGE: usize = 1024;

/// Every deferred reference (digest, repository, manifest) of the store, in order (fsck).
pub fn everything(t: &(impl ReadTx + ?Sized)) -> Result<Vec<(String, String, String)>> {
    super::paging::all(
        PAGE,
        |after: Option<&(String, String, String)>, n| {
            t.deferred_page(
                after.map(|(d, r, m)| (d.as_str(), r.as_str(), m.as_str())),
                n,
            )
        },
        Clone::clone,
    )
}
