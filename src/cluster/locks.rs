//! Cluster-wide per-digest locks: `pg_advisory_lock(key)` on a connection of a small pool of
//! lock connections, `key` a 64-bit hash of the digest. A guard holds its connection (and so
//! its session's locks) until dropped; dropping unlocks and returns the connection. A
//! connection that broke is discarded: its session, and every lock it held, is gone.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::meta::pg::Client;

use super::conn::{Target, describe};
use crate::error::{Error, Result};

/// How long a locker waits for a free lock connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// The advisory lock key of `digest`: the first 8 bytes of its BLAKE3 hash, the same on every
/// node and build (std's `DefaultHasher` may change between Rust releases).
pub fn digest_key(digest: &str) -> i64 {
    let h = blake3::hash(digest.as_bytes());
    i64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Up to `max` connections holding digest locks, opened as lockers need them.
pub struct LockPool {
    target: Target,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Client>,
    /// Connections open, idle or held by a guard.
    open: usize,
}

impl LockPool {
    pub fn new(target: Target, max: u32) -> LockPool {
        LockPool {
            target,
            max: max.max(1) as usize,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Locks `keys` (sorted, without duplicates: so no two lockers wait on each other) on one
    /// connection, waiting for each as long as another session holds it.
    pub fn lock(&self, keys: Vec<i64>) -> Result<ClusterGuard<'_>> {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys sorted, unique");
        // An idle connection may have died unnoticed (PostgreSQL restarted): a failure is
        // retried once on another connection; a second one is the database's answer.
        let mut attempt = 0;
        'connections: loop {
            attempt += 1;
            let mut client = self.checkout()?;
            for k in &keys {
                if let Err(e) = client.execute("SELECT pg_advisory_lock($1)", &[k]) {
                    // Closing the connection releases the keys locked so far.
                    drop(client);
                    self.discard();
                    if attempt == 1 {
                        continue 'connections;
                    }
                    return Err(lock_error(&self.target, &e));
                }
            }
            return Ok(ClusterGuard {
                pool: self,
                client: Some(client),
                keys,
            });
        }
    }

    fn checkout(&self) -> Result<Client> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = s.idle.pop() {
                if !c.is_closed() {
                    return Ok(c);
                }
                s.open -= 1;
                continue;
            }
            if s.open < self.max {
                s.open += 1;
                drop(s);
                let c = self.target.connect("locks");
                if c.is_err() {
                    self.discard();
                }
                return c;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::internal(
                    "cluster coordination",
                    format!(
                        "no free lock connection to {} within {CHECKOUT_TIMEOUT:?}",
                        self.target.name()
                    ),
                ));
            }
            s = self
                .freed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn checkin(&self, c: Client) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_closed() {
            s.open -= 1;
        } else {
            s.idle.push(c);
        }
        self.freed.notify_one();
    }

    /// Forgets a connection that was closed or dropped.
    fn discard(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open -= 1;
        self.freed.notify_one();
    }
}

fn lock_error(target: &Target, e: &tokio_postgres::Error) -> Error {
    Error::internal(
        "cluster coordination",
        format!(
            "cannot take a digest lock on {}: {}",
            target.name(),
            describe(e)
        ),
    )
}

/// Digest locks held on one lock connection; released when dropped.
pub struct ClusterGuard<'a> {
    pool: &'a LockPool,
    client: Option<Client>,
    keys: Vec<i64>,
}

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        let Some(mut client) = self.client.take() else {
            return;
        };
        let released = client.query_one(
            "SELECT count(*) FILTER (WHERE NOT pg_advisory_unlock(k)) FROM unnest($1::bigint[]) AS k",
            &[&self.keys],
        );
        match released.map(|row| row.get::<_, i64>(0)) {
            Ok(0) => self.pool.checkin(client),
            // Not held by this session any more: its connection was closed and reopened
            // underneath (never by kura), or a bug. Either way the exclusion did not hold.
            Ok(lost) => {
                tracing::error!(
                    lost,
                    "cluster coordination: digest locks were lost while held"
                );
                drop(client);
                self.pool.discard();
            }
            // The connection broke while the locks were held: the server released them when
            // it closed the session, maybe before the holder was done (see ARCHITECTURE.md).
            Err(e) => {
                tracing::error!(error = %describe(&e), "cluster coordination: the connection holding digest locks broke");
                drop(client);
                self.pool.discard();
            }
        }
    }
}
