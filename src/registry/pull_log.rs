//! Pulls noted in memory and written in batches: the mirror's eviction order
//! (`mirror_pulls`, per cached item) and retention's `not_pulled_for` (`tag_pulls`, per tag)
//! need to know what was pulled lately, not a durable write per pull. The owner flushes
//! (`take`, then one write transaction) every few seconds and at shutdown; a crash loses at
//! most the pulls since the last flush, which only makes an item look less recently pulled.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::meta::now_secs;

/// Pulls since the last flush: `(repository, item)` → when (unix seconds). The item is a
/// digest for the mirror, a tag for retention.
#[derive(Default)]
pub struct PullLog {
    pending: Mutex<HashMap<(String, String), u64>>,
}

/// The most items held between flushes (items already held are still updated; new ones
/// beyond this are dropped, costing only precision).
const MAX_PENDING: usize = 100_000;

impl PullLog {
    /// Notes a pull of `item` of `repo` now.
    pub fn note(&self, repo: &str, item: &str) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = p.get_mut(&(repo.to_string(), item.to_string())) {
            *at = now_secs();
        } else if p.len() < MAX_PENDING {
            p.insert((repo.to_string(), item.to_string()), now_secs());
        }
    }

    /// Takes the pulls noted so far, `(repository, item, when)` each, for one write.
    pub fn take(&self) -> Vec<(String, String, u64)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|((repo, item), at)| (repo, item, at))
            .collect()
    }
}
