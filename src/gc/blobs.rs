//! Unreferenced blob rows and orphan blob files.

use std::time::SystemTime;

use redb::ReadableTable;

use super::{GcOptions, GcReport, expired};
use crate::digest::{Algorithm, Digest};
use crate::error::Result;
use crate::meta::{blobs, now_secs};
use crate::registry::Registry;

/// Removes blob rows whose count is zero and whose grace period has passed, then their files.
pub(super) fn collect(registry: &Registry, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let now = now_secs();
    let candidates: Vec<(String, u64)> = registry.meta().read(|t| {
        let mut out = Vec::new();
        for item in t.blobs.iter()? {
            let (k, v) = item?;
            let (size, refs, touched) = v.value();
            if refs == 0 && expired(touched, now, opts.grace) {
                out.push((k.value().to_string(), size));
            }
        }
        Ok(out)
    })?;
    if opts.dry_run {
        for (d, size) in candidates {
            report.blobs_removed += 1;
            report.bytes_freed += size;
            report.items.push(d);
        }
        return Ok(());
    }
    for batch in candidates.chunks(opts.batch_size.max(1)) {
        // 1. Remove the rows, re-checked in the transaction: a manifest, upload, mount or
        //    sighting committed before it keeps its blob; one committed after it finds no row.
        //    No lock is held: redb orders this transaction with every writer's.
        let removed: Vec<(String, u64)> = registry.meta().write(|t| {
            let mut removed = Vec::new();
            for (d, _) in batch {
                match blobs::get(&t.blobs, d)? {
                    Some(row) if row.refs == 0 && expired(row.touched, now_secs(), opts.grace) => {
                        blobs::remove(t, d)?;
                        removed.push((d.clone(), row.size));
                    }
                    _ => {}
                }
            }
            if let Some(hook) = &opts.in_removal {
                hook();
            }
            Ok(removed)
        })?;
        if let Some(hook) = &opts.after_commit {
            hook();
        }
        // 2. The removal is durable: unlink the files, each under its own digest lock only.
        for (d, size) in removed {
            let digest: Digest = d.parse()?;
            unlink_unless_recorded(registry, &digest)?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
            report.items.push(d);
        }
    }
    Ok(())
}

/// Unlinks the file of `digest` unless a writer has recorded the blob again since its row was
/// removed. Writers hold the digest's lock from placing the file to committing its row, so
/// under the lock a visible row always has its file, and a missing row means no writer is
/// between the two: the file may go. Returns whether it was unlinked.
fn unlink_unless_recorded(registry: &Registry, digest: &Digest) -> Result<bool> {
    let d = digest.to_string();
    let _lock = registry.digest_locks().lock(&d);
    if registry
        .meta()
        .read(|t| blobs::get(&t.blobs, &d))?
        .is_some()
    {
        return Ok(false);
    }
    registry.store().remove_blob(digest)?;
    Ok(true)
}

/// Unlinks files in `blobs/` that have no row and are older than the grace period.
pub(super) fn collect_orphan_files(
    registry: &Registry,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<()> {
    // One snapshot for the walk; each candidate is re-checked under its lock before unlinking.
    let candidates: Vec<(Digest, std::path::PathBuf)> = registry.meta().read(|t| {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = registry.store().root().join("blobs").join(alg.as_str());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(digest) = format!("{}:{name}", alg.as_str()).parse::<Digest>() else {
                    continue;
                };
                if t.blobs.get(digest.to_string().as_str())?.is_some() {
                    continue;
                }
                let old_enough = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age >= opts.grace);
                if old_enough {
                    out.push((digest, entry.path()));
                }
            }
        }
        Ok(out)
    })?;
    for (digest, path) in candidates {
        let gone = if opts.dry_run {
            let d = digest.to_string();
            registry
                .meta()
                .read(|t| blobs::get(&t.blobs, &d))?
                .is_none()
        } else {
            unlink_unless_recorded(registry, &digest)?
        };
        if !gone {
            continue;
        }
        report.orphan_files_removed += 1;
        report.items.push(format!("orphan {}", path.display()));
    }
    Ok(())
}
