//! An upload session on S3: multipart parts while bytes stream in, a tail object between
//! requests, a verified copy under the digest at commit.
//!
//! Bytes are hashed as they arrive and gathered into a part of `part_size`; a full part is
//! sent (the multipart upload is created with the first) while the next one fills, so a
//! session holds at most two parts in memory while a request streams. At the end of a request
//! (`flush`) the bytes after the parts are written as a new tail object generation, so a
//! failed request never clobbers the tail the session's row still names; the next request
//! reads the tail back and continues. Generations replaced at one flush are deleted at the
//! next one (by then the registry recorded the newer generation); the rest of
//! `uploads/<id>/` goes at commit or cancel.
//!
//! Every S3 call runs on the store's runtime, as a task that finishes even if the request
//! awaiting it is dropped; the task's handle stays in the upload until its result is taken,
//! so whoever touches the upload next sees it.

use std::io;

use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::task::JoinHandle;

use super::{S3Store, delete_keys, get_all, io_err, list_keys};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::store::{CommitError, UploadState};

/// A part sent in the background: its ETag and its buffer, back for reuse.
type Sending = JoinHandle<io::Result<(String, Bytes)>>;

/// One upload session's bytes on S3, with a running sha256 of them.
pub struct S3Upload {
    store: S3Store,
    id: String,
    /// The sha256 of every byte so far; unknown after a restart.
    hasher: Option<Hasher>,
    /// Bytes accepted so far (parts, part in flight, tail, buffered).
    len: u64,
    multipart: Option<String>,
    /// The creation of the multipart upload, while it runs.
    creating: Option<JoinHandle<io::Result<String>>>,
    /// ETags of the parts sent, in order, and the bytes they hold.
    parts: Vec<String>,
    parts_len: u64,
    /// The part in flight and its length.
    sending: Option<(Sending, u64)>,
    /// The tail object the session's state names (`tail_len == 0`: none to read).
    tail_gen: u64,
    tail_len: u64,
    /// The highest tail generation this process started writing: a new one is always above
    /// it, so a write left running by a dropped flush never races the next.
    last_gen: u64,
    /// Bytes after the parts (and the part in flight): once `loaded`, the tail's bytes
    /// followed by the ones this request pushed.
    buf: Vec<u8>,
    loaded: bool,
    /// The buffer while `flush` writes it as a tail: back into `buf` if that flush was
    /// dropped before it finished (the request was cancelled), so no accepted byte is lost.
    unflushed: Option<Bytes>,
    /// Bytes were pushed since the last flush.
    dirty: bool,
    /// Tail generations replaced at an earlier flush, no longer named by the session's row.
    superseded: Vec<u64>,
    /// A part failed: the upload no longer matches its counters until rolled back.
    broken: bool,
}

/// The state of an upload before a request appended to it.
pub struct S3Checkpoint {
    len: u64,
    hasher: Option<Hasher>,
    parts: usize,
    parts_len: u64,
    tail_gen: u64,
    tail_len: u64,
}

/// Where a verified upload's bytes are, to be published under the digest's key.
enum Source {
    /// No bytes.
    Empty,
    /// All in tail object generation `gen` (no multipart upload was needed).
    Tail(u64),
    /// In the completed multipart upload's object `uploads/<id>/data`.
    Data,
}

/// An upload whose object was checked against its digest, ready to be published.
pub struct S3Verified {
    id: String,
    digest: Digest,
    size: u64,
    source: Source,
}

impl S3Store {
    /// Starts upload session `id`: writes its (empty) `session` object, so the session is
    /// listed and found again even before it holds a byte.
    pub fn create_upload(&self, id: &str) -> io::Result<S3Upload> {
        let (s3, key) = (self.s3(), self.upload_key(id, "session"));
        self.run(async move {
            s3.put(&key, PutPayload::new()).await.map_err(io_err)?;
            Ok(())
        })?;
        Ok(S3Upload::new(
            self.clone(),
            id,
            &UploadState::default(),
            0,
            true,
        ))
    }

