//! A small in-memory cache of manifest bytes. Manifests are content-addressed, so a cached
//! entry can never be stale: whether a repository may serve it is always decided by the
//! metadata first. When the cache would outgrow its budget it starts over.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::digest::Digest;

/// Bytes of manifests kept in memory.
const BUDGET: usize = 8 * 1024 * 1024;

/// Manifest bytes by digest.
#[derive(Default)]
pub struct ManifestCache {
    inner: Mutex<(HashMap<Digest, Bytes>, usize)>,
}

impl ManifestCache {
    /// The bytes of manifest `digest`, if cached.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(digest)
            .cloned()
    }

    /// Remembers the bytes of manifest `digest`.
    pub fn insert(&self, digest: Digest, body: Bytes) {
        if body.len() > BUDGET / 16 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.1 + body.len() > BUDGET {
            g.0.clear();
            g.1 = 0;
        }
        g.1 += body.len();
        if let Some(old) = g.0.insert(digest, body) {
            g.1 -= old.len();
        }
    }
}
