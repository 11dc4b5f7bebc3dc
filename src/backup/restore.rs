//! `kura restore SRC --root DIR`: a complete backup into an empty or new data directory,
//! offline. Everything is verified on the way: the manifest must be there (the completion
//! marker), the metadata snapshot must hash to what the manifest says and record exactly the
//! blobs it lists, and every blob must hash to its digest. Blobs go in first; `meta.redb`
//! appears last (renamed in), so a restore that fails leaves no store behind. The restored
//! store keeps its blobs on the filesystem under DIR.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::copy::blob_path;
use super::manifest::{self, BackupManifest};
use super::{BackupError, Event};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::meta::{Meta, SCHEMA_VERSION, settings};

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub root: String,
    pub id: String,
    pub created: String,
    pub schema_version: u64,
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blobs: u64,
    pub bytes: u64,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored backup {} (taken {}) into {}: {} repositories, {} manifests, {} tags, {} blobs ({} bytes), all verified",
            self.id,
            self.created,
            self.root,
            self.repositories,
            self.manifests,
            self.tags,
            self.blobs,
            self.bytes
        )
    }
}

/// Restores the backup in `src` into `root`, which must be empty or absent. Blocking.
pub fn restore(
    src: &Path,
    root: &Path,
    on: &(dyn Fn(&Event) + Sync),
) -> Result<RestoreReport, BackupError> {
    let m = manifest::read(src)?.ok_or_else(|| {
        BackupError::Refused(format!(
            "{} holds no complete backup: its {} (written last, when a backup completes) is missing; the backup was interrupted or this is not a backup directory",
            src.display(),
            manifest::MANIFEST
        ))
    })?;
    if !m.complete || m.format != manifest::FORMAT {
        return Err(BackupError::Refused(format!(
            "{}: not a complete backup of format {} (complete: {}, format: {})",
            src.display(),
            manifest::FORMAT,
            m.complete,
            m.format
        )));
    }
    if m.schema_version > SCHEMA_VERSION {
        return Err(BackupError::Refused(format!(
            "the backup is at schema version {}; this kura supports up to {SCHEMA_VERSION}: upgrade kura",
            m.schema_version
        )));
    }
    if root.exists() {
        let mut entries = fs::read_dir(root).map_err(|e| BackupError::io(root, e))?;
        if entries.next().is_some() {
            return Err(BackupError::Refused(format!(
                "{} is not empty; restore only into an empty or new directory",
                root.display()
            )));
        }
    }
    crate::store::create_dir_durable(root).map_err(|e| BackupError::io(root, e))?;
    let result = restore_into(src, root, &m, on);
    if result.is_err() {
        // The root was empty: take back what this restore put there.
        let _ = fs::remove_dir_all(root.join("blobs"));
        let _ = fs::remove_dir_all(root.join("uploads"));
    }
    result
}

