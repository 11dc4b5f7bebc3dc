//! An upload session's file: appended to while hashed, then verified and published.
//!
//! Bytes are hashed as they arrive and gathered into blocks (`block`); each block is
//! written by the blocking pool while the next one arrives, so hashing, receiving and writing
//! overlap. The write of the last block handed over is tracked in the `UploadFile` itself:
//! whoever touches the upload next (another request, a rollback, the commit) waits for it
//! first, even when the request that started it was cancelled. Each written block's
//! writeback starts at once and the block before it leaves the page cache (`writeback`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::block::Block;
use super::writeback;
use super::{FsStore, hash_reader};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::store::CommitError;

/// The bytes of one upload in progress, with a running sha256 of them. The file is opened
/// when a request writes to it and closed by `flush`, so an idle session holds no descriptor
/// (only its path, length and hash state).
pub struct UploadFile {
    path: PathBuf,
    /// Open only while a request appends (or rolls back).
    file: Option<Arc<File>>,
    hasher: Hasher,
    /// Bytes accepted so far: written, being written, or buffered.
    len: u64,
    /// The block filling. An upload holds at most two blocks (one filling, one being written)
    /// while a request streams into it, and none between requests.
    buf: Option<Block>,
    /// The last block written, for the next one.
    spare: Option<Block>,
    /// The write of the previous block; yields the block back for reuse.
    pending: Option<JoinHandle<io::Result<Block>>>,
    /// A write failed: the file no longer matches `len`/`hasher` until rolled back.
    broken: bool,
    /// Bytes handed to the writer: the file offset of the next block.
    written: u64,
}

/// The state of an upload before a request appended to it.
pub struct Checkpoint {
    len: u64,
    hasher: Hasher,
}

/// An upload whose content was checked against its digest (and synced unless the blob
/// already existed), ready to be published under the digest's lock.
pub struct Verified {
    path: PathBuf,
    digest: Digest,
    size: u64,
    synced: bool,
}

impl UploadFile {
    fn new(path: PathBuf, hasher: Hasher, len: u64) -> UploadFile {
        UploadFile {
            path,
            file: None,
            hasher,
            len,
            buf: None,
            spare: None,
            pending: None,
            broken: false,
            written: len,
        }
    }

    /// Creates the (empty) file of a new upload; it is not kept open.
    pub(super) fn create(path: PathBuf) -> io::Result<UploadFile> {
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(UploadFile::new(path, Hasher::new(Algorithm::Sha256), 0))
    }

    /// Rehashes the file of an upload after a restart (blocking; reads the whole file).
    pub(super) fn resume(path: PathBuf) -> io::Result<Option<UploadFile>> {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let len = match File::open(&path) {
            Ok(f) => hash_reader(f, &mut hasher, &mut |_| {})?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(UploadFile::new(path, hasher, len)))
    }

