//! The sink that records an import in a kura store, through the registry's own rules:
//!
//! - a blob is verified as it comes in: on the filesystem driver, hard-linked into
//!   `uploads/import-<uuid>` (same filesystem) and hashed there, so what is hashed is the
//!   inode that becomes the blob; otherwise (another filesystem, an object store, `--copy`)
//!   streamed through `Registry::put_blob`, an `Upload` hashing it like a push. It is placed
//!   at its key and its row committed under the digest's lock, as a push does;
//! - a manifest goes through `Registry::put_manifest` (no event context: no webhook or
//!   replication event), which counts its references and records its referrer entry;
//! - a tag is set in a transaction that re-checks the revision it names.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;

use super::engine::{BlobState, Imported, Sink};
use super::layout::BlobSource;
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::meta::{blobs, manifests, repos, tags};
use crate::names::{Reference, RepoName};
use crate::registry::Registry;
use crate::store::{BlobBody, FsStore, S3Store, sync_dir};

/// The name prefix of a blob being hard-linked in, under `uploads/`.
const LEFTOVER: &str = "import-";

/// Bytes read at once when copying a blob.
const CHUNK: usize = 1024 * 1024;

/// Records into `registry`; `copy` refuses hard links.
pub(super) struct Apply {
    pub registry: Registry,
    pub copy: bool,
}

