//! Unreferenced blob rows and orphan blob files.

use std::time::SystemTime;

use super::{GcOptions, GcReport, expired};
use crate::digest::Digest;
use crate::error::Result;
use crate::meta::{blobs, now_secs};
use crate::registry::Registry;

/// Removes blob rows whose count is zero and whose grace period has passed, then their files.
pub(super) fn collect(registry: &Registry, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let now = now_secs();
    let candidates: Vec<(String, u64)> = registry.meta().read(|t| {
        let mut out = Vec::new();
        blobs::scan(t, |d, row| {
            if row.refs == 0 && expired(row.touched, now, opts.grace) {
                out.push((d.to_string(), row.size));
            }
            Ok(true)
        })?;
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
                match blobs::get(t, d)? {
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
        // 2. The removal is durable: delete the objects, in batches of `DELETE_BATCH`, each
        //    batch under the locks of its digests only.
        for chunk in removed.chunks(DELETE_BATCH) {
            let digests = chunk
                .iter()
                .map(|(d, _)| d.parse())
                .collect::<std::result::Result<Vec<Digest>, _>>()?;
            remove_unless_recorded(registry, &digests)?;
            for (d, size) in chunk {
                report.blobs_removed += 1;
                report.bytes_freed += size;
                report.items.push(d.clone());
            }
        }
    }
    Ok(())
}

/// Objects deleted per request to the store (S3's DeleteObjects takes up to 1,000).
const DELETE_BATCH: usize = 100;

/// Deletes the objects of `digests` unless a writer has recorded the blob again since its row
/// was removed. Writers hold a digest's lock from placing the object to committing its row, so
/// under the lock a visible row always has its object, and a missing row means no writer is
/// between the two: the object may go (unless a backup runs). Returns the digests whose
/// objects were deleted.
pub(crate) fn remove_unless_recorded(
    registry: &Registry,
    digests: &[Digest],
) -> Result<Vec<Digest>> {
    let names: Vec<String> = digests.iter().map(Digest::to_string).collect();
    let _locks = registry
        .digest_locks()
        .lock_many(names.iter().map(String::as_str))?;
    let gone: Vec<Digest> = registry.meta().read(|t| {
        let mut gone = Vec::new();
        for (digest, d) in digests.iter().zip(&names) {
            if blobs::get(t, d)?.is_none() {
                gone.push(digest.clone());
            }
        }
        Ok(gone)
    })?;
    // A backup's snapshot may still name these blobs: while one runs, the files stay (as
    // orphans, swept by a later collection). See `backup/pins.rs` for the ordering.
    let pins = registry.backup_pins().for_unlink();
    if pins.backup_running() {
        tracing::info!(
            files = gone.len(),
            "a backup is running: rows removed, files left for a later collection"
        );
        return Ok(Vec::new());
    }
    registry.store().remove_blobs(&gone)?;
    Ok(gone)
}

/// Unlinks files in `blobs/` that have no row and are older than the grace period.
pub(super) fn collect_orphan_files(
    registry: &Registry,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<()> {
    // One listing and one snapshot; each candidate is re-checked under its lock before removal.
    let mut listed = Vec::new();
    registry.store().list_blobs(&mut |l| {
        let old_enough = SystemTime::now()
            .duration_since(l.modified)
            .is_ok_and(|age| age >= opts.grace);
        if old_enough && let Ok(digest) = l.name.parse::<Digest>() {
            listed.push(digest);
        }
        Ok(())
    })?;
    let candidates: Vec<Digest> = registry.meta().read(|t| {
        let mut out = Vec::new();
        for digest in &listed {
            if blobs::get(t, &digest.to_string())?.is_none() {
                out.push(digest.clone());
            }
        }
        Ok(out)
    })?;
    let gone = if opts.dry_run {
        candidates
    } else {
        let mut gone = Vec::new();
        for chunk in candidates.chunks(DELETE_BATCH) {
            gone.extend(remove_unless_recorded(registry, chunk)?);
        }
        gone
    };
    for digest in gone {
        report.orphan_files_removed += 1;
        report.items.push(format!("orphan {digest}"));
    }
    Ok(())
}
