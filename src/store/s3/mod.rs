//! Blob objects in an S3-compatible bucket (AWS S3, Ceph RGW, MinIO, R2) through `object_store`.
//!
//! ```text
//! <prefix>/
//! ├── blobs/<algorithm>/<hex>     one object per blob, named by its digest (as on disk)
//! └── uploads/<id>/
//!     ├── session                 made with the session; holds its multipart upload id
//!     ├── tail.<gen>              bytes after the parts, one generation per request
//!     └── data                    the multipart upload's target, once completed
//! ```
//!
//! Every S3 call runs on the store's own small multi-thread tokio runtime: callers are actix's
//! current-thread runtimes and tokio's blocking pool. Blocking methods hand their future to it
//! and wait on a channel; async ones await its join handle, so they work from any runtime.
//! Uploads are in `upload.rs`.

mod copy;
mod direct;
mod upload;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload};

use super::{BlobBody, Listed};
use crate::config::StorageConfig;
use crate::digest::{Digest, Hasher};

pub use direct::{S3Direct, S3DirectVerified};
pub use upload::{S3Checkpoint, S3Upload, S3Verified};

/// Chunks of a streamed object kept between the runtime and a blocking reader.
const CHANNEL_DEPTH: usize = 8;

/// The bucket store; cheap to clone (one client and runtime shared by the clones).
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    s3: AmazonS3,
    rt: Runtime,
    bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    prefix: String,
    endpoint: String,
    part_size: usize,
    /// Blob GETs are answered with a presigned URL (`[storage] redirect`).
    redirect: bool,
    redirect_expiry: Duration,
    /// Objects up to this size are copied with one CopyObject, larger ones in parts of
    /// `copy_part` (`copy.rs`).
    single_copy_max: u64,
    copy_part: u64,
    /// For the requests `object_store` has no call for (UploadPartCopy).
    http: reqwest::Client,
}

/// The store's runtime, shut down without blocking when the last clone is dropped (which may
/// happen on an async thread, where dropping a runtime normally panics).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime lives until drop").handle()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("S3Store").field(&self.describe()).finish()
    }
}