impl Apply {
    /// Removes the `uploads/import-*` links an interrupted import left (the store is held
    /// alone, so any there are not being written). Blocking.
    pub fn sweep_leftovers(&self) -> Result<u64> {
        let Some(fs) = self.registry.store().fs() else {
            return Ok(0);
        };
        let mut removed = 0;
        for e in std::fs::read_dir(fs.root().join("uploads"))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(LEFTOVER) {
                std::fs::remove_file(e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Registry) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let r = self.registry.clone();
        tokio::task::spawn_blocking(move || f(&r))
            .await
            .map_err(|e| Error::internal("blocking task", e))?
    }

    /// Streams `src` through `put_blob` (verified by the upload).
    async fn copy_in(&self, repo: &str, d: &Digest, src: &BlobSource) -> Result<Imported> {
        let repo = RepoName::parse(repo)?;
        let body = match src {
            BlobSource::File(path) => file_stream(std::fs::File::open(path)?),
            BlobSource::Object(store, key) => object_stream(store, key.clone()),
        };
        match self.registry.put_blob(&repo, d, body).await {
            Ok(()) => Ok(Imported::Done {
                size: self.registry.stored_blob_size(d)?.unwrap_or(0),
                hard_linked: false,
            }),
            Err(e) if e.code == Code::DigestInvalid => {
                let (actual, _) = super::hash_source(src, d.algorithm()).await?;
                Ok(Imported::Mismatch(actual))
            }
            Err(e) => Err(e),
        }
    }
}

/// The bytes of `file`, read in `CHUNK`s on the blocking pool.
fn file_stream(file: std::fs::File) -> BlobBody {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, io::Error>((buf, file))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((buf, _)) if buf.is_empty() => None,
            Ok((buf, file)) => Some((Ok(Bytes::from(buf)), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// The bytes of object `key` of `store`, fetched on the store's runtime.
fn object_stream(store: &S3Store, key: object_store::path::Path) -> BlobBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    let s3 = store.s3();
    store.detach(async move {
        use object_store::ObjectStoreExt;
        match s3.get(&key).await {
            Ok(r) => {
                let mut body = r.into_stream();
                while let Some(chunk) = body.next().await {
                    let stop = chunk.is_err();
                    let chunk = chunk.map_err(crate::store::s3::io_err);
                    if tx.send(chunk).await.is_err() || stop {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(crate::store::s3::io_err(e))).await;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
        .boxed()
}

impl Sink for Apply {
    fn blob_state(&self, repo: &str, d: &Digest) -> Result<BlobState> {
        let d = d.to_string();
        self.registry.meta().read(|t| {
            if blobs::get(t, &d)?.is_none() {
                Ok(BlobState::Absent)
            } else if blobs::is_linked(t, repo, &d)? {
                Ok(BlobState::Linked)
            } else {
                Ok(BlobState::Recorded)
            }
        })
    }

    async fn link_recorded(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.registry.link_recorded(repo, &d.to_string()).await
    }

    async fn import_blob(&self, repo: &str, d: &Digest, src: &BlobSource) -> Result<Imported> {
        if !self.copy
            && self.registry.store().fs().is_some()
            && let BlobSource::File(path) = src
            && let Some(done) = {
                let (repo, d, src) = (repo.to_string(), d.clone(), path.clone());
                self.blocking(move |r| hard_link_in(r, &repo, &d, &src))
                    .await?
            }
        {
            return Ok(done);
        }
        self.copy_in(repo, d, src).await
    }

    fn has_revision(&self, repo: &str, d: &Digest) -> Result<bool> {
        let d = d.to_string();
        self.registry
            .meta()
            .read(|t| Ok(manifests::get(t, repo, &d)?.is_some()))
    }

    async fn put_manifest(&self, repo: &RepoName, d: &Digest, body: Bytes) -> Result<()> {
        let reference = Reference::Digest(d.clone());
        self.registry
            .put_manifest(repo, &reference, None, body)
            .await
            .map(|_| ())
    }

    fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        self.registry.meta().read(|t| tags::get(t, repo, tag))
    }

    async fn set_tag(&self, repo: &str, tag: &str, d: &Digest) -> Result<()> {
        let (repo, tag, d) = (repo.to_string(), tag.to_string(), d.to_string());
        self.blocking(move |r| {
            let policies = r.policies();
            r.meta().write(|t| {
                if manifests::get(t, &repo, &d)?.is_none() {
                    return Err(Error::internal(
                        "import",
                        format!("tag {tag} of {repo}: revision {d} vanished"),
                    ));
                }
                crate::registry::set_tag(t, &policies.immutable, &repo, &tag, &d)
            })
        })
        .await
    }
}

/// Hard-links `src` into the store as blob `d` of `repo`, verifying it first; `None` when
/// it cannot be linked (another filesystem, linking not permitted, or `src` is a symbolic
/// link): copy it instead.
/// Blocking.
fn hard_link_in(r: &Registry, repo: &str, d: &Digest, src: &Path) -> Result<Option<Imported>> {
    let fs = r.store().fs().expect("the filesystem driver");
    // link(2) does not follow a symbolic link: the blob would be the link, not its content.
    if !std::fs::symlink_metadata(src)?.file_type().is_file() {
        return Ok(None);
    }
    let tmp = fs.upload_path(&format!("{LEFTOVER}{}", uuid::Uuid::new_v4()));
    if let Err(e) = std::fs::hard_link(src, &tmp) {
        return match e.kind() {
            io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied => Ok(None),
            _ => Err(e.into()),
        };
    }
    let out = verify_and_publish(r, fs, repo, d, &tmp);
    if !matches!(out, Ok(Imported::Done { .. })) {
        let _ = std::fs::remove_file(&tmp);
    }
    out.map(Some)
}

/// Hashes the linked file `tmp` (the inode that becomes the blob), makes it durable, then
/// under the digest's lock places it (unless a recorded copy is in place) and records it.
fn verify_and_publish(
    r: &Registry,
    fs: &FsStore,
    repo: &str,
    d: &Digest,
    tmp: &PathBuf,
) -> Result<Imported> {
    let (actual, size) = super::hash_file(tmp, d.algorithm())?;
    if &actual != d {
        return Ok(Imported::Mismatch(actual));
    }
    std::fs::File::open(tmp)?.sync_all()?;
    let ds = d.to_string();
    let lock = r.digest_locks().lock(&ds)?;
    let recorded = r.meta().read(|t| blobs::get(t, &ds))?.is_some();
    if recorded && fs.stat(d)?.is_some() {
        std::fs::remove_file(tmp)?;
    } else {
        let target = fs.blob_path(d);
        std::fs::rename(tmp, &target)?;
        sync_dir(target.parent().expect("blob path has a parent"))?;
    }
    let committed = r.meta().commit(|t| {
        blobs::touch(t, &ds, size)?;
        blobs::link(t, repo, &ds)?;
        repos::ensure(t, repo)
    })?;
    drop(lock);
    committed.durable()?;
    Ok(Imported::Done {
        size,
        hard_linked: true,
    })
}