    /// Reopens session `id` after a restart from the `state` and length its row recorded;
    /// `None` when the session's objects are gone. The hash state is unknown: the commit
    /// reads the object back.
    pub fn resume_upload(
        &self,
        id: &str,
        state: &UploadState,
        len: u64,
    ) -> io::Result<Option<S3Upload>> {
        if len != state.parts_len + state.tail_len
            || state.parts.is_empty() != (state.parts_len == 0)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("upload {id}: recorded state does not add up to {len} bytes"),
            ));
        }
        let s3 = self.s3();
        let session = self.upload_key(id, "session");
        let tail = (state.tail_len > 0).then(|| self.upload_key(id, &tail_name(state.tail_gen)));
        let found = self.run(async move {
            match s3.head(&session).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(io_err(e)),
            }
            match tail {
                Some(t) => Ok(Some(s3.head(&t).await.map_err(io_err)?.size)),
                None => Ok(Some(0)),
            }
        })?;
        match found {
            None => Ok(None),
            Some(n) if n != state.tail_len => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("upload {id}: tail holds {n} bytes, not {}", state.tail_len),
            )),
            Some(_) => Ok(Some(S3Upload::new(self.clone(), id, state, len, false))),
        }
    }

    /// Removes session `id`: aborts its multipart upload (the one `state` names and the one
    /// its `session` object names) and deletes everything under `uploads/<id>/`.
    pub fn remove_upload(&self, id: &str, state: Option<&UploadState>) -> io::Result<()> {
        let s3 = self.s3();
        let root = self.key(&format!("uploads/{id}"));
        let session = self.upload_key(id, "session");
        let data = self.upload_key(id, "data");
        let known = state.and_then(|s| s.multipart.clone());
        self.run(async move {
            let (recorded, keys) = tokio::join!(get_all(&s3, &session), list_keys(&s3, &root));
            let recorded = recorded?
                .filter(|b| !b.is_empty())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let mut ids: Vec<String> = known.into_iter().chain(recorded).collect();
            ids.dedup();
            for m in ids {
                match s3.abort_multipart(&data, &m).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            delete_keys(&s3, keys?).await
        })
    }
}

fn tail_name(generation: u64) -> String {
    format!("tail.{generation}")
}

