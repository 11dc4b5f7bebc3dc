//! Copying every recorded blob from one blob store to another (`kura migrate-storage`):
//! each copy streams through an upload of the destination, so it is hashed and verified
//! there exactly like a push, and is placed under its digest only when it matches. A blob
//! already in the destination with its recorded size is skipped (a blob key only ever holds
//! verified content), which makes an interrupted migration resumable. Upload sessions in
//! progress do not move: their bytes stay in the source store, so the switch ends them.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, TryStreamExt};

use super::{BlobStore, CommitError};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::meta::uploads;
use crate::registry::Registry;

/// Blobs copied at once.
const PARALLEL: usize = 4;

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrateReport {
    /// Blobs recorded in the metadata.
    pub blobs: u64,
    /// Blobs copied and verified in the destination by this run.
    pub copied: u64,
    /// Bytes copied by this run.
    pub bytes_copied: u64,
    /// Blobs found in the destination already (an earlier, interrupted run).
    pub already_there: u64,
    /// Blobs that could not be copied, with the reason: the source is missing or corrupt, or
    /// the destination failed. The store must not be switched while any remain.
    pub failed: Vec<String>,
}

/// Copies every blob `registry` records into `dest`, verifying each; `progress` is told of the
/// bytes done. Runs the copies on the current tokio runtime.
pub async fn copy_blobs(
    registry: &Registry,
    dest: &BlobStore,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<MigrateReport> {
    let rows: Vec<(String, u64)> = registry.meta().read(|t| {
        let mut out = Vec::new();
        crate::meta::blobs::scan(t, |d, row| {
            out.push((d.to_string(), row.size));
            Ok(true)
        })?;
        Ok(out)
    })?;
    let mut report = MigrateReport {
        blobs: rows.len() as u64,
        ..MigrateReport::default()
    };
    let copied = AtomicU64::new(0);
    let outcomes: Vec<(String, u64, std::result::Result<bool, String>)> =
        futures_util::stream::iter(rows)
            .map(|(d, size)| {
                let copied = &copied;
                async move {
                    let out = copy_one(registry, dest, &d, size, &|n| {
                        copied.fetch_add(n, Ordering::Relaxed);
                        progress(n);
                    })
                    .await;
                    (d, size, out)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
    for (d, size, out) in outcomes {
        match out {
            Ok(true) => {
                report.copied += 1;
                report.bytes_copied += size;
            }
            Ok(false) => report.already_there += 1,
            Err(why) => report.failed.push(format!("{d}: {why}")),
        }
    }
    report.failed.sort();
    Ok(report)
}

/// Copies blob `d` of `size` bytes; false when `dest` already holds it.
async fn copy_one(
    registry: &Registry,
    dest: &BlobStore,
    d: &str,
    size: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> std::result::Result<bool, String> {
    let digest: Digest = d.parse().map_err(|e: Error| e.to_string())?;
    let (store, probe) = (dest.clone(), digest.clone());
    let present = blocking(move || store.stat(&probe)).await?;
    if present == Some(size) {
        return Ok(false);
    }
    let Some(mut body) = registry
        .store()
        .read_range(&digest, 0, size)
        .await
        .map_err(|e| format!("cannot read the source: {e}"))?
    else {
        return Err("missing from the source store".into());
    };
    let id = format!("migrate-{}", uuid::Uuid::new_v4());
    let (store, id2) = (dest.clone(), id.clone());
    let mut upload = blocking(move || store.create_upload(&id2)).await?;
    let streamed = async {
        while let Some(chunk) = body.try_next().await? {
            upload.push(&chunk).await?;
            progress(chunk.len() as u64);
        }
        upload.flush().await
    }
    .await;
    if let Err(e) = streamed {
        let (store, state) = (dest.clone(), upload.state());
        let _ = blocking(move || store.remove_upload(&id, Some(&state))).await;
        return Err(format!("copy failed: {e}"));
    }
    let store = dest.clone();
    blocking(move || match upload.verify(&store, &digest) {
        Ok(v) => v.publish(&store, false).map(|_| true),
        Err(CommitError::DigestMismatch { actual, .. }) => Err(std::io::Error::other(format!(
            "the source's content hashes to {actual} (corrupt; run kura fsck)"
        ))),
        Err(CommitError::Io(e)) => Err(e),
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Ends every upload session (before the store is switched): its row goes, then its bytes in
/// the source store. A client resuming one is told the session is unknown and starts over;
/// left in place, the destination could not resume a session whose bytes it never held.
/// Returns how many were ended. Blocking.
pub fn end_upload_sessions(registry: &Registry) -> Result<u64> {
    let ended = registry.meta().write(|t| {
        let all = uploads::all(t)?;
        for (id, _) in &all {
            uploads::remove(t, id)?;
        }
        Ok(all)
    })?;
    for (id, rec) in &ended {
        registry.store().remove_upload(id, Some(&rec.state))?;
    }
    Ok(ended.len() as u64)
}
