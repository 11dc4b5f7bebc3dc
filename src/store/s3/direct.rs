//! A one-request push whose digest is known up front (`POST ?digest=`), straight to its blob
//! key: no session object, no tail, no server-side copy.
//!
//! Bytes are hashed as they arrive; full parts go to a multipart upload created at the blob key
//! itself (two parts in flight while the next fills). An incomplete multipart upload is
//! invisible, so nothing appears at the key until `publish` completes it, under the digest's
//! lock, after `verify` checked the digest and sent the last part. A blob smaller than one part
//! never starts a multipart upload: `publish` PUTs it whole. A failed or mismatching push aborts
//! the multipart upload (`discard`).

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStoreExt, PutPayload};
use tokio::task::JoinHandle;

use super::{S3Store, io_err};
use crate::digest::{Digest, Hasher};
use crate::store::CommitError;

/// Parts sent at once while the next one fills: a push holds at most `IN_FLIGHT + 1` parts.
const IN_FLIGHT: usize = 2;

/// A part being sent: its id once the gateway has it.
type Sending = JoinHandle<io::Result<PartId>>;

/// A push of a known digest, streamed to its blob key.
pub struct S3Direct {
    store: S3Store,
    digest: Digest,
    hasher: Hasher,
    len: u64,
    /// Bytes of the part filling.
    buf: Vec<u8>,
    multipart: Option<String>,
    parts: Vec<PartId>,
    /// Parts in flight, oldest first (at most `IN_FLIGHT`).
    sending: VecDeque<Sending>,
    /// A part failed or the push was rolled back: it can only be discarded.
    broken: bool,
}

/// A direct push whose bytes hashed to its digest, all but its completion sent.
pub struct S3DirectVerified {
    digest: Digest,
    size: u64,
    /// The multipart upload and its parts, or the whole (small) blob.
    body: Body,
}

enum Body {
    Multipart(String, Vec<PartId>),
    Whole(Bytes),
}

impl S3Store {
    /// Starts a push of a blob whose digest is `digest`.
    pub fn create_direct(&self, digest: &Digest) -> S3Direct {
        S3Direct {
            store: self.clone(),
            digest: digest.clone(),
            hasher: Hasher::new(digest.algorithm()),
            len: 0,
            buf: Vec::new(),
            multipart: None,
            parts: Vec::new(),
            sending: VecDeque::new(),
            broken: false,
        }
    }
}

impl S3Direct {
    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True while it holds a part in memory or in flight.
    pub fn is_open(&self) -> bool {
        !self.buf.is_empty() || !self.sending.is_empty()
    }

