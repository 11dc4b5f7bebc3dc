//! Blob transfers. Uploads skip blobs the repository has (`HEAD`), mount them from another
//! repository of the same registry when one is named, and otherwise send them in chunks,
//! resuming from the offset the registry reports after an interruption. Downloads stream into
//! a temporary file while hashing, resume with `Range`, and are renamed into place only once
//! their digest and size check out. No blob is ever held whole in memory: uploads read one
//! chunk at a time.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use reqwest::{Response, Url};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::api::{Patched, Repo, UploadStart};
use super::error::{Error, Result};
use super::image::Descriptor;
use super::progress::BlobBar;
use super::transport::backoff;
use crate::digest::{Digest, Hasher};
use crate::names::RepoName;

/// How blobs move.
#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Bytes per upload request; blobs no larger go in one request.
    pub chunk_size: u64,
    /// Retries of an interrupted transfer before giving up.
    pub retries: u32,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            chunk_size: 16 << 20,
            retries: 5,
        }
    }
}

/// Where a local blob's bytes are: a whole file, or a slice of one (a tar member).
#[derive(Debug, Clone)]
pub struct LocalBlob {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// Where the bytes of a blob to upload come from.
#[derive(Clone)]
pub enum BlobSource {
    Local(LocalBlob),
    /// Another repository (possibly on another registry): `kura copy`.
    Remote(Repo),
    /// Any other store that streams a blob from an offset (kura's own, for replication).
    Opener(Arc<dyn BlobOpener>),
}

/// A blob's bytes from `offset` on, as a stream.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Opens blobs as streams from an offset.
pub trait BlobOpener: Send + Sync {
    /// Streams blob `digest` from byte `offset` to its end.
    fn open(&self, digest: &Digest, offset: u64) -> BoxFuture<'static, Result<ByteStream>>;
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// The repository already had the blob.
    Exists,
    /// Mounted from this repository of the same registry.
    Mounted(RepoName),
    /// Sent; the offsets at which it resumed after interruptions.
    Sent { resumed_at: Vec<u64> },
}

/// Hashes bytes as they are read, in order, even when reading restarts earlier.
struct Verifier {
    hasher: Option<Hasher>,
    hashed: u64,
}

impl Verifier {
    fn feed(&mut self, pos: u64, data: &[u8]) {
        let Some(h) = self.hasher.as_mut() else {
            return;
        };
        let end = pos + data.len() as u64;
        if pos > self.hashed {
            // Bytes were skipped: the stream can no longer be verified here.
            self.hasher = None;
        } else if end > self.hashed {
            h.update(&data[(self.hashed - pos) as usize..]);
            self.hashed = end;
        }
    }