fn restore_into(
    src: &Path,
    root: &Path,
    m: &BackupManifest,
    on: &(dyn Fn(&Event) + Sync),
) -> Result<RestoreReport, BackupError> {
    let damaged = |what: String| BackupError::Refused(format!("the backup is damaged: {what}"));
    let staging = root.join("uploads");
    crate::store::create_dir_durable(&staging).map_err(|e| BackupError::io(&staging, e))?;
    // The metadata first: hashed while copied, then checked against the manifest.
    let meta_src = src.join(&m.metadata);
    if m.metadata.contains('/') || !meta_src.is_file() {
        return Err(damaged(format!("its metadata {} is missing", m.metadata)));
    }
    let meta_tmp = staging.join("restore-meta.redb");
    let (size, sha) = copy_hashed(&meta_src, &meta_tmp, Hasher::new(Algorithm::Sha256))?;
    if size != m.metadata_size || sha.hex() != m.metadata_sha256 {
        return Err(damaged(format!(
            "{} hashes to {} ({size} bytes), the manifest says sha256:{} ({} bytes)",
            m.metadata, sha, m.metadata_sha256, m.metadata_size
        )));
    }
    let listed: BTreeMap<&str, u64> = m
        .blobs
        .iter()
        .map(|b| (b.digest.as_str(), b.size))
        .collect();
    {
        let meta = Meta::open(&meta_tmp).map_err(|e| damaged(e.to_string()))?;
        let recorded: BTreeMap<String, u64> = meta.read(|t| {
            let mut out = BTreeMap::new();
            crate::meta::blobs::scan(t, |d, row| {
                out.insert(d.to_string(), row.size);
                Ok(true)
            })?;
            Ok(out)
        })?;
        let same = recorded.len() == listed.len()
            && recorded
                .iter()
                .all(|(d, s)| listed.get(d.as_str()) == Some(s));
        if !same {
            return Err(damaged(format!(
                "its metadata records {} blobs, its manifest lists {} (or other ones)",
                recorded.len(),
                listed.len()
            )));
        }
        // The restored store keeps its blobs here, whatever store the backup came from.
        meta.write(|t| {
            settings::set_blob_store(t, &settings::StoreIdentity::filesystem())?;
            let open: Vec<String> = crate::meta::uploads::all(t)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            for id in open {
                crate::meta::uploads::remove(t, &id)?;
            }
            Ok(())
        })?;
    }
    on(&Event::Start {
        id: m.id.clone(),
        blobs: m.blobs.len() as u64,
        bytes: m.blob_bytes,
    });
    let mut problems = Vec::new();
    for b in &m.blobs {
        match restore_blob(src, root, &b.digest, b.size) {
            Ok(()) => on(&Event::Blob {
                digest: b.digest.clone(),
                size: b.size,
                copied: true,
            }),
            Err(why) => problems.push(format!("{}: {why}", b.digest)),
        }
    }
    if !problems.is_empty() {
        return Err(damaged(format!(
            "{} blob(s) missing or corrupt: {}",
            problems.len(),
            problems
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    if let Ok(algs) = fs::read_dir(root.join("blobs")) {
        for a in algs.flatten() {
            crate::store::sync_dir(&a.path()).map_err(|e| BackupError::io(&a.path(), e))?;
        }
    }
    let meta_path = root.join("meta.redb");
    fs::rename(&meta_tmp, &meta_path).map_err(|e| BackupError::io(&meta_path, e))?;
    crate::store::sync_dir(root).map_err(|e| BackupError::io(root, e))?;
    Ok(RestoreReport {
        root: root.display().to_string(),
        id: m.id.clone(),
        created: m.created.clone(),
        schema_version: m.schema_version,
        repositories: m.repositories,
        manifests: m.manifests,
        tags: m.tags,
        blobs: m.blobs.len() as u64,
        bytes: m.blob_bytes,
    })
}

/// Copies one blob of the backup into the root, verified.
fn restore_blob(src: &Path, root: &Path, d: &str, size: u64) -> Result<(), String> {
    let digest: Digest = d.parse().map_err(|_| "not a valid digest".to_string())?;
    let from = blob_path(src, &digest);
    if !from.is_file() {
        return Err("missing from the backup".into());
    }
    let to = blob_path(root, &digest);
    let parent = to.parent().expect("a blob path has a parent");
    crate::store::create_dir_durable(parent).map_err(|e| e.to_string())?;
    let tmp = root
        .join("uploads")
        .join(format!("restore-{}", digest.hex()));
    let (n, actual) =
        copy_hashed(&from, &tmp, Hasher::new(digest.algorithm())).map_err(|e| e.to_string())?;
    if n != size || actual != digest {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "corrupt: {n} bytes hashing to {actual}, {size} bytes recorded"
        ));
    }
    fs::rename(&tmp, &to).map_err(|e| e.to_string())
}

/// Copies `from` to `to` (fsynced), hashing; returns the size and digest.
fn copy_hashed(from: &Path, to: &Path, mut hasher: Hasher) -> Result<(u64, Digest), BackupError> {
    let mut src = fs::File::open(from).map_err(|e| BackupError::io(from, e))?;
    let mut dst = fs::File::create(to).map_err(|e| BackupError::io(to, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = src.read(&mut buf).map_err(|e| BackupError::io(from, e))?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        dst.write_all(&buf[..k])
            .map_err(|e| BackupError::io(to, e))?;
        n += k as u64;
    }
    dst.sync_all().map_err(|e| BackupError::io(to, e))?;
    Ok((n, hasher.finish()))
}

/// The size and sha256 (hex) of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = fs::File::open(path).map_err(|e| BackupError::io(path, e))?;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| BackupError::io(path, e))?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hasher.finish().hex().to_string()))
}
