//! The metadata half of a backup: every table's rows, read in ONE read transaction of the live
//! store, written into a fresh redb file created at the same schema version. redb has no call
//! that copies a database to another file (its savepoints live inside the same file), and
//! copying the live file is unsafe (its header is rewritten in place), so rows are copied.
//! Upload sessions are left out: their bytes are not part of a backup.

use std::path::Path;

use redb::{ReadOnlyTable, ReadableTable, Table};

use super::BackupError;
use super::manifest::BlobEntry;
use crate::error::Result;
use crate::meta::Meta;

/// What the snapshot holds.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub schema_version: u64,
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    /// Every `blobs` row: the content the backup must hold.
    pub blobs: Vec<BlobEntry>,
}

/// Copies every row of `src` (uploads excepted) into a new store at `file`, from one read
/// transaction of `src`.
pub fn take(src: &Meta, file: &Path) -> Result<Snapshot, BackupError> {
    let schema_version = src.schema_version()?;
    if file.exists() {
        std::fs::remove_file(file).map_err(|e| BackupError::io(file, e))?;
    }
    let dst = Meta::open(file).map_err(|e| BackupError::Failed(e.to_string()))?;
    let dst_version = dst.schema_version()?;
    if dst_version != schema_version {
        return Err(BackupError::Failed(format!(
            "the store is at schema version {schema_version}, a new store at {dst_version}"
        )));
    }
    let mut snap = src.read_redb(|r| {
        dst.write_redb(|w| {
            let mut snap = Snapshot {
                repositories: copy(&r.repos, &mut w.repos)?,
                manifests: copy(&r.manifests, &mut w.manifests)?,
                tags: copy(&r.tags, &mut w.tags)?,
                ..Snapshot::default()
            };
            copy(&r.blobs, &mut w.blobs)?;
            copy(&r.repo_blobs, &mut w.repo_blobs)?;
            copy(&r.blob_links, &mut w.blob_links)?;
            copy(&r.referrers, &mut w.referrers)?;
            copy(&r.notifications, &mut w.notifications)?;
            copy(&r.stats, &mut w.stats)?;
            copy(&r.settings, &mut w.settings)?;
            copy(&r.deferred_refs, &mut w.deferred_refs)?;
            copy(&r.mirror_tags, &mut w.mirror_tags)?;
            copy(&r.mirror_pulls, &mut w.mirror_pulls)?;
            copy(&r.usage, &mut w.usage)?;
            copy(&r.scope_blobs, &mut w.scope_blobs)?;
            // Retention's clocks: when each tag was last pushed and pulled.
            copy(&r.tag_pushes, &mut w.tag_pushes)?;
            copy(&r.tag_pulls, &mut w.tag_pulls)?;
            for row in r.blobs.iter()? {
                let (k, v) = row?;
                snap.blobs.push(BlobEntry {
                    digest: k.value().to_string(),
                    size: v.value().0,
                });
            }
            Ok(snap)
        })
    })?;
    drop(dst);
    snap.schema_version = schema_version;
    Ok(snap)
}

/// Inserts every row of `from` into `to`; returns how many.
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadOnlyTable<K, V>,
    to: &mut Table<'_, K, V>,
) -> Result<u64> {
    let mut n = 0;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}
