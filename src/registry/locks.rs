//! Per-digest locks that order blob file publication against garbage collection.
//!
//! A writer holds the lock of a digest from the moment it puts the file in place until its
//! metadata transaction commits; the collector holds it from its removal transaction until
//! the file is unlinked. So a re-upload racing the collector either lands after the unlink
//! (and re-creates file and row) or before the removal transaction (which then sees the fresh
//! row and keeps it): never a row without its file.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

const STRIPES: usize = 256;

/// A fixed set of lock stripes keyed by digest.
pub struct DigestLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for DigestLocks {
    fn default() -> Self {
        DigestLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

fn stripe(digest: &str) -> usize {
    let mut h = DefaultHasher::new();
    digest.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

impl DigestLocks {
    /// Locks the stripe of one digest.
    pub fn lock(&self, digest: &str) -> MutexGuard<'_, ()> {
        self.stripes[stripe(digest)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the stripes of many digests, in stripe order so concurrent callers cannot deadlock.
    pub fn lock_many<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let order: BTreeSet<usize> = digests.into_iter().map(stripe).collect();
        order
            .into_iter()
            .map(|i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }
}
