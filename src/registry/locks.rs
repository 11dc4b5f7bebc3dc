//! Per-digest locks that order blob file publication against garbage collection.
//!
//! A writer holds the lock of a digest from the moment it puts the file in place until its
//! metadata transaction commits (visibly; the fsync wait comes after). The collector removes
//! rows without any lock (the metadata store orders its transaction with the writers'), waits
//! until the removal is durable, and then takes the lock of one digest at a time only to
//! re-check that no row came back and unlink the file. So a re-upload racing the collector
//! either records the blob before that re-check (and keeps its file) or places its file after
//! the unlink: never a row without its file, and no writer waits for a whole batch.
//!
//! On one node (redb) the locks are stripes of process mutexes. On a cluster (PostgreSQL
//! metadata, nodes sharing one bucket or directory) a writer on one node races a collector on
//! another, so the locks are the database's advisory locks (`crate::cluster::LockPool`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::cluster::{ClusterGuard, LockPool, Target, digest_key};
use crate::error::{Error, Result};

const STRIPES: usize = 256;

/// The per-digest locks: this process's stripes, or the cluster's advisory locks.
pub enum DigestLocks {
    Local(Vec<Mutex<()>>),
    Cluster(Box<LockPool>),
}

/// Locks held; released when dropped.
#[must_use = "the locks are released when the guard is dropped"]
pub struct DigestGuard<'a> {
    _held: Held<'a>,
}

enum Held<'a> {
    One { _stripe: MutexGuard<'a, ()> },
    Many { _stripes: Vec<MutexGuard<'a, ()>> },
    // Boxed: a connection is large; the local guards stay small.
    Cluster { _keys: Box<ClusterGuard<'a>> },
}

impl Default for DigestLocks {
    fn default() -> Self {
        DigestLocks::Local((0..STRIPES).map(|_| Mutex::new(())).collect())
    }
}

fn stripe(digest: &str) -> usize {
    let mut h = DefaultHasher::new();
    digest.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

impl DigestLocks {
    /// Locks shared by every node on the cluster's database, through `pool`.
    pub fn cluster(pool: LockPool) -> DigestLocks {
        DigestLocks::Cluster(Box::new(pool))
    }

    /// The cluster's locks (on up to `pool_size` lock connections) when there is a cluster,
    /// else this process's stripes.
    pub fn for_cluster(cluster: Option<&Target>, pool_size: u32) -> DigestLocks {
        match cluster {
            Some(t) => DigestLocks::cluster(LockPool::new(t.clone(), pool_size)),
            None => DigestLocks::default(),
        }
    }

    /// True when the locks are the cluster's.
    pub fn is_cluster(&self) -> bool {
        matches!(self, DigestLocks::Cluster(_))
    }

    /// Locks one digest. Blocking (on a cluster, a database round trip): call it from a
    /// blocking thread. Fails only on a cluster, when the database cannot be reached.
    pub fn lock(&self, digest: &str) -> Result<DigestGuard<'_>> {
        match self {
            DigestLocks::Local(stripes) => Ok(DigestGuard {
                _held: Held::One {
                    _stripe: stripes[stripe(digest)]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()),
                },
            }),
            DigestLocks::Cluster(pool) => Ok(DigestGuard {
                _held: Held::Cluster {
                    _keys: Box::new(pool.lock(vec![digest_key(digest)]).map_err(unreachable)?),
                },
            }),
        }
    }

    /// Locks several digests, in ascending stripe (or key) order: every locker of more than
    /// one takes them in that order, and writers take one at a time, so no two lockers wait
    /// on each other.
    pub fn lock_many<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Result<DigestGuard<'_>> {
        match self {
            DigestLocks::Local(stripes) => {
                let mut idx: Vec<usize> = digests.into_iter().map(stripe).collect();
                idx.sort_unstable();
                idx.dedup();
                Ok(DigestGuard {
                    _held: Held::Many {
                        _stripes: idx
                            .into_iter()
                            .map(|i| stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
                            .collect(),
                    },
                })
            }
            DigestLocks::Cluster(pool) => {
                let mut keys: Vec<i64> = digests.into_iter().map(digest_key).collect();
                keys.sort_unstable();
                keys.dedup();
                Ok(DigestGuard {
                    _held: Held::Cluster {
                        _keys: Box::new(pool.lock(keys).map_err(unreachable)?),
                    },
                })
            }
        }
    }
}

/// A cluster lock that could not be taken: the lock pool fails only when the database cannot
/// be reached (or has no connection to spare), so the request gets 503 `UNAVAILABLE` with
/// `Retry-After`, as when the metadata pool cannot connect, with the lock pool's reason.
fn unreachable(e: Error) -> Error {
    Error::unavailable(e.message, crate::meta::pg::RETRY_AFTER)
}
