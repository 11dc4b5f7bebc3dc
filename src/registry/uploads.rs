//! Upload sessions: start, append (streamed or chunked), status, finish, cancel, mount.

use std::sync::Arc;

use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::outbox::blob_target;
use super::sessions::{ready, ready_mut, upload_unknown};
use super::{Registry, Session, Slot};
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::meta::{UploadRecord, blobs, now_secs, repos, uploads};
use crate::names::RepoName;
use crate::store::{CommitError, Upload, UploadState};

/// The largest blob `put_blob` verifies in memory.
const SMALL_BLOB: usize = 64 * 1024;

fn digest_mismatch(digest: &Digest) -> Error {
    Error::new(
        Code::DigestInvalid,
        format!("uploaded content does not match digest {digest}"),
    )
}

/// The `Range` header value for an upload holding `len` bytes.
pub fn range_header(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

impl Registry {
    /// Opens an upload session for `repo` on behalf of `client` (`user:<name>` or
    /// `ip:<address>`); returns its id. Beyond the session caps: 429 `TOOMANYREQUESTS`.
    pub async fn start_upload(&self, repo: &RepoName, client: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        if let Err(e) = self.inner.quota.admit(&id, client) {
            // On a cluster another node may have finished sessions this one admitted.
            if !self.meta().is_shared() {
                return Err(e);
            }
            self.blocking(|r| r.forget_closed_sessions()).await?;
            self.inner.quota.admit(&id, client)?;
        }
        let rec = UploadRecord {
            repo: repo.to_string(),
            offset: 0,
            started: now_secs(),
            updated: now_secs(),
            client: client.to_string(),
            state: UploadState::default(),
        };
        let id2 = id.clone();
        let opened = self
            .blocking(move |r| {
                let file = r.store().create_upload(&id2)?;
                r.meta().write(|t| uploads::put(t, &id2, &rec))?;
                Ok(file)
            })
            .await;
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.inner.quota.release(&id);
                let _ = self.store().remove_upload(&id, None);
                return Err(e);
            }
        };
        let session: Session = Arc::new(tokio::sync::Mutex::new(Slot::Ready(file)));
        // A request that guessed the id may have loaded the session from its record already.
        self.inner
            .sessions
            .lock()
            .expect("sessions lock")
            .entry(id.clone())
            .or_insert(session);
        Ok(id)
    }

    /// Bytes received so far by session `id`.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64> {
        let guard = self.lock_session(repo, id).await?;
        Ok(ready(&guard).len())
    }

    /// Appends `body` to session `id`. With `range` (a `Content-Range` of `start-end`), the
    /// chunk must start where the upload ends (else 416) and have the stated length. A request
    /// that fails midway leaves the session as it was before it.
    pub async fn append<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut guard = self.lock_session(repo, id).await?;
        let len = append_to(ready_mut(&mut guard), id, range, body).await?;
        let state = ready(&guard).state();
        let id2 = id.to_string();
        self.blocking(move |r| {
            r.meta().write(|t| {
                let mut rec = uploads::get(t, &id2)?.ok_or_else(|| upload_unknown(&id2))?;
                rec.offset = len;
                rec.updated = now_secs();
                rec.state = state.clone();
                uploads::put(t, &id2, &rec)
            })
        })
        .await?;
        // Held until the row names what this request stored: the next request on the session
        // may delete what the row named before (an object store's replaced tail).
        drop(guard);
        Ok(len)
    }

    /// Appends an optional final chunk, verifies `digest` and publishes the blob in `repo`.
    pub async fn finish_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut guard = self.lock_session(repo, id).await?;
        append_to(ready_mut(&mut guard), id, range, body).await?;
        let Slot::Ready(file) = std::mem::replace(&mut *guard, Slot::Closed) else {
            unreachable!("lock_session returns ready sessions")
        };
        // Another node's request on the session waits until its record is gone.
        let turn = guard.keep_turn();
        let out = self.commit(repo, Some(id), file, digest).await;
        drop(turn);
        out
    }

    /// Stores `body` as a blob of `repo` in one request (`POST ?digest=`). A body of at most
    /// `SMALL_BLOB` bytes (a config, a signature) is verified in memory and needs no upload
    /// file; a larger one streams through an upload file like any other.
    pub async fn put_blob<S, E>(&self, repo: &RepoName, digest: &Digest, mut body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut head = Vec::new();
        let mut overflow = None;
        while let Some(chunk) = body.next().await {
            let c = chunk.map_err(|e| {
                Error::new(Code::BlobUploadInvalid, format!("upload body failed: {e}"))
            })?;
            if head.len() + c.len() > SMALL_BLOB {
                overflow = Some(c);
                break;
            }
            head.extend_from_slice(&c);
        }
        let Some(next) = overflow else {
            if Digest::of(digest.algorithm(), &head) != *digest {
                return Err(digest_mismatch(digest));
            }
            let (repo, digest) = (repo.to_string(), digest.clone());
            return self
                .blocking(move |r| r.publish_small(&repo, &digest, &head))
                .await;
        };
        let id = uuid::Uuid::new_v4().to_string();
        let mut file = self.store().create_upload_for(&id, digest)?;
        let read = futures_util::stream::iter([Ok(Bytes::from(head)), Ok(next)]);
        if let Err(e) = append_to(&mut file, &id, None, read.chain(body)).await {
            // Blocking on an object store (abort a multipart upload): off the async thread.
            self.blocking(move |r| Ok(file.discard(r.store(), &id)?))
                .await?;
            return Err(e);
        }
        self.commit(repo, None, file, digest).await
    }

    /// Blocking part of `put_blob` for a small, verified blob.
    fn publish_small(&self, repo: &str, digest: &Digest, data: &[u8]) -> Result<()> {
        // Written and synced before the digest's lock; under it only the rename and commit.
        let staged = if self.is_recorded(digest)? {
            None
        } else {
            self.store().stage_verified(digest, data)?
        };
        let lock = self.digest_locks().lock(&digest.to_string())?;
        let recorded = self.is_recorded(digest)?;
        if staged.is_some() || !recorded {
            self.store()
                .publish_staged(digest, staged, data, recorded)?;
        }
        self.record_blob(repo, None, digest, data.len() as u64, lock)
    }

    /// Verifies and publishes `file`, then links it into `repo` and closes session `id`.
    async fn commit(
        &self,
        repo: &RepoName,
        id: Option<&str>,
        file: Upload,
        digest: &Digest,
    ) -> Result<()> {
        let (repo, id, digest) = (repo.to_string(), id.map(str::to_string), digest.clone());
        self.blocking(move |r| {
            let out = r.publish(&repo, id.as_deref(), file, &digest);
            // Forget the (now empty) in-memory session only after the record is gone, so a
            // concurrent request sees either the record and the empty session, or neither.
            if let Some(id) = &id {
                r.settle_session(id);
            }
            out
        })
        .await
    }

    /// Blocking part of `commit`.
    fn publish(&self, repo: &str, id: Option<&str>, file: Upload, digest: &Digest) -> Result<()> {
        // Hashing and the file's fsync happen before the digest's lock is taken; under it
        // only the rename and the metadata commit.
        let verified = match file.verify(self.store(), digest) {
            Ok(v) => v,
            Err(CommitError::DigestMismatch { .. }) => {
                if let Some(id) = id {
                    self.meta().write(|t| uploads::remove(t, id))?;
                }
                return Err(digest_mismatch(digest));
            }
            Err(CommitError::Io(e)) => return Err(e.into()),
        };
        let lock = self.digest_locks().lock(&digest.to_string())?;
        // A recorded blob's file was made durable before its row was committed.
        let recorded = self.is_recorded(digest)?;
        let size = verified.publish(self.store(), recorded)?;
        self.record_blob(repo, id, digest, size, lock)
    }

    /// True when `digest` has a blob row (so its file was made durable and is trusted).
    pub(super) fn is_recorded(&self, digest: &Digest) -> Result<bool> {
        Ok(self
            .meta()
            .read(|t| blobs::get(t, &digest.to_string()))?
            .is_some())
    }

    /// Records published blob `digest` in `repo` and closes session `id`. Once the row is
    /// visible the collector re-checks it under the digest's `lock`, so the lock is released
    /// before waiting for the fsync: concurrent pushes of one blob then share it.
    fn record_blob(
        &self,
        repo: &str,
        id: Option<&str>,
        digest: &Digest,
        size: u64,
        lock: super::DigestGuard<'_>,
    ) -> Result<()> {
        let digest = digest.to_string();
        let committed = self.meta().commit(|t| {
            if let Some(id) = id {
                uploads::remove(t, id)?;
            }
            let quota = self.quota_check(t, repo)?;
            blobs::touch(t, &digest, size)?;
            blobs::link(t, repo, &digest)?;
            if let Some(q) = quota {
                q.finish(t)?;
            }
            repos::ensure(t, repo)?;
            self.queue_event(t, "push", |base| blob_target(base, repo, &digest, size))
        });
        let committed = match (committed, id) {
            // Over quota: the session is over too (its bytes were published; without a row
            // the collector removes them after the grace period).
            (Err(e), Some(id)) if e.code == crate::error::Code::Denied => {
                drop(lock);
                self.meta().write(|t| uploads::remove(t, id))?;
                return Err(e);
            }
            (c, _) => c?,
        };
        drop(lock);
        committed.durable()?;
        self.events_committed();
        Ok(())
    }

    /// Cancels session `id`, removing its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let mut guard = self.lock_session(repo, id).await?;
        let state = ready(&guard).state();
        *guard = Slot::Closed;
        let turn = guard.keep_turn();
        let id = id.to_string();
        let out = self
            .blocking(move |r| {
                let out = r
                    .meta()
                    .write(|t| uploads::remove(t, &id))
                    .and_then(|_| Ok(r.store().remove_upload(&id, Some(&state))?));
                r.settle_session(&id);
                out
            })
            .await;
        drop(turn);
        out
    }

    /// Links blob `digest` from repository `from` into `repo` and restarts its grace period;
    /// false when `from` lacks it.
    pub async fn mount(&self, repo: &RepoName, from: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, from, digest) = (repo.to_string(), from.to_string(), digest.to_string());
        self.blocking(move |r| {
            let mounted = r.meta().write(|t| {
                if !blobs::is_linked(t, &from, &digest)? {
                    return Ok(false);
                }
                let Some(row) = blobs::get(t, &digest)? else {
                    return Ok(false);
                };
                // The client will push a manifest naming the blob next: its grace period
                // restarts now, in the transaction the collector's re-check is ordered with.
                let quota = r.quota_check(t, &repo)?;
                blobs::touch(t, &digest, row.size)?;
                blobs::link(t, &repo, &digest)?;
                if let Some(q) = quota {
                    q.finish(t)?;
                }
                repos::ensure(t, &repo)?;
                r.queue_event(t, "mount", |base| {
                    blob_target(base, &repo, &digest, row.size)
                })?;
                Ok(true)
            })?;
            r.events_committed();
            Ok(mounted)
        })
        .await
    }
}

