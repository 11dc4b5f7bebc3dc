//! Blob storage: the small boundary the registry, the collector and fsck use, over two drivers.
//!
//! - `fs`: flat digest-named files under the data directory (the default).
//! - `s3`: objects in an S3-compatible bucket (AWS, Ceph RGW, MinIO, R2) via `object_store`.
//!
//! Whatever the driver, a blob is content-addressed (`blobs/<algorithm>/<hex>`), written only
//! after its digest was verified, and becomes visible to clients only through the metadata
//! commit that records it; an upload session's bytes live under `uploads/<id>` until then.
//! Every driver passes the same suite (`tests/store_drivers.rs`).

mod fs;
pub mod migrate;
pub mod s3;

use std::io;
use std::path::{Path, PathBuf};

use crate::config::{StorageConfig, StorageKind};
use crate::digest::Digest;

pub use fs::{FsStore, UploadFile, create_dir_durable, sync_dir, writeback};
pub use s3::{S3Store, S3Upload};

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

impl UploadState {
    /// True for the state of a filesystem upload or an object-store one with no bytes sent.
    pub fn is_empty(&self) -> bool {
        *self == UploadState::default()
    }
}

/// Why committing an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("upload content has digest {actual}, not the {expected} given")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The blob store of a registry: one driver, chosen by `[storage] kind`. Cheap to clone.
#[derive(Debug, Clone)]
pub enum BlobStore {
    Fs(FsStore),
    S3(S3Store),
}

/// The bytes of one upload session in progress, with a running hash of them.
pub enum Upload {
    Fs(UploadFile),
    S3(S3Upload),
    /// A one-request push of a known digest, streamed to its blob key.
    S3Direct(s3::S3Direct),
}

/// The state of an upload before a request appended to it.
pub enum Checkpoint {
    Fs(fs::Checkpoint),
    S3(s3::S3Checkpoint),
    /// A one-request push is discarded, not rolled back.
    Direct,
}

/// An upload whose content was checked against its digest, ready to be published under the
/// digest's lock.
pub enum Verified {
    Fs(fs::Verified),
    S3(s3::S3Verified),
    S3Direct(s3::S3DirectVerified),
}

/// A small verified blob written ahead of the digest's lock (`stage_verified`).
pub enum Staged {
    Fs(PathBuf),
}

impl BlobStore {
    /// Opens the store `cfg` names; a filesystem store lives under `root`.
    pub fn open(root: &Path, cfg: &StorageConfig) -> io::Result<BlobStore> {
        match cfg.kind {
            StorageKind::Filesystem => Self::filesystem(root),
            StorageKind::S3 => Ok(BlobStore::S3(S3Store::open(cfg)?)),
        }
    }

    /// Opens (creating) the filesystem store under `root`.
    pub fn filesystem(root: &Path) -> io::Result<BlobStore> {
        Ok(BlobStore::Fs(FsStore::open(root)?))
    }

    /// The filesystem driver, when it is the one in use (for tools and tests that work on
    /// the files themselves).
    pub fn fs(&self) -> Option<&FsStore> {
        match self {
            BlobStore::Fs(s) => Some(s),
            BlobStore::S3(_) => None,
        }
    }

    /// Where blobs are, for logs and `kura config check`.
    pub fn describe(&self) -> String {
        match self {
            BlobStore::Fs(s) => format!("filesystem {}", s.root().display()),
            BlobStore::S3(s) => s.describe(),
        }
    }

