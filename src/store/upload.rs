//! An upload session's file: appended to while hashed, then verified and published.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use super::BlobStore;
use crate::digest::{Algorithm, Digest, Hasher};

/// The bytes of one upload in progress, with a running sha256 of them.
pub struct UploadFile {
    path: PathBuf,
    file: File,
    hasher: Hasher,
    len: u64,
}

/// The state of an upload before a request appended to it.
pub struct Checkpoint {
    len: u64,
    hasher: Hasher,
}

/// Why committing an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("upload content has digest {actual}, not the {expected} given")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl UploadFile {
    pub(super) fn create(path: PathBuf) -> io::Result<UploadFile> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(UploadFile {
            path,
            file,
            hasher: Hasher::new(Algorithm::Sha256),
            len: 0,
        })
    }

    pub(super) fn resume(path: PathBuf) -> io::Result<Option<UploadFile>> {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let len = match File::open(&path) {
            Ok(f) => hash_reader(f, &mut hasher)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Some(UploadFile {
            path,
            file,
            hasher,
            len,
        }))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A point to roll back to if the request appending after it fails.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            len: self.len,
            hasher: self.hasher.clone(),
        }
    }

    /// Truncates the file back to `cp`, so a failed request leaves no partial chunk behind.
    pub fn rollback(&mut self, cp: Checkpoint) -> io::Result<()> {
        self.file.set_len(cp.len)?;
        self.len = cp.len;
        self.hasher = cp.hasher;
        Ok(())
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Verifies the content against `expected`, then fsyncs and publishes it as a blob.
    /// On a digest mismatch the file is removed and nothing becomes visible. Returns the size.
    pub fn commit(self, store: &BlobStore, expected: &Digest) -> Result<u64, CommitError> {
        let actual = if expected.algorithm() == Algorithm::Sha256 {
            self.hasher.clone().finish()
        } else {
            let mut h = Hasher::new(expected.algorithm());
            hash_reader(File::open(&self.path)?, &mut h)?;
            h.finish()
        };
        if &actual != expected {
            let _ = fs::remove_file(&self.path);
            return Err(CommitError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.file.sync_all()?;
        store.publish(&self.path, expected)?;
        Ok(self.len)
    }
}

fn hash_reader(mut r: impl Read, hasher: &mut Hasher) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}