/// Streams `body` into `file`, rolling back on any failure.
async fn append_to<S, E>(
    file: &mut Upload,
    id: &str,
    range: Option<(u64, u64)>,
    mut body: S,
) -> Result<u64>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some((start, end)) = range
        && (start != file.len() || end < start)
    {
        return Err(Error::new(
            Code::BlobUploadInvalid,
            format!(
                "chunk range {start}-{end} does not continue the upload at offset {}",
                file.len()
            ),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header("Range", range_header(file.len())));
    }
    let cp = file.checkpoint().await?;
    let mut result = Ok(());
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if let Err(e) = file.push(&c).await {
                    result = Err(e.into());
                    break;
                }
            }
            Err(e) => {
                result = Err(Error::new(
                    Code::BlobUploadInvalid,
                    format!("upload {id} body failed: {e}"),
                ));
                break;
            }
        }
    }
    if result.is_ok()
        && let Some((start, end)) = range
    {
        let got = file.len() - start;
        // Saturating: `0-18446744073709551615` announces one byte more than a u64 holds.
        let announced = (end - start).saturating_add(1);
        if got != announced {
            result = Err(Error::new(
                Code::SizeInvalid,
                format!("Content-Range {start}-{end} announced {announced} bytes, body had {got}"),
            ));
        }
    }
    if result.is_ok() {
        // What a 202 acknowledges is in the file (the page cache) before the reply.
        result = file.flush().await.map_err(Error::from);
    }
    if let Err(e) = result {
        file.rollback(cp).await?;
        return Err(e);
    }
    Ok(file.len())
}
