//! `backup.json`: what a backup holds. Written last and atomically (temporary file, fsync,
//! rename, directory fsync), so its presence is the backup's completion marker: a directory
//! without it holds no complete backup.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BackupError;

/// The manifest's file name in the backup directory.
pub const MANIFEST: &str = "backup.json";
/// The format this kura writes and reads.
pub const FORMAT: u32 = 1;

/// One blob the backup holds, at `blobs/<algorithm>/<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub digest: String,
    pub size: u64,
}

/// Everything a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: u32,
    /// `<unix seconds>-<random>`; names the metadata file.
    pub id: String,
    /// When the snapshot was taken (RFC 3339, UTC) and the same in unix seconds.
    pub created: String,
    pub created_unix: u64,
    pub kura_version: String,
    /// The metadata's schema version.
    pub schema_version: u64,
    /// The metadata snapshot's file name, its size and sha256.
    pub metadata: String,
    pub metadata_size: u64,
    pub metadata_sha256: String,
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blob_bytes: u64,
    pub blobs: Vec<BlobEntry>,
    /// Always true in a written manifest; checked on restore.
    pub complete: bool,
}

/// Reads `dir/backup.json`; `None` when there is none.
pub fn read(dir: &Path) -> Result<Option<BackupManifest>, BackupError> {
    let path = dir.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BackupError::io(&path, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        BackupError::Refused(format!(
            "{} is not a kura backup manifest: {e}",
            path.display()
        ))
    })
}

/// Writes `dir/backup.json` atomically and durably.
pub fn write(dir: &Path, m: &BackupManifest) -> Result<(), BackupError> {
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let path = dir.join(MANIFEST);
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| BackupError::Failed(e.to_string()))?;
    let mut f = fs::File::create(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| BackupError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| BackupError::io(&path, e))?;
    crate::store::sync_dir(dir).map_err(|e| BackupError::io(dir, e))
}
