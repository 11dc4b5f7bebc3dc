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

mod upload;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};

pub use upload::{Checkpoint, CommitError, UploadFile, Verified};

/// The blob file store under a root directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens the store at `root`, creating its directories.
    pub fn open(root: &Path) -> io::Result<BlobStore> {
        for alg in Algorithm::ALL {
            fs::create_dir_all(root.join("blobs").join(alg.as_str()))?;
        }
        fs::create_dir_all(root.join("uploads"))?;
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

    /// Stores `data`, already known to have `digest`, durably (used for manifests).
    pub fn put_verified(&self, digest: &Digest, data: &[u8]) -> io::Result<()> {
        let target = self.blob_path(digest);
        if target.exists() {
            return Ok(());
        }
        let tmp = self.upload_path(&format!("manifest-{}", uuid::Uuid::new_v4()));
        let mut f = File::create(&tmp)?;
        let res = f.write_all(data).and_then(|_| f.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.publish(&tmp, digest)
    }

    /// Atomically moves a fully written, synced temp file to the blob path of `digest`.
    fn publish(&self, tmp: &Path, digest: &Digest) -> io::Result<()> {
        let target = self.blob_path(digest);
        fs::rename(tmp, &target)?;
        sync_dir(target.parent().expect("blob path has a parent"))
    }

    /// Makes the directory entry of blob `digest` durable.
    pub fn sync_blob_dir(&self, digest: &Digest) -> io::Result<()> {
        sync_dir(
            self.blob_path(digest)
                .parent()
                .expect("blob path has a parent"),
        )
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
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