    /// The size of blob `digest`, if it is stored. Blocking.
    pub fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match self {
            BlobStore::Fs(s) => s.stat(digest),
            BlobStore::S3(s) => s.stat(digest),
        }
    }

    /// Reads a whole (small) blob such as a manifest. Blocking.
    pub fn read_blob(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        match self {
            BlobStore::Fs(s) => s.read_blob(digest),
            BlobStore::S3(s) => s.read_blob(digest),
        }
    }

    /// Streams `len` bytes of blob `digest` from `start`; `None` when it is not stored.
    pub async fn read_range(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> io::Result<Option<BlobBody>> {
        match self {
            BlobStore::Fs(s) => s.read_range(digest, start, len),
            BlobStore::S3(s) => s.read_range(digest, start, len).await,
        }
    }

    /// A URL the client may fetch blob `digest` from directly (a presigned object URL), when
    /// the driver is configured to redirect; `None` means serve the bytes.
    pub async fn redirect_url(&self, digest: &Digest) -> io::Result<Option<String>> {
        match self {
            BlobStore::Fs(_) => Ok(None),
            BlobStore::S3(s) if s.redirects() => s.presign_get(digest).await.map(Some),
            BlobStore::S3(_) => Ok(None),
        }
    }

    /// Stores `data`, already known to have `digest`, durably. `recorded` as in
    /// `publish_staged`. Blocking.
    pub fn put_verified(&self, digest: &Digest, data: &[u8], recorded: bool) -> io::Result<()> {
        let staged = self.stage_verified(digest, data)?;
        self.publish_staged(digest, staged, data, recorded)
    }

    /// First half of `put_verified`, taking no lock: writes `data` durably aside, unless the
    /// blob is already in place (`None`; whether that can be trusted is decided under the
    /// lock, by `publish_staged`). Nothing goes to the blob's own key here: a writer holds
    /// the digest's lock from placing the blob to committing its row, or the collector may
    /// delete it in between. An object store has no aside (a PUT is atomic): `None`, and the
    /// PUT happens in `publish_staged`. Blocking.
    pub fn stage_verified(&self, digest: &Digest, data: &[u8]) -> io::Result<Option<Staged>> {
        match self {
            BlobStore::Fs(s) => Ok(s.stage_verified(digest, data)?.map(Staged::Fs)),
            BlobStore::S3(_) => Ok(None),
        }
    }

    /// Second half of `put_verified`, under the digest's lock. `recorded` says the blob has a
    /// metadata row, so what is in place was verified before that row committed. Blocking.
    pub fn publish_staged(
        &self,
        digest: &Digest,
        staged: Option<Staged>,
        data: &[u8],
        recorded: bool,
    ) -> io::Result<()> {
        match self {
            BlobStore::Fs(s) => {
                let path = staged.map(|Staged::Fs(p)| p);
                s.publish_staged(digest, path, data, recorded)
            }
            BlobStore::S3(s) => s.put_verified(digest, data, recorded),
        }
    }

    /// Starts the bytes of a new upload session. Blocking.
    pub fn create_upload(&self, id: &str) -> io::Result<Upload> {
        match self {
            BlobStore::Fs(s) => s.create_upload(id).map(Upload::Fs),
            BlobStore::S3(s) => s.create_upload(id).map(Upload::S3),
        }
    }

    /// Starts the bytes of a one-request push of blob `digest` (`POST ?digest=`): on an object
    /// store they stream to the blob's own key, completed only once verified (no session
    /// object, no copy); on the filesystem this is `create_upload`. Blocking.
    pub fn create_upload_for(&self, id: &str, digest: &Digest) -> io::Result<Upload> {
        match self {
            BlobStore::Fs(s) => s.create_upload(id).map(Upload::Fs),
            BlobStore::S3(s) => Ok(Upload::S3Direct(s.create_direct(digest))),
        }
    }

    /// Reloads upload session `id` after a restart from what its row recorded (`state`, and
    /// `len` bytes acknowledged); `None` when its bytes are gone. Blocking.
    pub fn resume_upload(
        &self,
        id: &str,
        state: &UploadState,
        len: u64,
    ) -> io::Result<Option<Upload>> {
        match self {
            BlobStore::Fs(s) => Ok(s.resume_upload(id)?.map(Upload::Fs)),
            BlobStore::S3(s) => Ok(s.resume_upload(id, state, len)?.map(Upload::S3)),
        }
    }

    /// Removes everything upload session `id` stored (`state`: what its row or its in-memory
    /// upload knows of it). Blocking.
    pub fn remove_upload(&self, id: &str, state: Option<&UploadState>) -> io::Result<()> {
        match self {
            BlobStore::Fs(s) => s.remove_upload(id),
            BlobStore::S3(s) => s.remove_upload(id, state),
        }
    }

    /// Removes blob `digest`, if stored. Blocking.
    pub fn remove_blob(&self, digest: &Digest) -> io::Result<()> {
        self.remove_blobs(std::slice::from_ref(digest))
    }

    /// Removes the given blobs (in batches where the driver can). Blocking.
    pub fn remove_blobs(&self, digests: &[Digest]) -> io::Result<()> {
        match self {
            BlobStore::Fs(s) => s.remove_blobs(digests),
            BlobStore::S3(s) => s.remove_blobs(digests),
        }
    }

    /// Calls `f` with every blob object stored (name `<algorithm>:<hex>`). Blocking.
    pub fn list_blobs(&self, f: &mut dyn FnMut(Listed) -> io::Result<()>) -> io::Result<()> {
        match self {
            BlobStore::Fs(s) => s.list_blobs(f),
            BlobStore::S3(s) => s.list_blobs(f),
        }
    }

    /// Calls `f` with every upload id that has bytes stored. Blocking.
    pub fn list_uploads(&self, f: &mut dyn FnMut(Listed) -> io::Result<()>) -> io::Result<()> {
        match self {
            BlobStore::Fs(s) => s.list_uploads(f),
            BlobStore::S3(s) => s.list_uploads(f),
        }
    }

    /// Writes and removes a small object: the store accepts writes (readiness). Blocking.
    pub fn probe(&self) -> io::Result<()> {
        match self {
            BlobStore::Fs(s) => s.probe(),
            BlobStore::S3(s) => s.probe(),
        }
    }

    /// Rehashes blob `digest` with its algorithm: the digest and size of what is stored, or
    /// `None` when it is missing. `progress` is told of the bytes read. Blocking.
    pub fn hash_blob(
        &self,
        digest: &Digest,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Option<(Digest, u64)>> {
        match self {
            BlobStore::Fs(s) => s.hash_blob(digest, progress),
            BlobStore::S3(s) => s.hash_blob(digest, progress),
        }
    }
}

impl Upload {
    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        match self {
            Upload::Fs(u) => u.len(),
            Upload::S3(u) => u.len(),
            Upload::S3Direct(u) => u.len(),
        }
    }

    /// True when nothing was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while the upload holds a descriptor or buffers (only during a request).
    pub fn is_open(&self) -> bool {
        match self {
            Upload::Fs(u) => u.is_open(),
            Upload::S3(u) => u.is_open(),
            Upload::S3Direct(u) => u.is_open(),
        }
    }

    /// What the session's row must record after `flush` to resume after a restart.
    pub fn state(&self) -> UploadState {
        match self {
            Upload::Fs(_) => UploadState::default(),
            Upload::S3(u) => u.state(),
            Upload::S3Direct(_) => UploadState::default(),
        }
    }

    /// Removes what a push that will not be committed stored (upload `id`). Blocking.
    pub fn discard(self, store: &BlobStore, id: &str) -> io::Result<()> {
        match self {
            Upload::S3Direct(u) => u.discard(),
            other => store.remove_upload(id, Some(&other.state())),
        }
    }

    /// A point to roll back to if the request appending after it fails (after what a
    /// cut-off request left in flight; its failure is this call's).
    pub async fn checkpoint(&mut self) -> io::Result<Checkpoint> {
        Ok(match self {
            Upload::Fs(u) => Checkpoint::Fs(u.checkpoint().await?),
            Upload::S3(u) => Checkpoint::S3(u.checkpoint()),
            Upload::S3Direct(_) => Checkpoint::Direct,
        })
    }

    /// Accepts `data`: hashed now, stored in blocks in the background.
    pub async fn push(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Upload::Fs(u) => u.push(data).await,
            Upload::S3(u) => u.push(data).await,
            Upload::S3Direct(u) => u.push(data).await,
        }
    }

    /// Stores everything accepted (what a `202` acknowledges) and releases the buffers.
    pub async fn flush(&mut self) -> io::Result<()> {
        match self {
            Upload::Fs(u) => u.flush().await,
            Upload::S3(u) => u.flush().await,
            Upload::S3Direct(u) => u.flush().await,
        }
    }

    /// Undoes everything accepted since `cp`.
    pub async fn rollback(&mut self, cp: Checkpoint) -> io::Result<()> {
        match (self, cp) {
            (Upload::Fs(u), Checkpoint::Fs(cp)) => u.rollback(cp).await,
            (Upload::S3(u), Checkpoint::S3(cp)) => u.rollback(cp).await,
            (Upload::S3Direct(u), _) => u.rollback().await,
            _ => Err(io::Error::other("checkpoint of another driver")),
        }
    }

    /// Verifies the content against `expected` and makes it durable, taking no lock; on a
    /// mismatch the upload's bytes are removed. Blocking; call `flush` first.
    pub fn verify(self, store: &BlobStore, expected: &Digest) -> Result<Verified, CommitError> {
        match (self, store) {
            (Upload::Fs(u), BlobStore::Fs(s)) => u.verify(s, expected).map(Verified::Fs),
            (Upload::S3(u), BlobStore::S3(s)) => u.verify(s, expected).map(Verified::S3),
            (Upload::S3Direct(u), BlobStore::S3(_)) => u.verify(expected).map(Verified::S3Direct),
            _ => Err(io::Error::other("upload of another driver").into()),
        }
    }
}

impl Verified {
    /// The verified size.
    pub fn size(&self) -> u64 {
        match self {
            Verified::Fs(v) => v.size(),
            Verified::S3(v) => v.size(),
            Verified::S3Direct(v) => v.size(),
        }
    }

    /// Publishes the verified content as its blob (under the digest's lock); `recorded` as in
    /// `BlobStore::publish_staged`. Returns the size. Blocking.
    pub fn publish(self, store: &BlobStore, recorded: bool) -> io::Result<u64> {
        match (self, store) {
            (Verified::Fs(v), BlobStore::Fs(s)) => v.publish(s, recorded),
            (Verified::S3(v), BlobStore::S3(s)) => v.publish(s, recorded),
            (Verified::S3Direct(v), BlobStore::S3(s)) => v.publish(s, recorded),
            _ => Err(io::Error::other("upload of another driver")),
        }
    }
}