    /// Ok(true) when the bytes hash to `digest`, Ok(false) when they could not all be seen.
    fn check(&self, what: &str, digest: &Digest, size: u64) -> Result<bool> {
        match &self.hasher {
            Some(h) if self.hashed == size => {
                let actual = h.clone().finish();
                if &actual != digest {
                    return Err(Error::DigestMismatch {
                        what: what.to_string(),
                        expected: digest.to_string(),
                        actual: actual.to_string(),
                    });
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

enum Stream {
    File(tokio::io::Take<tokio::fs::File>),
    Remote {
        resp: Response,
        buf: Bytes,
        skip: u64,
    },
    Chunks {
        stream: ByteStream,
        buf: Bytes,
    },
}

/// A sequential reader over a blob source that can restart at any offset.
struct Reader<'a> {
    source: &'a BlobSource,
    digest: &'a Digest,
    size: u64,
    pos: u64,
    stream: Stream,
    verifier: Verifier,
    retries: u32,
}

impl<'a> Reader<'a> {
    async fn open(
        source: &'a BlobSource,
        digest: &'a Digest,
        size: u64,
        retries: u32,
    ) -> Result<Reader<'a>> {
        let stream = Self::stream_at(source, digest, size, 0).await?;
        Ok(Reader {
            source,
            digest,
            size,
            pos: 0,
            stream,
            verifier: Verifier {
                hasher: Some(Hasher::new(digest.algorithm())),
                hashed: 0,
            },
            retries,
        })
    }

    async fn stream_at(
        source: &BlobSource,
        digest: &Digest,
        size: u64,
        offset: u64,
    ) -> Result<Stream> {
        match source {
            BlobSource::Local(b) => {
                let ctx = || format!("reading {} of {}", digest, b.path.display());
                if b.len != size {
                    return Err(Error::Invalid(format!(
                        "{}: {} bytes, but its descriptor says {size}",
                        ctx(),
                        b.len
                    )));
                }
                let mut f = tokio::fs::File::open(&b.path)
                    .await
                    .map_err(|e| Error::io(ctx(), e))?;
                f.seek(SeekFrom::Start(b.offset + offset))
                    .await
                    .map_err(|e| Error::io(ctx(), e))?;
                Ok(Stream::File(f.take(b.len - offset)))
            }
            BlobSource::Remote(repo) => {
                let resp = repo.get_blob(digest, offset).await?;
                let skip = if resp.status() == 200 { offset } else { 0 };
                Ok(Stream::Remote {
                    resp,
                    buf: Bytes::new(),
                    skip,
                })
            }
            BlobSource::Opener(o) => Ok(Stream::Chunks {
                stream: o.open(digest, offset).await?,
                buf: Bytes::new(),
            }),
        }
    }

    /// Restarts reading at `offset`.
    async fn seek(&mut self, offset: u64) -> Result<()> {
        if offset != self.pos {
            self.stream = Self::stream_at(self.source, self.digest, self.size, offset).await?;
            self.pos = offset;
        }
        Ok(())
    }

    /// Reads exactly `len` bytes.
    async fn read(&mut self, len: u64) -> Result<Bytes> {
        let mut out = BytesMut::with_capacity(len as usize);
        let mut failures = 0;
        while (out.len() as u64) < len {
            let want = len as usize - out.len();
            match self.fill(&mut out, want).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Error::Invalid(format!(
                        "blob {} ended at byte {}, before its size {}",
                        self.digest,
                        self.pos + out.len() as u64,
                        self.size
                    )));
                }
                Err(e) if e.is_transient() && failures < self.retries => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                    let at = self.pos + out.len() as u64;
                    self.stream = Self::stream_at(self.source, self.digest, self.size, at).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let data = out.freeze();
        self.verifier.feed(self.pos, &data);
        self.pos += len;
        Ok(data)
    }

    /// Appends up to `want` bytes to `out`; false at the end of the source.
    async fn fill(&mut self, out: &mut BytesMut, want: usize) -> Result<bool> {
        match &mut self.stream {
            Stream::File(f) => {
                let start = out.len();
                out.resize(start + want, 0);
                let n = f
                    .read(&mut out[start..])
                    .await
                    .map_err(|e| Error::io(format!("reading {}", self.digest), e))?;
                out.truncate(start + n);
                Ok(n > 0)
            }
            Stream::Remote { resp, buf, skip } => {
                while buf.is_empty() || *skip > 0 {
                    if *skip > 0 && !buf.is_empty() {
                        let n = (*skip).min(buf.len() as u64) as usize;
                        let _ = buf.split_to(n);
                        *skip -= n as u64;
                        continue;
                    }
                    match resp
                        .chunk()
                        .await
                        .map_err(|e| Error::http(format!("reading blob {}", self.digest), e))?
                    {
                        Some(c) => *buf = c,
                        None => return Ok(false),
                    }
                }
                let n = want.min(buf.len());
                out.extend_from_slice(&buf.split_to(n));
                Ok(true)
            }
            Stream::Chunks { stream, buf } => {
                while buf.is_empty() {
                    match stream.next().await {
                        Some(c) => *buf = c?,
                        None => return Ok(false),
                    }
                }
                let n = want.min(buf.len());
                out.extend_from_slice(&buf.split_to(n));
                Ok(true)
            }
        }
    }
}

async fn new_session(repo: &Repo) -> Result<Url> {
    match repo.start_upload(None).await? {
        UploadStart::Session(u) => Ok(u),
        UploadStart::Mounted => Err(Error::Invalid(format!(
            "{}: the registry answered 201 to an upload without a digest",
            repo.display()
        ))),
    }
}

/// Uploads blob `desc` from `source` into `repo` unless it is there already or can be
/// mounted from one of `mount_from`.
pub async fn upload(
    repo: &Repo,
    desc: &Descriptor,
    source: &BlobSource,
    mount_from: &[RepoName],
    opts: &TransferOptions,
    bar: &mut BlobBar,
) -> Result<Uploaded> {
    let digest = desc.digest()?;
    let size = desc.size;
    if repo.blob_size(&digest).await?.is_some() {
        return Ok(Uploaded::Exists);
    }
    let mut session: Option<Url> = None;
    for from in mount_from.iter().filter(|f| **f != repo.name) {
        if let Some(s) = session.take() {
            repo.cancel_upload(&s).await;
        }
        match repo.start_upload(Some((&digest, from))).await? {
            UploadStart::Mounted => return Ok(Uploaded::Mounted(from.clone())),
            UploadStart::Session(u) => session = Some(u),
        }
    }
    let mut session = match session {
        Some(s) => s,
        None => new_session(repo).await?,
    };
    let mut reader = Reader::open(source, &digest, size, opts.retries).await?;
    let chunk_size = opts.chunk_size.max(1);
    let mut offset = 0u64;
    let mut failures = 0u32;
    let mut resumed_at = Vec::new();
    let mut interrupted: Option<Error> = None;
    loop {
        if let Some(err) = interrupted.take() {
            failures += 1;
            if failures > opts.retries {
                return Err(err);
            }
            let why = err.to_string();
            bar.retrying(&why);
            tokio::time::sleep(backoff(failures)).await;
            match repo.upload_status(&session).await {
                Ok(Some((next, held))) if held <= size => {
                    session = next;
                    offset = held;
                }
                Ok(_) => {
                    // The session is gone (perhaps closed by a PUT whose answer was lost).
                    if repo.blob_size(&digest).await?.is_some() {
                        bar.resumed(size, &why);
                        return Ok(Uploaded::Sent { resumed_at });
                    }
                    match new_session(repo).await {
                        Ok(s) => session = s,
                        Err(e) if e.is_transient() => {
                            interrupted = Some(e);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    offset = 0;
                }
                Err(e) if e.is_transient() => {
                    interrupted = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            resumed_at.push(offset);
            bar.resumed(offset, &why);
        }
        let remaining = size - offset;
        let last = remaining <= chunk_size;
        reader.seek(offset).await?;
        let data = reader.read(remaining.min(chunk_size)).await?;
        if last {
            if let Err(e) = reader.verifier.check("source blob", &digest, size) {
                repo.cancel_upload(&session).await;
                return Err(e);
            }
            match repo.finish_upload(&session, &digest, data).await {
                Ok(()) => {
                    bar.set_position(size);
                    return Ok(Uploaded::Sent { resumed_at });
                }
                Err(e) if e.is_transient() => interrupted = Some(e),
                Err(e) => return Err(e),
            }
        } else {
            match repo.patch(&session, offset, data).await {
                Ok(Patched::Accepted(next, held)) if held <= size => {
                    session = next;
                    offset = held;
                    failures = 0;
                    bar.set_position(offset);
                }
                Ok(Patched::OutOfSync(Some(held))) if held != offset && held <= size => {
                    offset = held;
                    resumed_at.push(offset);
                    bar.resumed(offset, "the registry holds a different offset");
                }
                Ok(_) => {
                    // No usable offset from the registry: start the blob over.
                    repo.cancel_upload(&session).await;
                    session = new_session(repo).await?;
                    offset = 0;
                    resumed_at.push(0);
                    bar.resumed(0, "the registry lost track of the upload");
                }
                Err(e) if e.is_transient() => interrupted = Some(e),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Downloads blob `desc` of `repo` to `dest`: streamed into a temporary file next to it,
/// hashed on the way, resumed with `Range` after an interruption, and renamed to `dest` only
/// when size and digest match.
pub async fn download(
    repo: &Repo,
    desc: &Descriptor,
    dest: &Path,
    opts: &TransferOptions,
    bar: &mut BlobBar,
) -> Result<u64> {
    let digest = desc.digest()?;
    let size = desc.size;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let ctx = || format!("writing {}", dest.display());
    let tmp = tempfile::Builder::new()
        .prefix(".kura-download-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(ctx(), e))?;
    let std_file = tmp.as_file().try_clone().map_err(|e| Error::io(ctx(), e))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut state = Download {
        hasher: Hasher::new(digest.algorithm()),
        got: 0,
    };
    let mut failures = 0;
    let mut resumes = 0u64;
    loop {
        match state.fetch(repo, &digest, size, &mut file, bar, dest).await {
            Ok(()) => break,
            Err(e) if e.is_transient() && failures < opts.retries => {
                failures += 1;
                resumes += 1;
                bar.resumed(state.got, &e.to_string());
                tokio::time::sleep(backoff(failures)).await;
            }
            Err(e) => return Err(e),
        }
    }
    if state.got != size {
        return Err(Error::Invalid(format!(
            "blob {digest}: received {} bytes, its descriptor says {size}",
            state.got
        )));
    }
    let actual = state.hasher.finish();
    if actual != digest {
        return Err(Error::DigestMismatch {
            what: format!("blob {digest} from {}", repo.display()),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    file.flush().await.map_err(|e| Error::io(ctx(), e))?;
    file.sync_all().await.map_err(|e| Error::io(ctx(), e))?;
    drop(file);
    super::layout::readable(tmp.path()).map_err(|e| Error::io(ctx(), e))?;
    tmp.persist(dest).map_err(|e| Error::io(ctx(), e.error))?;
    Ok(resumes)
}

struct Download {
    hasher: Hasher,
    got: u64,
}

impl Download {
    /// Fetches from `self.got` to the end, appending to `file`.
    async fn fetch(
        &mut self,
        repo: &Repo,
        digest: &Digest,
        size: u64,
        file: &mut tokio::fs::File,
        bar: &mut BlobBar,
        dest: &Path,
    ) -> Result<()> {
        let ctx = || format!("writing {}", dest.display());
        let mut resp = repo.get_blob(digest, self.got).await?;
        let ranged = resp.status() == 206
            && resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {}-", self.got)));
        if self.got > 0 && !ranged {
            // The registry sent the whole blob again: start over.
            drop(resp);
            file.set_len(0).await.map_err(|e| Error::io(ctx(), e))?;
            file.seek(SeekFrom::Start(0))
                .await
                .map_err(|e| Error::io(ctx(), e))?;
            self.hasher = Hasher::new(digest.algorithm());
            self.got = 0;
            bar.set_position(0);
            resp = repo.get_blob(digest, 0).await?;
        }
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Error::http(format!("downloading blob {digest}"), e))?
        {
            if self.got + chunk.len() as u64 > size {
                return Err(Error::Invalid(format!(
                    "blob {digest} is larger than its descriptor's {size} bytes"
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io(ctx(), e))?;
            self.hasher.update(&chunk);
            self.got += chunk.len() as u64;
            bar.advance(chunk.len() as u64);
        }
        Ok(())
    }
}

/// The JSON fields describing an upload's outcome, for progress events.
pub fn uploaded_fields(u: &Uploaded) -> (&'static str, serde_json::Value) {
    match u {
        Uploaded::Exists => ("exists", json!({})),
        Uploaded::Mounted(from) => ("mounted", json!({ "from": from.as_str() })),
        Uploaded::Sent { resumed_at } => ("uploaded", json!({ "resumed_at": resumed_at })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_hashes_each_byte_once_across_restarts() {
        let data = b"hello, resumable world";
        let digest = Digest::sha256_of(data);
        let mut v = Verifier {
            hasher: Some(Hasher::new(digest.algorithm())),
            hashed: 0,
        };
        v.feed(0, &data[..10]);
        v.feed(4, &data[4..15]); // restarted earlier: overlap not hashed twice
        v.feed(15, &data[15..]);
        assert!(v.check("x", &digest, data.len() as u64).unwrap());

        let mut gap = Verifier {
            hasher: Some(Hasher::new(digest.algorithm())),
            hashed: 0,
        };
        gap.feed(0, &data[..5]);
        gap.feed(10, &data[10..]);
        assert!(!gap.check("x", &digest, data.len() as u64).unwrap());

        let mut wrong = Verifier {
            hasher: Some(Hasher::new(digest.algorithm())),
            hashed: 0,
        };
        wrong.feed(0, b"hello, resumable World");
        assert!(wrong.check("x", &digest, data.len() as u64).is_err());
    }
}
