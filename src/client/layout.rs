//! OCI image layouts (image-spec `image-layout.md`): reading one to push it, and writing one
//! that `kura pull` fills (readable by skopeo's `oci:` transport and by umoci).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::blobs::LocalBlob;
use super::error::{Error, Result};
use super::image::{Descriptor, MAX_MANIFEST, Manifest, OCI_INDEX, REF_NAME};
use crate::digest::Digest;

/// Where a local image's blobs are found.
#[derive(Clone)]
pub enum LocalStore {
    /// `<dir>/blobs/<algorithm>/<hex>`.
    Dir(PathBuf),
    /// Blobs by digest (members of an archive, or files of one).
    Map(Arc<HashMap<Digest, LocalBlob>>),
}

/// An image on disk to push: the root manifest and where its blobs are.
pub struct LocalImage {
    pub root: Manifest,
    pub store: LocalStore,
    /// Keeps a decompressed copy of a gzipped archive alive while it is read.
    pub(crate) _temp: Option<Arc<tempfile::NamedTempFile>>,
}

impl LocalStore {
    /// Where blob `digest` is.
    pub fn locate(&self, digest: &Digest) -> Result<LocalBlob> {
        match self {
            LocalStore::Dir(dir) => {
                let path = dir
                    .join("blobs")
                    .join(digest.algorithm().as_str())
                    .join(digest.hex());
                let len = std::fs::metadata(&path)
                    .map_err(|e| Error::io(format!("blob {digest} ({})", path.display()), e))?
                    .len();
                Ok(LocalBlob {
                    path,
                    offset: 0,
                    len,
                })
            }
            LocalStore::Map(m) => m
                .get(digest)
                .cloned()
                .ok_or_else(|| Error::Invalid(format!("blob {digest} is not in the archive"))),
        }
    }

    /// Reads a small blob (a manifest, a config) whole, checking its digest.
    pub fn read_small(&self, digest: &Digest, limit: usize) -> Result<Vec<u8>> {
        let b = self.locate(digest)?;
        if b.len > limit as u64 {
            return Err(Error::Invalid(format!(
                "blob {digest} is {} bytes, more than the {limit} expected",
                b.len
            )));
        }
        let ctx = || format!("reading blob {digest} from {}", b.path.display());
        let mut f = std::fs::File::open(&b.path).map_err(|e| Error::io(ctx(), e))?;
        f.seek(SeekFrom::Start(b.offset))
            .map_err(|e| Error::io(ctx(), e))?;
        let mut out = vec![0; b.len as usize];
        f.read_exact(&mut out).map_err(|e| Error::io(ctx(), e))?;
        let actual = super::image::digest_of(digest.algorithm(), &out);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("local blob {}", b.path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(out)
    }

    /// Reads and parses the manifest `desc` points at.
    pub fn manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let d = desc.digest()?;
        let bytes = self.read_small(&d, MAX_MANIFEST)?;
        Manifest::parse(bytes, Some(&desc.media_type), d)
    }
}

/// Chooses what to push from a layout's `index.json`: the entry named `ref_name`, else its only
/// entry, else (several entries) `index.json` itself as an image index.
pub(crate) fn select(
    index_json: Vec<u8>,
    store: &LocalStore,
    ref_name: Option<&str>,
) -> Result<Manifest> {
    let index = Manifest::parse(
        index_json.clone(),
        Some(OCI_INDEX),
        Digest::sha256_of(&index_json),
    )
    .map_err(|e| Error::Invalid(format!("index.json: {e}")))?;
    let entries = index.children();
    let chosen = match ref_name {
        Some(name) => entries
            .iter()
            .find(|e| {
                e.annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == name)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = entries
                    .iter()
                    .filter_map(|e| e.annotations.as_ref()?.get(REF_NAME).map(String::as_str))
                    .collect();
                Error::Invalid(format!(
                    "no entry named {name:?} in index.json (it has: {})",
                    names.join(", ")
                ))
            })?,
        None if entries.len() == 1 => &entries[0],
        None if entries.is_empty() => {
            return Err(Error::Invalid("index.json lists no manifest".into()));
        }
        None => return Ok(index),
    };
    store.manifest(chosen)
}

/// Opens the OCI layout at `dir` to push the image `ref_name` names (see `select`).
pub fn open_layout(dir: &Path, ref_name: Option<&str>) -> Result<LocalImage> {
    let layout = dir.join("oci-layout");
    let v: Value = serde_json::from_slice(
        &std::fs::read(&layout)
            .map_err(|e| Error::io(format!("{} is not an OCI layout", dir.display()), e))?,
    )
    .map_err(|e| Error::Invalid(format!("{}: {e}", layout.display())))?;
    if v["imageLayoutVersion"].as_str().is_none() {
        return Err(Error::Invalid(format!(
            "{}: no imageLayoutVersion",
            layout.display()
        )));
    }
    let index_path = dir.join("index.json");
    let index =
        std::fs::read(&index_path).map_err(|e| Error::io(index_path.display().to_string(), e))?;
    let store = LocalStore::Dir(dir.to_path_buf());
    let root = select(index, &store, ref_name)?;
    Ok(LocalImage {
        root,
        store,
        _temp: None,
    })
}

/// An OCI layout being written.
pub struct LayoutWriter {
    dir: PathBuf,
}

impl LayoutWriter {
    /// Creates (or reuses) a layout at `dir`.
    pub fn create(dir: &Path) -> Result<LayoutWriter> {
        let ctx = |p: &Path| format!("creating {}", p.display());
        std::fs::create_dir_all(dir).map_err(|e| Error::io(ctx(dir), e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
        })
    }

    /// The path of blob `digest` (its directory is created).
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        let dir = self.dir.join("blobs").join(digest.algorithm().as_str());
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(dir.join(digest.hex()))
    }

    /// True when the layout holds blob `digest` with `size` bytes.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        self.blob_path(digest)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() == size)
    }

    /// Writes a manifest's bytes as a blob.
    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.blob_path(&m.digest)?;
        if !self.has_blob(&m.digest, m.bytes.len() as u64) {
            write_atomic(&path, &m.bytes)?;
        }
        Ok(())
    }

    /// Adds `desc` to `index.json`, named `ref_name` (replacing the entry of that name).
    pub fn add_to_index(&self, mut desc: Descriptor, ref_name: Option<&str>) -> Result<()> {
        let path = self.dir.join("index.json");
        let mut index: Value = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        if !index["manifests"].is_array() {
            index["manifests"] = json!([]);
        }
        let entries = index["manifests"].as_array_mut().expect("just checked");
        match ref_name {
            Some(name) => {
                entries.retain(|e| e["annotations"][REF_NAME] != name);
                desc.annotations
                    .get_or_insert_with(Default::default)
                    .insert(REF_NAME.to_string(), name.to_string());
            }
            None => entries.retain(|e| {
                e["digest"] != desc.digest.as_str() || e["annotations"][REF_NAME].is_string()
            }),
        }
        entries.push(serde_json::to_value(&desc).expect("descriptor JSON"));
        write_atomic(&path, &serde_json::to_vec(&index).expect("index JSON"))
    }
}

/// Writes `data` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx = || format!("writing {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".kura-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(ctx(), e))?;
    std::io::Write::write_all(&mut tmp, data).map_err(|e| Error::io(ctx(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(ctx(), e))?;
    readable(tmp.path()).map_err(|e| Error::io(ctx(), e))?;
    tmp.persist(path).map_err(|e| Error::io(ctx(), e.error))?;
    Ok(())
}

/// Makes a file written through a temporary file readable by all, as layout files usually are.
pub(crate) fn readable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
