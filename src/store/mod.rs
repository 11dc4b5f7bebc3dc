//! Blob files: flat, content-addressed, never visible half-written.
//!
//! ```text
//! <root>/
//! ├── blobs/<algorithm>/<hex>   one file per blob or manifest, named by its digest
//! └── uploads/<uuid>            bytes of an upload session in progress
//! ```
//!
//! An upload streams into `uploads/<uuid>` while it is hashed; `UploadFile::verify` checks the
//! digest and fsyncs the file (outside any lock), `Verified::publish` renames it to
//! `blobs/<algorithm>/<hex>` and fsyncs the directory.

pub mod s3;
mod upload;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};

pub use upload::{Checkpoint, CommitError, UploadFile, Verified};

/// The bytes of a blob (or a range of it) as they are read, for a response body.
pub type BlobBody = futures_util::stream::BoxStream<'static, io::Result<bytes::Bytes>>;

/// One object found by listing the store (for the collector and fsck).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// A blob's `<algorithm>:<hex>` (possibly not a valid digest), or an upload's id.
    pub name: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// What an object-store upload session keeps in its `uploads` row, so it survives a restart:
/// the multipart upload and its parts so far, and the tail object holding the bytes after
/// them (fewer than a part). The filesystem driver keeps nothing here (`default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadState {
    /// The object store's multipart upload id, once the first part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<String>,
    /// The ETag (content id) of each part sent, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Bytes in those parts.
    #[serde(default)]
    pub parts_len: u64,
    /// Generation of the tail object (each write makes a new one; `0`: no tail).
    #[serde(default)]
    pub tail_gen: u64,
    /// Bytes in the tail object.
    #[serde(default)]
    pub tail_len: u64,
}

/// The blob file store under a root directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens the store at `root`, creating its directories durably.
    pub fn open(root: &Path) -> io::Result<BlobStore> {
        for alg in Algorithm::ALL {
            create_dir_durable(&root.join("blobs").join(alg.as_str()))?;
        }
        create_dir_durable(&root.join("uploads"))?;
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Where the bytes of upload session `id` live.
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// The size of blob `digest`, if its file exists.
    pub fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens blob `digest` for reading.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<Option<File>> {
        match File::open(self.blob_path(digest)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a whole (small) blob such as a manifest.
    pub fn read_blob(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.blob_path(digest)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `data`, already known to have `digest`, durably (manifests, small blobs).
    /// `recorded` as in `publish_staged`.
    pub fn put_verified(&self, digest: &Digest, data: &[u8], recorded: bool) -> io::Result<()> {
        let staged = self.stage_verified(digest, data)?;
        self.publish_staged(digest, staged, data, recorded)
    }

    /// First half of `put_verified`, taking no lock: writes `data` to a temp file and syncs
    /// it, unless a file for blob `digest` is already in place (`None`; whether that file can
    /// be trusted is decided under the lock, by `publish_staged`).
    pub fn stage_verified(&self, digest: &Digest, data: &[u8]) -> io::Result<Option<PathBuf>> {
        if self.blob_path(digest).exists() {
            return Ok(None);
        }
        self.write_temp(data).map(Some)
    }

    /// Writes `data` to a new temp file under `uploads/` and syncs it.
    fn write_temp(&self, data: &[u8]) -> io::Result<PathBuf> {
        let tmp = self.upload_path(&format!("manifest-{}", uuid::Uuid::new_v4()));
        let mut f = File::create(&tmp)?;
        let res = f.write_all(data).and_then(|_| f.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// Second half of `put_verified`, under the digest's lock. `recorded` says the blob has a
    /// metadata row, so a file in place was verified and made durable before that row
    /// committed: it is kept and the staged copy dropped. Without a row, a file in place is an
    /// orphan (left by a crash) that nothing verified: the verified copy replaces it
    /// atomically (written now if staging found the orphan, or if the blob vanished since).
    pub fn publish_staged(
        &self,
        digest: &Digest,
        staged: Option<PathBuf>,
        data: &[u8],
        recorded: bool,
    ) -> io::Result<()> {
        if recorded && self.blob_path(digest).exists() {
            if let Some(tmp) = staged {
                fs::remove_file(tmp)?;
            }
            return Ok(());
        }
        let tmp = match staged {
            Some(tmp) => tmp,
            None => self.write_temp(data)?,
        };
        self.publish(&tmp, digest)
    }

    /// Atomically moves a fully written, synced temp file to the blob path of `digest`.
    fn publish(&self, tmp: &Path, digest: &Digest) -> io::Result<()> {
        let target = self.blob_path(digest);
        fs::rename(tmp, &target)?;
        sync_dir(target.parent().expect("blob path has a parent"))
    }

    /// Creates the file for a new upload session.
    pub fn create_upload(&self, id: &str) -> io::Result<UploadFile> {
        UploadFile::create(self.upload_path(id))
    }

    /// Reopens the file of an upload session after a restart, rehashing what it holds.
    pub fn resume_upload(&self, id: &str) -> io::Result<Option<UploadFile>> {
        UploadFile::resume(self.upload_path(id))
    }

    /// Removes the file of an upload session, if any.
    pub fn remove_upload(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.upload_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes blob `digest`'s file, if any.
    pub fn remove_blob(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Makes a rename or creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors, each made durable: a new directory's entry
/// survives a power loss only once its parent is fsynced.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    sync_dir(
        dir.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads_empty(store: &BlobStore) -> bool {
        fs::read_dir(store.root().join("uploads"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn a_staged_copy_of_a_blob_published_meanwhile_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"manifest");
        let staged = store.stage_verified(&d, b"manifest").unwrap();
        assert!(staged.is_some());
        store.put_verified(&d, b"manifest", false).unwrap();
        // The other writer committed its row: the file in place is trusted.
        store.publish_staged(&d, staged, b"manifest", true).unwrap();
        assert_eq!(store.read_blob(&d).unwrap().unwrap(), b"manifest");
        assert!(uploads_empty(&store));
    }

    #[test]
    fn an_unrecorded_file_in_place_is_replaced_by_the_verified_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"manifest");
        // An orphan left by a crash, with the wrong bytes under the digest's name.
        std::fs::write(store.blob_path(&d), b"garbage").unwrap();
        let staged = store.stage_verified(&d, b"manifest").unwrap();
        assert!(staged.is_none(), "a file is in place");
        store
            .publish_staged(&d, staged, b"manifest", false)
            .unwrap();
        assert_eq!(store.read_blob(&d).unwrap().unwrap(), b"manifest");
        assert!(uploads_empty(&store));
    }

    #[test]
    fn a_blob_that_vanished_after_staging_found_it_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"manifest");
        store.put_verified(&d, b"manifest", false).unwrap();
        let staged = store.stage_verified(&d, b"manifest").unwrap();
        assert!(staged.is_none(), "already published: nothing written");
        store.remove_blob(&d).unwrap();
        store
            .publish_staged(&d, staged, b"manifest", false)
            .unwrap();
        assert_eq!(store.read_blob(&d).unwrap().unwrap(), b"manifest");
        assert!(uploads_empty(&store));
    }
}
