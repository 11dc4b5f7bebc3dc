//! The `manifests` table: (repository, digest) → `ManifestRecord`.

use redb::ReadableTable;

use super::{ManifestRecord, WriteTables, usage};
use crate::error::Result;

type Key = (&'static str, &'static str);

/// The revision `digest` of `repo`.
pub fn get(
    t: &impl ReadableTable<Key, &'static [u8]>,
    repo: &str,
    digest: &str,
) -> Result<Option<ManifestRecord>> {
    match t.get((repo, digest))? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Stores a revision (or updates its record); a new one counts toward the repository's usage.
pub fn insert(
    t: &mut WriteTables<'_>,
    repo: &str,
    digest: &str,
    rec: &ManifestRecord,
) -> Result<()> {
    let bytes = serde_json::to_vec(rec)?;
    let new = t
        .manifests
        .insert((repo, digest), bytes.as_slice())?
        .is_none();
    if new {
        let size = usage::size_of(&t.blobs, digest, rec.size)?;
        usage::hold(t, repo, digest, size)?;
    }
    Ok(())
}

/// Removes a revision, returning it.
pub fn remove(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<Option<ManifestRecord>> {
    let rec: Option<ManifestRecord> = match t.manifests.remove((repo, digest))? {
        Some(v) => Some(serde_json::from_slice(v.value())?),
        None => None,
    };
    if rec.is_some() {
        usage::release(t, repo, digest)?;
    }
    Ok(rec)
}
