//! `docker save` tarballs, plain or gzipped. Two layouts exist: the classic one
//! (`manifest.json`, a config file, one tar per layer, possibly as symlinks to shared layers)
//! and Docker 25's, which is an OCI image layout inside the tar. The first is pushed as an OCI
//! image manifest whose config and layers are the archive's files byte for byte (so an
//! uncompressed layer's digest is its diff_id); the second is pushed as its `index.json` says.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::blobs::LocalBlob;
use super::error::{Error, Result};
use super::image::{Manifest, OCI_MANIFEST};
use super::layout::{LocalImage, LocalStore, select};
use crate::digest::{Algorithm, Digest, Hasher};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Largest config file read from an archive.
const MAX_CONFIG: u64 = 64 << 20;

/// One image of a classic archive's `manifest.json`.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The members of a tar: regular files by normalized path, and links to resolve.
struct Members {
    tar: PathBuf,
    files: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

/// `a/./b/../c` → `a/c`, without leading `/`.
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Members {
    fn read(tar: &Path) -> Result<Members> {
        let ctx = || format!("reading the archive {}", tar.display());
        let f = File::open(tar).map_err(|e| Error::io(ctx(), e))?;
        let mut archive = tar::Archive::new(f);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for entry in archive
            .entries_with_seek()
            .map_err(|e| Error::io(ctx(), e))?
        {
            let e = entry.map_err(|e| Error::io(ctx(), e))?;
            let path = normalize(&e.path().map_err(|e| Error::io(ctx(), e))?.to_string_lossy());
            let kind = e.header().entry_type();
            if kind.is_file() {
                files.insert(path, (e.raw_file_position(), e.size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = e.link_name().map_err(|e| Error::io(ctx(), e))? else {
                    continue;
                };
                let target = target.to_string_lossy();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                    normalize(&format!("{parent}/{target}"))
                } else {
                    normalize(&target)
                };
                links.insert(path, resolved);
            }
        }
        Ok(Members {
            tar: tar.to_path_buf(),
            files,
            links,
        })
    }

    /// The member at `path`, following links.
    fn get(&self, path: &str) -> Result<LocalBlob> {
        let mut p = normalize(path);
        for _ in 0..16 {
            if let Some(&(offset, len)) = self.files.get(&p) {
                return Ok(LocalBlob {
                    path: self.tar.clone(),
                    offset,
                    len,
                });
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(Error::Invalid(format!(
            "{}: no file {path:?} in the archive",
            self.tar.display()
        )))
    }

    fn has(&self, path: &str) -> bool {
        self.get(path).is_ok()
    }

    fn read_member(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let b = self.get(path)?;
        if b.len > limit {
            return Err(Error::Invalid(format!(
                "{path} in the archive is larger than {limit} bytes"
            )));
        }
        let ctx = || format!("reading {path} from {}", self.tar.display());
        let mut f = File::open(&b.path).map_err(|e| Error::io(ctx(), e))?;
        f.seek(SeekFrom::Start(b.offset))
            .map_err(|e| Error::io(ctx(), e))?;
        let mut out = vec![0; b.len as usize];
        f.read_exact(&mut out).map_err(|e| Error::io(ctx(), e))?;
        Ok(out)
    }
}

/// Hashes a member (sha256) and tells its compression from its first bytes.
fn hash_member(b: &LocalBlob) -> Result<(Digest, &'static str)> {
    let ctx = || format!("reading {}", b.path.display());
    let mut f = File::open(&b.path).map_err(|e| Error::io(ctx(), e))?;
    f.seek(SeekFrom::Start(b.offset))
        .map_err(|e| Error::io(ctx(), e))?;
    let mut r = f.take(b.len);
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut first = Vec::new();
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(ctx(), e))?;
        if n == 0 {
            break;
        }
        if first.len() < 4 {
            first.extend_from_slice(&buf[..n.min(4 - first.len())]);
        }
        h.update(&buf[..n]);
    }
    let media_type = if first.starts_with(&[0x1f, 0x8b]) {
        OCI_LAYER_GZIP
    } else if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER
    };
    Ok((h.finish(), media_type))
}

/// Decompresses a gzipped archive into a temporary file.
fn gunzip(path: &Path) -> Result<tempfile::NamedTempFile> {
    let ctx = || format!("decompressing {}", path.display());
    let f = File::open(path).map_err(|e| Error::io(ctx(), e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix("kura-archive-")
        .suffix(".tar")
        .tempfile()
        .map_err(|e| Error::io(ctx(), e))?;
    let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f));
    std::io::copy(&mut gz, &mut tmp).map_err(|e| Error::io(ctx(), e))?;
    Ok(tmp)
}

/// True when the file at `path` starts like a gzip stream.
fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(magic == [0x1f, 0x8b]),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Opens the archive at `path`. `select` picks an image: a `RepoTags` entry (`name:tag`) of a
/// classic archive, or an `index.json` ref name of an OCI one; with one image it may be omitted.
pub fn open_archive(path: &Path, select_name: Option<&str>) -> Result<LocalImage> {
    let temp = if is_gzip(path)? {
        Some(Arc::new(gunzip(path)?))
    } else {
        None
    };
    let tar_path = temp.as_ref().map_or(path, |t| t.path());
    let members = Members::read(tar_path)?;
    let (root, store) = if members.has("oci-layout") && members.has("index.json") {
        oci_archive(&members, select_name)?
    } else if members.has("manifest.json") {
        classic_archive(&members, select_name)?
    } else {
        return Err(Error::Invalid(format!(
            "{}: neither a docker save archive (no manifest.json) nor an OCI layout archive",
            path.display()
        )));
    };
    Ok(LocalImage {
        root,
        store,
        _temp: temp,
    })
}

fn oci_archive(m: &Members, name: Option<&str>) -> Result<(Manifest, LocalStore)> {
    let mut blobs = HashMap::new();
    for path in m.files.keys().chain(m.links.keys()) {
        let Some(rest) = path.strip_prefix("blobs/") else {
            continue;
        };
        if let Some(d) = rest
            .split_once('/')
            .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
        {
            blobs.insert(d, m.get(path)?);
        }
    }
    let store = LocalStore::Map(Arc::new(blobs));
    let index = m.read_member("index.json", super::image::MAX_MANIFEST as u64)?;
    Ok((select(index, &store, name)?, store))
}

fn classic_archive(m: &Members, name: Option<&str>) -> Result<(Manifest, LocalStore)> {
    let bytes = m.read_member("manifest.json", 16 << 20)?;
    let entries: Vec<Entry> = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("manifest.json of the archive: {e}")))?;
    let tags = |e: &Entry| e.repo_tags.clone().unwrap_or_default();
    let entry = match name {
        Some(n) => entries
            .iter()
            .find(|e| {
                tags(e)
                    .iter()
                    .any(|t| t == n || t.ends_with(&format!("/{n}")))
            })
            .ok_or_else(|| {
                let all: Vec<String> = entries.iter().flat_map(tags).collect();
                Error::Invalid(format!(
                    "no image tagged {n:?} in the archive (it has: {})",
                    all.join(", ")
                ))
            })?,
        None if entries.len() == 1 => &entries[0],
        None => {
            let all: Vec<String> = entries.iter().flat_map(tags).collect();
            return Err(Error::Invalid(format!(
                "the archive holds {} images; choose one with --ref-name (tags: {})",
                entries.len(),
                all.join(", ")
            )));
        }
    };
    let config = m.read_member(&entry.config, MAX_CONFIG)?;
    let config_digest = Digest::sha256_of(&config);
    let diff_ids: Vec<String> =
        serde_json::from_slice::<serde_json::Value>(&config)
            .map_err(|e| Error::Invalid(format!("{} of the archive: {e}", entry.config)))?["rootfs"]
            ["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
    let mut blobs = HashMap::new();
    blobs.insert(config_digest.clone(), m.get(&entry.config)?);
    let mut layers = Vec::new();
    for (i, path) in entry.layers.iter().enumerate() {
        let blob = m.get(path)?;
        let (digest, media_type) = hash_member(&blob)?;
        if media_type == OCI_LAYER
            && diff_ids
                .get(i)
                .is_some_and(|want| *want != digest.to_string())
        {
            return Err(Error::DigestMismatch {
                what: format!("layer {path} of the archive (rootfs.diff_ids[{i}])"),
                expected: diff_ids[i].clone(),
                actual: digest.to_string(),
            });
        }
        layers
            .push(json!({"mediaType": media_type, "digest": digest.to_string(), "size": blob.len}));
        blobs.insert(digest, blob);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    }))
    .expect("manifest JSON");
    let digest = Digest::sha256_of(&manifest);
    Ok((
        Manifest::parse(manifest, Some(OCI_MANIFEST), digest)?,
        LocalStore::Map(Arc::new(blobs)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("./a/b/../c"), "a/c");
        assert_eq!(normalize("/blobs//sha256/x"), "blobs/sha256/x");
    }
}
