//! Backup and restore (`kura backup`, `POST /admin/backup`, `kura restore`).
//!
//! A backup directory holds `meta-<id>.redb` (a metadata snapshot taken in one read
//! transaction, `snapshot.rs`), `blobs/<algorithm>/<hex>` (every blob that snapshot records,
//! copied through the `BlobStore` and verified, `copy.rs`) and `backup.json` (`manifest.rs`),
//! written last and atomically: the completion marker. A later backup into the same directory
//! copies only blobs not there yet, and switches `backup.json` to its own snapshot only once
//! all its blobs are in place, so an interrupted backup leaves the previous one whole.
//! Restore (`restore.rs`) verifies everything and refuses a partial or damaged backup.
//! The collector leaves files alone while a backup runs (`pins.rs`).

pub mod copy;
pub mod manifest;
pub mod pins;
pub mod restore;
pub mod snapshot;

use std::fmt;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::meta::now_secs;
use crate::registry::Registry;
pub use manifest::{BackupManifest, BlobEntry};
pub use pins::BackupPins;
pub use restore::{RestoreReport, restore};

/// Why a backup or restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Refused before anything changed: a partial or damaged backup, a non-empty root, a
    /// backup already running into the directory.
    #[error("{0}")]
    Refused(String),
    /// Failed on the way (a blob missing from the source, an I/O error).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Meta(#[from] crate::error::Error),
}

impl BackupError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> BackupError {
        BackupError::Failed(format!("{}: {e}", path.display()))
    }

    /// The error as the admin API answers it: 409 for a refusal, 500 otherwise.
    pub fn into_api_error(self) -> crate::error::Error {
        use crate::error::{Code, Error};
        match self {
            BackupError::Refused(m) => {
                Error::new(Code::Unsupported, m).with_status(actix_web::http::StatusCode::CONFLICT)
            }
            BackupError::Failed(m) => Error::new(Code::Unknown, m),
            BackupError::Meta(e) => e,
        }
    }
}

/// Progress, for a bar or `--json` lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The snapshot is taken (backup) or the manifest read (restore): what will be handled.
    Start { id: String, blobs: u64, bytes: u64 },
    /// One blob done: copied, or already in the backup (`copied: false`).
    Blob {
        digest: String,
        size: u64,
        copied: bool,
    },
}

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    pub dest: String,
    pub id: String,
    pub created: String,
    pub schema_version: u64,
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    /// Blobs the backup holds and their bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Of those, copied by this run, and found in place from an earlier backup.
    pub copied: u64,
    pub reused: u64,
    pub bytes_copied: u64,
    pub seconds: f64,
}

impl fmt::Display for BackupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup {} in {}: {} repositories, {} manifests, {} tags, {} blobs ({} bytes): {} copied ({} bytes), {} already there; {:.1}s",
            self.id,
            self.dest,
            self.repositories,
            self.manifests,
            self.tags,
            self.blobs,
            self.bytes,
            self.copied,
            self.bytes_copied,
            self.reused,
            self.seconds
        )
    }
}

/// Backs `registry` up into `dest` (created if needed), incrementally against a backup
/// already there. Blocking.
pub fn backup(
    registry: &Registry,
    dest: &Path,
    on: &(dyn Fn(&Event) + Sync),
) -> Result<BackupReport, BackupError> {
    let start = Instant::now();
    crate::store::create_dir_durable(dest).map_err(|e| BackupError::io(dest, e))?;
    let _lock = DestLock::take(dest)?;
    let previous = manifest::read(dest)?;
    let created_unix = now_secs();
    let id = format!(
        "{created_unix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let metadata = format!("meta-{id}.redb");
    let meta_path = dest.join(&metadata);
    let (snap, copied) = {
        // Pinned before the snapshot opens, until the last copy: see `pins.rs`.
        let _pin = registry.backup_pins().pin();
        let snap = snapshot::take(registry.meta(), &meta_path)?;
        on(&Event::Start {
            id: id.clone(),
            blobs: snap.blobs.len() as u64,
            bytes: snap.blobs.iter().map(|b| b.size).sum(),
        });
        let copied = copy::copy_all(registry.store(), dest, &snap.blobs, on)?;
        (snap, copied)
    };
    let (metadata_size, metadata_sha256) = restore::hash_file(&meta_path)?;
    crate::store::sync_dir(dest).map_err(|e| BackupError::io(dest, e))?;
    let blob_bytes = snap.blobs.iter().map(|b| b.size).sum();
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(created_unix),
    )
    .to_string();
    let m = BackupManifest {
        format: manifest::FORMAT,
        id: id.clone(),
        created: created.clone(),
        created_unix,
        kura_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: snap.schema_version,
        metadata: metadata.clone(),
        metadata_size,
        metadata_sha256,
        repositories: snap.repositories,
        manifests: snap.manifests,
        tags: snap.tags,
        blob_bytes,
        blobs: snap.blobs,
        complete: true,
    };
    manifest::write(dest, &m)?;
    // Metadata snapshots no manifest names any more (the previous backup's, interrupted runs').
    if let Ok(entries) = fs::read_dir(dest) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("meta-") && name.ends_with(".redb") && name != metadata {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    if let Some(p) = previous {
        tracing::info!(previous = %p.id, id = %id, "backup replaces the previous one");
    }
    Ok(BackupReport {
        dest: dest.display().to_string(),
        id,
        created,
        schema_version: m.schema_version,
        repositories: m.repositories,
        manifests: m.manifests,
        tags: m.tags,
        blobs: m.blobs.len() as u64,
        bytes: blob_bytes,
        copied: copied.copied,
        reused: copied.reused,
        bytes_copied: copied.bytes_copied,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// An exclusive `flock` on `<dest>/.lock`: one backup at a time per directory, across
/// processes (released when the file closes, also by a killed process).
struct DestLock {
    _file: fs::File,
}

impl DestLock {
    fn take(dest: &Path) -> Result<DestLock, BackupError> {
        let path = dest.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| BackupError::io(&path, e))?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(BackupError::Refused(format!(
                "another backup is running into {}",
                dest.display()
            )));
        }
        Ok(DestLock { _file: f })
    }
}