    /// The open file, opened for appending on first use.
    fn file(&mut self) -> io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = Arc::new(OpenOptions::new().append(true).open(&self.path)?);
        self.file = Some(f.clone());
        Ok(f)
    }

    /// True while the upload holds an open file descriptor.
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A point to roll back to if the request appending after it fails. Waits first for a
    /// block that a cut-off request left in flight: a checkpoint counting a block whose write
    /// then failed would make the rollback pad the file with zeros where the hash has seen
    /// the real bytes. If that write failed, the upload stays failed.
    pub async fn checkpoint(&mut self) -> io::Result<Checkpoint> {
        self.settle().await?;
        Ok(Checkpoint {
            len: self.len,
            hasher: self.hasher.clone(),
        })
    }

    /// Waits for writes in flight, then truncates the file back to `cp`, so a failed request
    /// leaves no partial chunk behind. The file is closed afterwards.
    pub async fn rollback(&mut self, cp: Checkpoint) -> io::Result<()> {
        let _ = self.settle().await;
        self.buf = None;
        let res = self.file().and_then(|f| f.set_len(cp.len));
        self.file = None;
        res?;
        self.len = cp.len;
        self.hasher = cp.hasher;
        self.broken = false;
        self.written = cp.len;
        Ok(())
    }

    /// Waits for the write in flight, if any. It is awaited in place, so a caller cut off
    /// meanwhile leaves it tracked for the next one.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(p) = self.pending.as_mut() {
            let done = p.await;
            self.pending = None;
            match done.map_err(io::Error::other).and_then(|r| r) {
                Ok(mut spare) => {
                    spare.clear();
                    self.spare = Some(spare);
                }
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        if self.broken {
            return Err(io::Error::other("an earlier write to this upload failed"));
        }
        Ok(())
    }

    /// Hands the gathered bytes to the writer (after the previous block is written).
    async fn launch(&mut self) -> io::Result<()> {
        self.settle().await?;
        let Some(block) = self.buf.take().filter(|b| !b.is_empty()) else {
            return Ok(());
        };
        let file = self.file()?;
        self.buf = self.spare.take();
        let span = (self.written, block.len() as u64);
        self.written += span.1;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            (&*file).write_all(&block)?;
            writeback::stream(&file, span);
            Ok(block)
        }));
        Ok(())
    }

    /// Accepts `data`: hashed now, written in blocks in the background.
    pub async fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("an earlier write to this upload failed"));
        }
        self.hasher.update(data);
        self.len += data.len() as u64;
        let mut data = data;
        while !data.is_empty() {
            let buf = self.buf.get_or_insert_with(Block::new);
            let n = buf.room().min(data.len());
            buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if buf.room() == 0 {
                self.launch().await?;
            }
        }
        Ok(())
    }

    /// Writes everything accepted and waits until it is in the file, then releases the
    /// buffers and closes the file: an idle session holds no memory and no descriptor.
    pub async fn flush(&mut self) -> io::Result<()> {
        let res = async {
            self.launch().await?;
            self.settle().await
        }
        .await;
        self.buf = None;
        self.spare = None;
        if self.pending.is_none() {
            self.file = None;
        }
        res
    }

    /// Verifies the content against `expected` (rehashing the file unless the running sha256
    /// covers exactly what it holds) and fsyncs it unless the blob is already published. On a
    /// digest mismatch the file is removed. Blocking; call `flush` first. Takes no lock: the
    /// caller publishes the result under the digest's lock.
    pub fn verify(self, store: &FsStore, expected: &Digest) -> Result<Verified, CommitError> {
        if self.pending.is_some() || self.buf.as_ref().is_some_and(|b| !b.is_empty()) || self.broken
        {
            return Err(io::Error::other("upload committed with writes outstanding").into());
        }
        drop(self.file);
        // The file must hold exactly what was hashed; anything else is rehashed from disk.
        let on_disk = fs::metadata(&self.path)?.len();
        let (actual, size) = if expected.algorithm() == Algorithm::Sha256 && on_disk == self.len {
            (self.hasher.finish(), on_disk)
        } else {
            let mut h = Hasher::new(expected.algorithm());
            let n = hash_reader(File::open(&self.path)?, &mut h, &mut |_| {})?;
            (h.finish(), n)
        };
        if &actual != expected {
            let _ = fs::remove_file(&self.path);
            return Err(CommitError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        // A published blob makes this copy redundant: no need to sync it.
        let synced = !store.blob_path(expected).exists();
        if synced {
            File::open(&self.path)?.sync_all()?;
        }
        Ok(Verified {
            path: self.path,
            digest: expected.clone(),
            size,
            synced,
        })
    }
}

impl Verified {
    /// The verified size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Publishes the verified file as its blob (call under the digest's lock). `recorded`
    /// says the blob has a metadata row, so a file already in place was verified and made
    /// durable before that row committed: this copy is dropped. Without a row, a file in place
    /// is an orphan (a crash between rename and commit) that nothing verified: this verified
    /// copy replaces it (rename is atomic). Returns the size.
    pub fn publish(self, store: &FsStore, recorded: bool) -> io::Result<u64> {
        if recorded && store.blob_path(&self.digest).exists() {
            fs::remove_file(&self.path)?;
        } else {
            // `verify` skips the sync when a file was in place; this copy is published now.
            if !self.synced {
                File::open(&self.path)?.sync_all()?;
            }
            store.publish(&self.path, &self.digest)?;
        }
        Ok(self.size)
    }
}
