//! Per-digest locks that order blob file publication against garbage collection.
//!
//! A writer holds the lock of a digest from the moment it puts the file in place until its
//! metadata transaction commits (visibly; the fsync wait comes after). The collector removes
//! rows without any lock (redb orders its transaction with the writers'), waits until the
//! removal is durable, and then takes the lock of one digest at a time only to re-check that
//! no row came back and unlink the file. So a re-upload racing the collector either records
//! the blob before that re-check (and keeps its file) or places its file after the unlink:
//! never a row without its file, and no writer waits for a whole batch.

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

    /// Locks the stripes of several digests, in ascending stripe order (the only caller
    /// holding more than one stripe is the collector, which runs alone, so no two lockers
    /// wait on each other).
    pub fn lock_many<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = digests.into_iter().map(stripe).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }
}
