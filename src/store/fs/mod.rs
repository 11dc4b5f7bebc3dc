//! The filesystem driver: blob files, flat, content-addressed, never visible half-written.
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

mod block;
mod read_buf;
mod upload;
pub mod writeback;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use super::{BlobBody, Listed};
use crate::digest::{Algorithm, Digest, Hasher};

pub use upload::{Checkpoint, UploadFile, Verified};

/// The blob file store under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens the store at `root`, creating its directories durably.
    pub fn open(root: &Path) -> io::Result<FsStore> {
        for alg in Algorithm::ALL {
            create_dir_durable(&root.join("blobs").join(alg.as_str()))?;
        }
        create_dir_durable(&root.join("uploads"))?;
        Ok(FsStore {
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

/// Read size when streaming a blob.
const READ_CHUNK: u64 = 1024 * 1024;

/// Reads prepared ahead of the socket.
const READ_AHEAD: usize = 2;

impl FsStore {
    /// Streams `len` bytes of blob `digest` from `start`: positional reads of `READ_CHUNK` on
    /// the blocking pool, `READ_AHEAD` of them in flight while earlier chunks are sent.
    pub fn read_range(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> io::Result<Option<BlobBody>> {
        let Some(file) = self.open_blob(digest)? else {
            return Ok(None);
        };
        let file = Arc::new(file);
        let chunks = (0..len.div_ceil(READ_CHUNK)).map(move |i| {
            let pos = start + i * READ_CHUNK;
            let n = READ_CHUNK.min(start + len - pos) as usize;
            (pos, n)
        });
        let body = futures_util::stream::iter(chunks)
            .map(move |(pos, n)| {
                let f = file.clone();
                tokio::task::spawn_blocking(move || {
                    let mut buf = read_buf::take(n);
                    f.read_exact_at(&mut buf, pos)?;
                    Ok::<_, io::Error>(read_buf::into_bytes(buf))
                })
            })
            .buffered(READ_AHEAD)
            .map(|r| r.map_err(io::Error::other).and_then(|r| r));
        Ok(Some(body.boxed()))
    }

    /// Removes the files of `digests` (missing ones are skipped).
    pub fn remove_blobs(&self, digests: &[Digest]) -> io::Result<()> {
        digests.iter().try_for_each(|d| self.remove_blob(d))
    }

    /// Calls `f` with every file under `blobs/`, named `<algorithm>:<file name>`.
    pub fn list_blobs(&self, f: &mut dyn FnMut(Listed) -> io::Result<()>) -> io::Result<()> {
        for alg in Algorithm::ALL {
            let dir = self.root.join("blobs").join(alg.as_str());
            let name =
                |e: &fs::DirEntry| format!("{}:{}", alg.as_str(), e.file_name().to_string_lossy());
            list_dir(&dir, name, f)?;
        }
        Ok(())
    }

    /// Calls `f` with every file under `uploads/` (sessions' files and temp files).
    pub fn list_uploads(&self, f: &mut dyn FnMut(Listed) -> io::Result<()>) -> io::Result<()> {
        let name = |e: &fs::DirEntry| e.file_name().to_string_lossy().into_owned();
        list_dir(&self.root.join("uploads"), name, f)
    }

    /// Writes, syncs and removes a file in the data directory.
    pub fn probe(&self) -> io::Result<()> {
        let path = self.upload_path(&format!("readyz-{}", uuid::Uuid::new_v4()));
        let written = File::create(&path).and_then(|mut f| {
            f.write_all(b"ok")?;
            f.sync_all()
        });
        let _ = fs::remove_file(&path);
        written
    }

    /// Hashes blob `digest`'s file with its algorithm; `None` when it is missing. `progress`
    /// is told of each chunk read.
    pub fn hash_blob(
        &self,
        digest: &Digest,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Option<(Digest, u64)>> {
        let Some(file) = self.open_blob(digest)? else {
            return Ok(None);
        };
        let mut h = Hasher::new(digest.algorithm());
        let len = hash_reader(file, &mut h, progress)?;
        Ok(Some((h.finish(), len)))
    }
}

/// Feeds everything `r` holds to `hasher`, telling `progress` of each chunk; returns the length.
pub(super) fn hash_reader(
    mut r: impl Read,
    hasher: &mut Hasher,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        progress(n as u64);
    }
}

/// Calls `f` for each entry of `dir` (none when it is missing).
fn list_dir(
    dir: &Path,
    name: impl Fn(&fs::DirEntry) -> String,
    f: &mut dyn FnMut(Listed) -> io::Result<()>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(meta) = entry.metadata() else {
            continue; // removed meanwhile
        };
        f(Listed {
            name: name(&entry),
            size: meta.len(),
            modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        })?;
    }
    Ok(())
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

    fn uploads_empty(store: &FsStore) -> bool {
        fs::read_dir(store.root().join("uploads"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn a_staged_copy_of_a_blob_published_meanwhile_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
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
        let store = FsStore::open(dir.path()).unwrap();
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
        let store = FsStore::open(dir.path()).unwrap();
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