/// Maps an object store error to `io`, keeping "not found" recognisable.
pub(crate) fn io_err(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn system_time(t: &object_store::ObjectMeta) -> SystemTime {
    let lm = &t.last_modified;
    let secs = lm.timestamp();
    let nanos = lm.timestamp_subsec_nanos();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

impl S3Store {
    /// `AmazonS3Builder::from_env()` with the config's non-empty keys on top. A custom
    /// endpoint means path-style addressing unless `path_style = false`; an `http://` one
    /// allows plain HTTP. Fails clearly when the bucket cannot be listed.
    pub fn open(cfg: &StorageConfig) -> io::Result<S3Store> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
        if !cfg.region.is_empty() {
            b = b.with_region(&cfg.region);
        }
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(&cfg.endpoint);
        }
        if !cfg.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&cfg.access_key_id)
                .with_secret_access_key(&cfg.secret_access_key);
        }
        let endpoint = b
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_default();
        let path_style = cfg.path_style.unwrap_or(!endpoint.is_empty());
        b = b.with_virtual_hosted_style_request(!path_style);
        if endpoint.starts_with("http://") {
            b = b.with_allow_http(true);
        }
        // A part of `part_size` must fit in one request's timeout on a slow link.
        b = b.with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "300s");
        let s3 = b.build().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("S3 configuration: {e}"),
            )
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kura-s3")
            .enable_all()
            .build()?;
        let store = S3Store {
            inner: Arc::new(Inner {
                s3,
                rt: Runtime(Some(rt)),
                bucket: cfg.bucket.clone(),
                prefix: cfg.prefix.trim_matches('/').to_string(),
                endpoint: if endpoint.is_empty() {
                    "AWS".to_string()
                } else {
                    endpoint
                },
                part_size: usize::try_from(cfg.part_size).map_err(io::Error::other)?,
                redirect: cfg.redirect,
                redirect_expiry: cfg.redirect_expiry,
                single_copy_max: copy::SINGLE_COPY_MAX,
                copy_part: copy::COPY_PART,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(600))
                    .build()
                    .map_err(io::Error::other)?,
            }),
        };
        let s3 = store.s3();
        let root = store.key("");
        store
            .run(async move {
                match s3.list(Some(&root)).next().await {
                    Some(Err(e)) => Err(io_err(e)),
                    _ => Ok(()),
                }
            })
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("bucket {} is not reachable: {e}", store.describe()),
                )
            })?;
        Ok(store)
    }

    /// `s3://bucket/prefix (endpoint)`.
    pub fn describe(&self) -> String {
        let i = &self.inner;
        format!("s3://{}/{} ({})", i.bucket, i.prefix, i.endpoint)
    }

    /// Whether blob GETs are redirected to presigned URLs.
    pub fn redirects(&self) -> bool {
        self.inner.redirect
    }

    /// Copies larger than `single_max` bytes go in parts of `part` bytes (S3 allows 5 GiB and
    /// at least 5 MiB); for tests of the multipart copy with little data. Call right after
    /// `open`, before the store is cloned.
    #[doc(hidden)]
    pub fn with_copy_limits(mut self, single_max: u64, part: u64) -> S3Store {
        let inner = Arc::get_mut(&mut self.inner).expect("an unshared store");
        inner.single_copy_max = single_max;
        inner.copy_part = part;
        self
    }

    /// Bytes per multipart part (and per ranged read).
    pub fn part_size(&self) -> usize {
        self.inner.part_size
    }

    pub(crate) fn s3(&self) -> AmazonS3 {
        self.inner.s3.clone()
    }

    /// The key `<prefix>/<rest>` (`rest` empty: the prefix itself).
    pub(crate) fn key(&self, rest: &str) -> Path {
        match (self.inner.prefix.is_empty(), rest.is_empty()) {
            (true, _) => Path::from(rest),
            (false, true) => Path::from(self.inner.prefix.as_str()),
            (false, false) => Path::from(format!("{}/{rest}", self.inner.prefix)),
        }
    }

    pub(crate) fn blob_key(&self, d: &Digest) -> Path {
        self.key(&format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
    }

    pub(crate) fn upload_key(&self, id: &str, name: &str) -> Path {
        self.key(&format!("uploads/{id}/{name}"))
    }

    /// Runs `f` on the store's runtime and waits for it (blocking).
    pub(crate) fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: Future<Output = io::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.rt.handle().spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| io::Error::other("the S3 runtime stopped"))?
    }

    /// Runs `f` on the store's runtime; awaitable from any runtime.
    pub(crate) async fn spawn<T, F>(&self, f: F) -> io::Result<T>
    where
        F: Future<Output = io::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.inner
            .rt
            .handle()
            .spawn(f)
            .await
            .map_err(io::Error::other)?
    }

    /// Starts `f` on the store's runtime without waiting for it.
    pub(crate) fn detach<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.rt.handle().spawn(f);
    }

    /// The size of blob `d`, if present.
    pub fn stat(&self, d: &Digest) -> io::Result<Option<u64>> {
        let (s3, key) = (self.s3(), self.blob_key(d));
        self.run(async move {
            match s3.head(&key).await {
                Ok(m) => Ok(Some(m.size)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(io_err(e)),
            }
        })
    }

    /// Reads a whole (small) blob such as a manifest.
    pub fn read_blob(&self, d: &Digest) -> io::Result<Option<Vec<u8>>> {
        let (s3, key) = (self.s3(), self.blob_key(d));
        self.run(async move { get_all(&s3, &key).await })
            .map(|b| b.map(|b| b.to_vec()))
    }

    /// Stores `data`, already known to have digest `d`. `recorded` says the blob has a
    /// metadata row, so an object in place was verified before it: it is kept. Otherwise an
    /// object in place is an unverified orphan and is replaced (a PUT is atomic).
    pub fn put_verified(&self, d: &Digest, data: &[u8], recorded: bool) -> io::Result<()> {
        if recorded && self.stat(d)?.is_some() {
            return Ok(());
        }
        let (s3, key) = (self.s3(), self.blob_key(d));
        let payload = PutPayload::from(Bytes::copy_from_slice(data));
        self.run(async move { s3.put(&key, payload).await.map(|_| ()).map_err(io_err) })
    }

    /// Removes blob `d`, if present.
    pub fn remove_blob(&self, d: &Digest) -> io::Result<()> {
        self.remove_blobs(std::slice::from_ref(d))
    }

    /// Removes blobs `ds` (missing ones are no error), with batch deletes.
    pub fn remove_blobs(&self, ds: &[Digest]) -> io::Result<()> {
        let keys: Vec<Path> = ds.iter().map(|d| self.blob_key(d)).collect();
        let s3 = self.s3();
        self.run(async move { delete_keys(&s3, keys).await })
    }

    /// Calls `f` with every object under `blobs/`, named `<algorithm>:<hex>` after its key.
    pub fn list_blobs(&self, f: &mut dyn FnMut(Listed) -> io::Result<()>) -> io::Result<()> {
        let root = self.key("blobs");
        let strip = format!("{}/", root.as_ref());
        self.list_each(root, &mut |m| {
            let rest = m.location.as_ref().strip_prefix(&strip).unwrap_or_default();
            f(Listed {
                name: rest.replacen('/', ":", 1),
                size: m.size,
                modified: system_time(&m),
            })
        })
    }

    /// Calls `f` once per upload session found under `uploads/` (its objects' total size and
    /// latest modification). A session holds a `session` object from its start, so one whose
    /// bytes are all in multipart parts is listed too.
    pub fn list_uploads(&self, f: &mut dyn FnMut(Listed) -> io::Result<()>) -> io::Result<()> {
        let root = self.key("uploads");
        let strip = format!("{}/", root.as_ref());
        let mut current: Option<Listed> = None;
        self.list_each(root, &mut |m| {
            let rest = m.location.as_ref().strip_prefix(&strip).unwrap_or_default();
            let id = rest.split('/').next().unwrap_or_default();
            let modified = system_time(&m);
            match &mut current {
                Some(c) if c.name == id => {
                    c.size += m.size;
                    c.modified = c.modified.max(modified);
                    return Ok(());
                }
                _ => {}
            }
            // Keys come sorted: a new id means the previous session is complete.
            let done = current.replace(Listed {
                name: id.to_string(),
                size: m.size,
                modified,
            });
            match done {
                Some(c) => f(c),
                None => Ok(()),
            }
        })?;
        match current {
            Some(c) => f(c),
            None => Ok(()),
        }
    }

    /// Lists every object under `root` on the runtime, calling `f` on this thread.
    fn list_each(
        &self,
        root: Path,
        f: &mut dyn FnMut(object_store::ObjectMeta) -> io::Result<()>,
    ) -> io::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        let s3 = self.s3();
        self.detach(async move {
            let mut list = s3.list(Some(&root));
            while let Some(item) = list.next().await {
                let stop = item.is_err();
                if tx.send(item.map_err(io_err)).is_err() || stop {
                    return;
                }
            }
        });
        for item in rx {
            f(item?)?;
        }
        Ok(())
    }

    /// Readiness: writes, reads back and deletes a tiny object.
    pub fn probe(&self) -> io::Result<()> {
        let s3 = self.s3();
        let key = self.key(&format!("probe/{}", uuid::Uuid::new_v4()));
        self.run(async move {
            s3.put(&key, PutPayload::from_static(b"kura"))
                .await
                .map_err(io_err)?;
            let back = s3.get(&key).await.map_err(io_err)?.bytes().await;
            s3.delete(&key).await.map_err(io_err)?;
            match back.map_err(io_err)? {
                b if b.as_ref() == b"kura" => Ok(()),
                _ => Err(io::Error::other("S3 probe object read back wrong")),
            }
        })
    }

    /// Streams blob `d` through a hasher of its algorithm (on this thread); `None` when
    /// missing. `progress` gets the byte count of each chunk.
    pub fn hash_blob(
        &self,
        d: &Digest,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Option<(Digest, u64)>> {
        self.hash_object(self.blob_key(d), Hasher::new(d.algorithm()), progress)
    }

    /// Hashes object `key` with `hasher` on this thread while the runtime downloads it.
    pub(crate) fn hash_object(
        &self,
        key: Path,
        mut hasher: Hasher,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Option<(Digest, u64)>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Option<Bytes>>>(CHANNEL_DEPTH);
        let s3 = self.s3();
        self.detach(async move {
            let mut body = match s3.get(&key).await {
                Ok(r) => r.into_stream(),
                Err(e) if is_not_found(&e) => {
                    let _ = tx.send(Ok(None));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(io_err(e)));
                    return;
                }
            };
            while let Some(chunk) = body.next().await {
                let stop = chunk.is_err();
                if tx.send(chunk.map(Some).map_err(io_err)).is_err() || stop {
                    return;
                }
            }
        });
        let mut size = 0u64;
        let mut chunks = 0u64;
        for item in rx {
            match item? {
                Some(c) => {
                    hasher.update(&c);
                    size += c.len() as u64;
                    chunks += 1;
                    progress(c.len() as u64);
                }
                None if chunks == 0 => return Ok(None),
                None => break,
            }
        }
        Ok(Some((hasher.finish(), size)))
    }

    /// Bytes `start..start+len` of blob `d`, read as ranged GETs of a part each with one read
    /// ahead; `None` when the blob is missing. Later errors end the stream with an error.
    pub async fn read_range(
        &self,
        d: &Digest,
        start: u64,
        len: u64,
    ) -> io::Result<Option<BlobBody>> {
        let (s3, key) = (self.s3(), self.blob_key(d));
        if len == 0 {
            let head = self.spawn(async move {
                match s3.head(&key).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_not_found(&e) => Ok(false),
                    Err(e) => Err(io_err(e)),
                }
            });
            return Ok(head.await?.then(|| futures_util::stream::empty().boxed()));
        }
        let step = self.inner.part_size as u64;
        let end = start.saturating_add(len);
        let handle = self.inner.rt.handle().clone();
        let ranges = (0..len.div_ceil(step)).map(move |i| {
            let a = start + i * step;
            a..(a + step).min(end)
        });
        let mut body = futures_util::stream::iter(ranges)
            .map(move |r| {
                let (s3, key) = (s3.clone(), key.clone());
                let task = handle.spawn(async move {
                    let want = r.end - r.start;
                    let got = s3.get_range(&key, r).await?;
                    // A range past the object's end comes back short: an error, not a
                    // silently truncated body.
                    if got.len() as u64 != want {
                        return Err(object_store::Error::Generic {
                            store: "S3",
                            source: format!("ranged read got {} of {want} bytes", got.len()).into(),
                        });
                    }
                    Ok(got)
                });
                async move {
                    match task.await {
                        Ok(res) => res,
                        Err(e) => Err(object_store::Error::Generic {
                            store: "S3",
                            source: Box::new(e),
                        }),
                    }
                }
            })
            .buffered(2);
        match body.next().await {
            None => Ok(Some(futures_util::stream::empty().boxed())),
            Some(Err(e)) if is_not_found(&e) => Ok(None),
            Some(Err(e)) => Err(io_err(e)),
            Some(Ok(first)) => Ok(Some(
                futures_util::stream::once(async move { Ok(first) })
                    .chain(body.map_err(io_err))
                    .boxed(),
            )),
        }
    }

    /// A presigned GET URL of blob `d`, valid for `redirect_expiry`; it carries no credential.
    pub async fn presign_get(&self, d: &Digest) -> io::Result<String> {
        let (s3, key) = (self.s3(), self.blob_key(d));
        let expiry = self.inner.redirect_expiry;
        self.spawn(async move {
            s3.signed_url(Method::GET, &key, expiry)
                .await
                .map(|u| u.to_string())
                .map_err(io_err)
        })
        .await
    }
}

/// The whole object `key`, or `None` when missing.
pub(crate) async fn get_all(s3: &AmazonS3, key: &Path) -> io::Result<Option<Bytes>> {
    match s3.get(key).await {
        Ok(r) => r.bytes().await.map(Some).map_err(io_err),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

/// Deletes `keys` in batches; missing keys are no error.
pub(crate) async fn delete_keys(s3: &AmazonS3, keys: Vec<Path>) -> io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let input = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
    let mut out = s3.delete_stream(input);
    while let Some(r) = out.next().await {
        match r {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// Every key under `root`.
pub(crate) async fn list_keys(s3: &AmazonS3, root: &Path) -> io::Result<Vec<Path>> {
    s3.list(Some(root))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(io_err)
}
