//! Pulls of cached items, kept in memory and written in batches: the eviction order needs to
//! know what was pulled lately, not a durable write per pull.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::Result;
use crate::meta::now_secs;
use crate::registry::Registry;

/// Items pulled since the last flush: `(repository, digest)` → when (unix seconds).
#[derive(Default)]
pub struct PullLog {
    pending: Mutex<HashMap<(String, String), u64>>,
}

/// The most items held before a pull forces no more growth (older ones are still written at
/// the next flush; newer ones beyond this are dropped, costing only eviction precision).
const MAX_PENDING: usize = 100_000;

impl PullLog {
    /// Notes a pull of `digest` of `repo`.
    pub fn note(&self, repo: &str, digest: &str) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (repo.to_string(), digest.to_string());
        if p.len() < MAX_PENDING || p.contains_key(&key) {
            p.insert(key, now_secs());
        }
    }

    /// Writes the pulls noted so far in one transaction.
    pub async fn flush(&self, registry: &Registry) -> Result<()> {
        let batch: Vec<_> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .map(|((repo, digest), at)| (repo, digest, at))
                .collect();
        registry.record_cached_pulls(batch).await
    }
}
