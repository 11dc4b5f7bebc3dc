//! The content half of a backup: every blob the snapshot names, read through the `BlobStore`
//! (filesystem or bucket alike), hashed while it streams and written to
//! `<dest>/blobs/<algorithm>/<hex>` only once its digest matched (temporary file, fsync,
//! rename). Blobs are immutable, so one already at its path with its size (placed there
//! verified by an earlier backup) is reused, not copied again.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};

use super::manifest::BlobEntry;
use super::{BackupError, Event};
use crate::digest::{Digest, Hasher};
use crate::store::BlobStore;

/// Blobs copied at once.
const PARALLEL: usize = 4;

/// What copying did.
#[derive(Debug, Default)]
pub struct Copied {
    pub copied: u64,
    pub reused: u64,
    pub bytes_copied: u64,
}

/// Where blob `digest` lives under a backup (or restore) directory.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// Copies every blob of `blobs` from `store` into `dest`. A blob missing from the store or
/// whose bytes do not hash to its digest is an error (all of them are listed).
pub fn copy_all(
    store: &BlobStore,
    dest: &Path,
    blobs: &[BlobEntry],
    on: &(dyn Fn(&Event) + Sync),
) -> Result<Copied, BackupError> {
    let tmp = dest.join("tmp");
    let _ = fs::remove_dir_all(&tmp);
    crate::store::create_dir_durable(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
    let mut out = Copied::default();
    let mut problems = Vec::new();
    // Parse every digest and find what is new; the directories first, so copies need none.
    let mut todo = Vec::new();
    let mut dirs = BTreeSet::new();
    for b in blobs {
        let Ok(digest) = b.digest.parse::<Digest>() else {
            problems.push(format!("{}: not a valid digest", b.digest));
            continue;
        };
        let path = blob_path(dest, &digest);
        if fs::metadata(&path).is_ok_and(|m| m.len() == b.size) {
            out.reused += 1;
            on(&Event::Blob {
                digest: b.digest.clone(),
                size: b.size,
                copied: false,
            });
            continue;
        }
        let parent = path.parent().expect("a blob path has a parent");
        if dirs.insert(parent.to_path_buf()) {
            crate::store::create_dir_durable(parent).map_err(|e| BackupError::io(parent, e))?;
        }
        todo.push((b, digest, path));
    }
    // A few at once: a bucket's latency, not its bandwidth, bounds one copy at a time.
    let outcomes: Vec<(&BlobEntry, Result<(), String>)> = block_on(
        futures_util::stream::iter(todo)
            .map(|(b, digest, path)| {
                let tmp = &tmp;
                async move {
                    let r = copy_one(store, &digest, b.size, tmp, &path).await;
                    if r.is_ok() {
                        on(&Event::Blob {
                            digest: b.digest.clone(),
                            size: b.size,
                            copied: true,
                        });
                    }
                    (b, r)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect(),
    );
    for (b, r) in outcomes {
        match r {
            Ok(()) => {
                out.copied += 1;
                out.bytes_copied += b.size;
            }
            Err(why) => problems.push(format!("{}: {why}", b.digest)),
        }
    }
    for dir in &dirs {
        crate::store::sync_dir(dir).map_err(|e| BackupError::io(dir, e))?;
    }
    let _ = fs::remove_dir_all(&tmp);
    if !problems.is_empty() {
        return Err(BackupError::Failed(format!(
            "{} blob(s) the snapshot records could not be copied (run kura fsck on the source): {}",
            problems.len(),
            problems
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(out)
}

async fn copy_one(
    store: &BlobStore,
    digest: &Digest,
    size: u64,
    tmp_dir: &Path,
    path: &Path,
) -> Result<(), String> {
    let Some(mut body) = store
        .read_range(digest, 0, size)
        .await
        .map_err(|e| format!("cannot read it from the store: {e}"))?
    else {
        return Err("recorded but missing from the blob store".into());
    };
    let tmp = tmp_dir.join(format!("{}.{}", digest.hex(), uuid::Uuid::new_v4()));
    let result = async {
        let mut file = fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut n = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| e.to_string())? {
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(|e| e.to_string())?;
            n += chunk.len() as u64;
        }
        if n != size {
            return Err(format!("the store gave {n} bytes, {size} recorded"));
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(format!("the stored bytes hash to {actual} (corrupt)"));
        }
        file.sync_all().map_err(|e| e.to_string())?;
        fs::rename(&tmp, path).map_err(|e| e.to_string())
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Runs `f` to completion on this (blocking) thread: on the runtime it belongs to (a server's
/// blocking pool), else on a runtime made for it (the command line).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(f),
    }
}
