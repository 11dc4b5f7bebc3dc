//! The `deferred_refs` table: references of cached (mirrored) manifest revisions to blobs and
//! child manifests not stored yet. A mirror records an upstream manifest as soon as a client
//! pulls it, before its layers are fetched; each reference to content without a `blobs` row
//! waits here and is counted when that row is created (`blobs::touch`), or dropped with the
//! revision. So the counting rules hold: a stored blob's count is every revision naming it.

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

type Key = (&'static str, &'static str, &'static str);

/// Records that revision `manifest` of `repo` references `digest`, which has no row yet.
pub fn defer(t: &mut WriteTables<'_>, digest: &str, repo: &str, manifest: &str) -> Result<()> {
    t.deferred_refs.insert((digest, repo, manifest), ())?;
    Ok(())
}

/// Removes the deferred reference of revision `manifest` of `repo` to `digest`; returns
/// whether there was one (the reference was then never counted).
pub fn remove(t: &mut WriteTables<'_>, digest: &str, repo: &str, manifest: &str) -> Result<bool> {
    Ok(t.deferred_refs.remove((digest, repo, manifest))?.is_some())
}

/// Removes every deferred reference to `digest` and returns how many there were: the count a
/// row created for it now starts with.
pub fn take(t: &mut WriteTables<'_>, digest: &str) -> Result<u64> {
    let keys = of(&t.deferred_refs, digest)?;
    for (repo, manifest) in &keys {
        t.deferred_refs
            .remove((digest, repo.as_str(), manifest.as_str()))?;
    }
    Ok(keys.len() as u64)
}

/// The (repository, manifest) pairs waiting for `digest`.
pub fn of(t: &impl ReadableTable<Key, ()>, digest: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, &str, &str)>((digest, "", "")..)? {
        let (k, _) = item?;
        let (d, repo, manifest) = k.value();
        if d != digest {
            break;
        }
        out.push((repo.to_string(), manifest.to_string()));
    }
    Ok(out)
}