impl S3Upload {
    fn new(store: S3Store, id: &str, state: &UploadState, len: u64, fresh: bool) -> S3Upload {
        S3Upload {
            store,
            id: id.to_string(),
            hasher: fresh.then(|| Hasher::new(Algorithm::Sha256)),
            len,
            multipart: state.multipart.clone(),
            creating: None,
            parts: state.parts.clone(),
            parts_len: state.parts_len,
            sending: None,
            tail_gen: state.tail_gen,
            tail_len: state.tail_len,
            last_gen: state.tail_gen,
            buf: Vec::new(),
            loaded: false,
            unflushed: None,
            dirty: false,
            superseded: Vec::new(),
            broken: false,
        }
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True while the upload holds buffers or S3 calls in flight.
    pub fn is_open(&self) -> bool {
        self.buf.capacity() > 0
            || self.unflushed.is_some()
            || self.sending.is_some()
            || self.creating.is_some()
    }

    /// A point to roll back to if the request appending after it fails.
    pub fn checkpoint(&self) -> S3Checkpoint {
        S3Checkpoint {
            len: self.len,
            hasher: self.hasher.clone(),
            parts: self.parts.len(),
            parts_len: self.parts_len,
            tail_gen: self.tail_gen,
            tail_len: self.tail_len,
        }
    }

    /// What the session's row records after a `flush`, to resume it after a restart.
    pub fn state(&self) -> UploadState {
        UploadState {
            multipart: self.multipart.clone(),
            parts: self.parts.clone(),
            parts_len: self.parts_len,
            tail_gen: self.tail_gen,
            tail_len: self.tail_len,
        }
    }

    fn part_size(&self) -> usize {
        self.store.part_size()
    }

    /// Waits for the part in flight and records it (its buffer is dropped: the next part
    /// fills a fresh one, so memory is returned as soon as S3 has it).
    async fn settle(&mut self) -> io::Result<()> {
        if let Some((task, n)) = &mut self.sending {
            let n = *n;
            let res = task.await.map_err(io::Error::other).and_then(|r| r);
            self.sending = None;
            match res {
                Ok((etag, _)) => {
                    self.parts.push(etag);
                    self.parts_len += n;
                }
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        if self.broken {
            return Err(io::Error::other("an earlier part of this upload failed"));
        }
        Ok(())
    }

    /// The multipart upload, created on first use (with its id written to the session object,
    /// so a cancel or the collector can abort it even if the row never recorded it).
    async fn multipart(&mut self) -> io::Result<String> {
        if let Some(m) = &self.multipart {
            return Ok(m.clone());
        }
        if self.creating.is_none() {
            let s3 = self.store.s3();
            let data = self.store.upload_key(&self.id, "data");
            let session = self.store.upload_key(&self.id, "session");
            self.creating = Some(self.store.inner.rt.handle().spawn(async move {
                let m = s3.create_multipart(&data).await.map_err(io_err)?;
                let noted = PutPayload::from(Bytes::from(m.clone().into_bytes()));
                if let Err(e) = s3.put(&session, noted).await {
                    let _ = s3.abort_multipart(&data, &m).await;
                    return Err(io_err(e));
                }
                Ok(m)
            }));
        }
        let task = self.creating.as_mut().expect("set above");
        let res = task.await.map_err(io::Error::other).and_then(|r| r);
        self.creating = None;
        let m = res?;
        self.multipart = Some(m.clone());
        Ok(m)
    }

    /// Sends the full buffer as the next part, after the previous part is in.
    async fn send_part(&mut self) -> io::Result<()> {
        self.settle().await?;
        let m = self.multipart().await?;
        let idx = self.parts.len();
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let n = data.len() as u64;
        let s3 = self.store.s3();
        let key = self.store.upload_key(&self.id, "data");
        let task = self.store.inner.rt.handle().spawn(async move {
            let part = s3
                .put_part(&key, &m, idx, PutPayload::from(data.clone()))
                .await
                .map_err(io_err)?;
            Ok((part.content_id, data))
        });
        self.sending = Some((task, n));
        Ok(())
    }

    /// Takes back the buffer of a flush that was dropped midway.
    fn recover(&mut self) {
        if let Some(b) = self.unflushed.take() {
            self.buf = match b.try_into_mut() {
                Ok(m) => m.into(),
                Err(b) => b.to_vec(),
            };
        }
    }

    /// Reads the tail object back into the buffer before the first byte of a request.
    async fn load_tail(&mut self) -> io::Result<()> {
        self.recover();
        if self.loaded {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.part_size());
        if self.tail_len > 0 {
            let s3 = self.store.s3();
            let key = self.store.upload_key(&self.id, &tail_name(self.tail_gen));
            let tail = self
                .store
                .spawn(async move { get_all(&s3, &key).await })
                .await?;
            match tail {
                Some(t) if t.len() as u64 == self.tail_len => buf.extend_from_slice(&t),
                _ => {
                    return Err(io::Error::other(format!(
                        "upload {}: tail object {} is missing or changed",
                        self.id, self.tail_gen
                    )));
                }
            }
        }
        self.buf = buf;
        self.loaded = true;
        Ok(())
    }

    /// Accepts `data`: hashed now, sent in parts of `part_size` in the background.
    pub async fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("an earlier part of this upload failed"));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.load_tail().await?;
        let part = self.part_size();
        let mut data = data;
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(part);
            }
            let n = part.saturating_sub(self.buf.len()).min(data.len());
            let (now, rest) = data.split_at(n);
            // Counted as buffered, so the upload is consistent at every await below.
            self.buf.extend_from_slice(now);
            if let Some(h) = &mut self.hasher {
                h.update(now);
            }
            self.len += n as u64;
            self.dirty = true;
            data = rest;
            if self.buf.len() >= part {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Ends a request: waits for the part in flight, writes the bytes after the parts as a
    /// new tail generation, and releases the buffers (an idle session holds no memory).
    pub async fn flush(&mut self) -> io::Result<()> {
        let res = self.flush_inner().await;
        if res.is_ok() {
            self.buf = Vec::new();
            self.loaded = false;
        }
        res
    }

    async fn flush_inner(&mut self) -> io::Result<()> {
        self.recover();
        self.settle().await?;
        if !self.dirty {
            return Ok(());
        }
        let previous = (self.tail_len > 0).then_some(self.tail_gen);
        // Generations replaced at an earlier flush (the row names a later one by now) are
        // deleted while the new one is written; one left behind goes at commit or cancel.
        let stale: Vec<_> = self
            .superseded
            .drain(..)
            .map(|g| self.store.upload_key(&self.id, &tail_name(g)))
            .collect();
        let generation = self.tail_gen.max(self.last_gen) + 1;
        self.last_gen = generation;
        let key = self.store.upload_key(&self.id, &tail_name(generation));
        let data = (!self.buf.is_empty()).then(|| {
            let b = Bytes::from(std::mem::take(&mut self.buf));
            self.unflushed = Some(b.clone());
            PutPayload::from(b)
        });
        let written = data.is_some();
        let s3 = self.store.s3();
        let put = self
            .store
            .spawn(async move {
                let put = async {
                    match data {
                        Some(d) => s3.put(&key, d).await.map(|_| ()).map_err(io_err),
                        None => Ok(()),
                    }
                };
                let (put, _) = tokio::join!(put, delete_keys(&s3, stale));
                put
            })
            .await;
        if let Err(e) = put {
            self.recover();
            self.broken = true;
            return Err(e);
        }
        self.unflushed = None;
        if written {
            self.tail_gen = generation;
        }
        self.tail_len = self.len - self.parts_len;
        self.dirty = false;
        self.superseded.extend(previous);
        Ok(())
    }

    /// Waits for S3 calls in flight, then returns to `cp`: the parts and tail generation it
    /// named are untouched (later parts are overwritten when sent again).
    pub async fn rollback(&mut self, cp: S3Checkpoint) -> io::Result<()> {
        // Awaited in place, so a rollback dropped midway leaves them to the next caller.
        if let Some((task, _)) = &mut self.sending {
            let _ = task.await;
            self.sending = None;
        }
        if let Some(task) = &mut self.creating {
            if let Ok(Ok(m)) = task.await {
                self.multipart = Some(m);
            }
            self.creating = None;
        }
        self.buf = Vec::new();
        self.loaded = false;
        self.unflushed = None;
        self.dirty = false;
        self.broken = false;
        self.len = cp.len;
        self.hasher = cp.hasher;
        self.parts.truncate(cp.parts);
        self.parts_len = cp.parts_len;
        self.tail_gen = cp.tail_gen;
        self.tail_len = cp.tail_len;
        Ok(())
    }

    /// Checks the upload against `expected` (blocking; `flush` first). With parts, the tail is
    /// sent as the last part and the multipart upload completed at `uploads/<id>/data`. The
    /// running sha256 is used when it covers every byte; otherwise the object is read back and
    /// hashed. On a mismatch everything of the session is removed. Takes no lock.
    pub fn verify(self, store: &S3Store, expected: &Digest) -> Result<S3Verified, CommitError> {
        if self.sending.is_some() || self.creating.is_some() || self.dirty || self.broken {
            return Err(io::Error::other("upload committed with writes outstanding").into());
        }
        let state = self.state();
        let res = self.check(store, expected);
        if let Err(CommitError::DigestMismatch { .. }) = &res {
            // What fails to go now is a stray for the collector.
            let _ = store.remove_upload(&self.id, Some(&state));
        }
        res
    }

    fn check(&self, store: &S3Store, expected: &Digest) -> Result<S3Verified, CommitError> {
        let (source, key) = match &self.multipart {
            None if self.tail_len == 0 => (Source::Empty, None),
            None => {
                let tail = store.upload_key(&self.id, &tail_name(self.tail_gen));
                (Source::Tail(self.tail_gen), Some(tail))
            }
            Some(m) => (Source::Data, Some(self.complete(store, m)?)),
        };
        // The object's size tells whether it holds exactly what was hashed.
        let stored = match (&source, &key) {
            (_, None) => 0,
            // A tail this process wrote (a PUT is whole or absent) holds what it was given.
            (Source::Tail(_), Some(_)) if self.hasher.is_some() => self.tail_len,
            (_, Some(k)) => {
                let (s3, k) = (store.s3(), k.clone());
                store.run(async move { Ok(s3.head(&k).await.map_err(io_err)?.size) })?
            }
        };
        let inline = match &self.hasher {
            Some(h) if expected.algorithm() == Algorithm::Sha256 && stored == self.len => {
                Some((h.clone().finish(), stored))
            }
            _ => None,
        };
        let (actual, size) = match (inline, key) {
            (Some(known), _) => known,
            (None, None) => (Hasher::new(expected.algorithm()).finish(), 0),
            (None, Some(k)) => store
                .hash_object(k, Hasher::new(expected.algorithm()), &mut |_| {})?
                .ok_or_else(|| io::Error::other("upload object vanished during verification"))?,
        };
        if &actual != expected {
            return Err(CommitError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(S3Verified {
            id: self.id.clone(),
            digest: expected.clone(),
            size,
            source,
        })
    }

    /// Sends the tail as the last part and completes the multipart upload; returns its key.
    fn complete(&self, store: &S3Store, m: &str) -> io::Result<object_store::path::Path> {
        let s3 = store.s3();
        let data = store.upload_key(&self.id, "data");
        let tail =
            (self.tail_len > 0).then(|| store.upload_key(&self.id, &tail_name(self.tail_gen)));
        let (m, mut parts, len) = (m.to_string(), self.parts.clone(), self.len);
        let key = data.clone();
        store.run(async move {
            if let Some(t) = tail {
                let bytes = get_all(&s3, &t)
                    .await?
                    .ok_or_else(|| io::Error::other("upload tail object is missing"))?;
                let part = s3
                    .put_part(&data, &m, parts.len(), PutPayload::from(bytes))
                    .await
                    .map_err(io_err)?;
                parts.push(part.content_id);
            }
            let ids = parts
                .into_iter()
                .map(|content_id| object_store::multipart::PartId { content_id })
                .collect();
            // (RGW 16.2 answers with an empty ETag: nothing depends on it.)
            if let Err(e) = s3.complete_multipart(&data, &m, ids).await {
                // Completed by an earlier attempt whose answer was lost?
                match s3.head(&data).await {
                    Ok(meta) if meta.size == len => {}
                    _ => return Err(io_err(e)),
                }
            }
            Ok(())
        })?;
        Ok(key)
    }
}

impl S3Verified {
    /// The verified size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Publishes the verified object under its digest (call under the digest's lock), then
    /// deletes the session's objects. `recorded` says the blob has a metadata row, so an
    /// object in place was verified before it: nothing is written. Without a row, an object
    /// in place is an unverified orphan: the verified copy replaces it. Returns the size.
    pub fn publish(self, store: &S3Store, recorded: bool) -> io::Result<u64> {
        if !(recorded && store.stat(&self.digest)?.is_some()) {
            let (s3, st) = (store.s3(), store.clone());
            let target = store.blob_key(&self.digest);
            let from = match self.source {
                Source::Empty => None,
                Source::Tail(g) => Some(store.upload_key(&self.id, &tail_name(g))),
                Source::Data => Some(store.upload_key(&self.id, "data")),
            };
            let size = self.size;
            store.run(async move {
                match from {
                    None => s3
                        .put(&target, PutPayload::new())
                        .await
                        .map(|_| ())
                        .map_err(io_err),
                    Some(from) => st.copy_object(&from, &target, size).await,
                }
            })?;
        }
        // The blob is in place: a leftover of the session is the collector's to sweep.
        let _ = store.remove_upload(&self.id, None);
        Ok(self.size)
    }
}