    /// Accepts `data`: hashed now, sent a part at a time.
    pub async fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("an earlier part of this push failed"));
        }
        self.hasher.update(data);
        self.len += data.len() as u64;
        let part = self.store.part_size();
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(part);
            }
            let n = (part - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == part && !data.is_empty() {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Waits for the parts in flight; the filling part stays in memory until `verify`.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.settle(0).await
    }

    /// A failed request: the push is over (the registry discards it).
    pub async fn rollback(&mut self) -> io::Result<()> {
        let _ = self.settle(0).await;
        self.broken = true;
        Ok(())
    }

    /// Aborts what was sent.
    pub fn discard(mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.sending);
        let (s3, key, m) = (
            self.store.s3(),
            self.store.blob_key(&self.digest),
            self.multipart.take(),
        );
        self.store.run(async move {
            for p in pending {
                let _ = p.await;
            }
            if let Some(m) = m {
                match s3.abort_multipart(&key, &m).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Ok(())
        })
    }

    /// Waits until at most `keep` parts are in flight.
    async fn settle(&mut self, keep: usize) -> io::Result<()> {
        while self.sending.len() > keep {
            let p = self.sending.pop_front().expect("non-empty");
            match p.await.map_err(io::Error::other).and_then(|r| r) {
                Ok(id) => self.parts.push(id),
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends the filled part (once fewer than `IN_FLIGHT` are), creating the multipart upload
    /// first.
    async fn send_part(&mut self) -> io::Result<()> {
        self.settle(IN_FLIGHT - 1).await?;
        let key = self.store.blob_key(&self.digest);
        if self.multipart.is_none() {
            let (s3, key) = (self.store.s3(), key.clone());
            let m = self
                .store
                .spawn(async move { s3.create_multipart(&key).await.map_err(io_err) })
                .await;
            self.multipart = Some(m.inspect_err(|_| self.broken = true)?);
        }
        let m = self.multipart.clone().expect("created above");
        let part = self.store.part_size();
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(part)));
        let (s3, idx) = (self.store.s3(), self.parts.len() + self.sending.len());
        // On the store's runtime: it finishes even if the request is dropped meanwhile.
        self.sending
            .push_back(self.store.inner.rt.handle().spawn(async move {
                s3.put_part(&key, &m, idx, PutPayload::from(data))
                    .await
                    .map_err(io_err)
            }));
        Ok(())
    }

    /// Checks the digest and sends the last part, taking no lock; on a mismatch the push is
    /// aborted. Blocking.
    pub fn verify(mut self, expected: &Digest) -> Result<S3DirectVerified, CommitError> {
        let actual = self.hasher.clone().finish();
        if self.broken || &actual != expected || expected != &self.digest {
            let broken = self.broken;
            self.discard()?;
            if broken {
                return Err(io::Error::other("a part of this push failed").into());
            }
            return Err(CommitError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let size = self.len;
        let last = Bytes::from(std::mem::take(&mut self.buf));
        let Some(m) = self.multipart.clone() else {
            return Ok(S3DirectVerified {
                digest: self.digest,
                size,
                body: Body::Whole(last),
            });
        };
        let (s3, key) = (self.store.s3(), self.store.blob_key(&self.digest));
        let pending = std::mem::take(&mut self.sending);
        let mut parts = std::mem::take(&mut self.parts);
        let m2 = m.clone();
        let sent = self.store.run(async move {
            let m = m2;
            for p in pending {
                parts.push(p.await.map_err(io::Error::other)??);
            }
            if !last.is_empty() {
                parts.push(
                    s3.put_part(&key, &m, parts.len(), PutPayload::from(last))
                        .await
                        .map_err(io_err)?,
                );
            }
            Ok(parts)
        });
        match sent {
            Ok(parts) => Ok(S3DirectVerified {
                digest: self.digest.clone(),
                size,
                body: Body::Multipart(m, parts),
            }),
            Err(e) => {
                self.discard()?;
                Err(e.into())
            }
        }
    }
}

impl S3DirectVerified {
    /// The verified size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Places the blob at its key (call under the digest's lock): completes the multipart
    /// upload, or PUTs a small blob. `recorded` with an object in place: that object was
    /// verified before its row committed, so this push is dropped instead. Returns the size.
    pub fn publish(self, store: &S3Store, recorded: bool) -> io::Result<u64> {
        let keep_existing = recorded && store.stat(&self.digest)?.is_some();
        let (s3, key) = (store.s3(), store.blob_key(&self.digest));
        store.run(async move {
            match (self.body, keep_existing) {
                (Body::Multipart(m, _), true) => {
                    s3.abort_multipart(&key, &m).await.map_err(io_err)?;
                }
                (Body::Whole(_), true) => {}
                (Body::Multipart(m, parts), false) => {
                    // (RGW 16.2 answers with an empty ETag: nothing depends on it.)
                    s3.complete_multipart(&key, &m, parts)
                        .await
                        .map_err(io_err)?;
                }
                (Body::Whole(bytes), false) => {
                    s3.put(&key, PutPayload::from(bytes))
                        .await
                        .map_err(io_err)?;
                }
            }
            Ok(self.size)
        })
    }
}
