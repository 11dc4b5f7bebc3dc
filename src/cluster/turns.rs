//! Cluster-wide turns on upload sessions. On one node a session's requests take turns on
//! the session's in-memory mutex; on a cluster a client may send two requests of one session
//! to two nodes at once (a retry through the load balancer while the first request still
//! streams), and both would append at the same offset. A request therefore also holds the
//! session's advisory lock, `pg_try_advisory_lock(key)` with `key` a 64-bit hash of the
//! session id, for as long as it works on the session.
//!
//! A streaming upload may hold its turn for minutes, so turns are not held on connections of
//! their own (that would cap a node's concurrent uploads at a pool's size): every turn of a
//! node is a lock of one shared connection, which is busy only for each one-round-trip try
//! and release. A waiting request tries again at growing intervals (`Registry::lock_session`).
//! Two requests of one node never contend here (advisory locks are re-entrant within a
//! session): the session's in-memory mutex orders them first.
//!
//! If the connection breaks, the server releases every turn it held while their requests go
//! on: the unlock on the new connection then finds the lock gone and logs it (as a broken
//! digest-lock connection does, see ARCHITECTURE.md "Cluster mode").

use std::sync::Mutex;

use super::conn::{Target, describe};
use crate::error::{Error, Result};
use crate::meta::pg::Client;

/// The lock key of upload session `id`, in the digest locks' 64-bit key space (a session id
/// is a UUID, never a digest, and the prefix keeps the hashes apart).
pub fn session_key(id: &str) -> i64 {
    let h = blake3::hash(format!("upload session {id}").as_bytes());
    i64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// This node's connection holding the turns of its requests.
pub struct SessionTurns {
    target: Target,
    conn: Mutex<Option<Client>>,
}

impl SessionTurns {
    pub fn new(target: Target) -> SessionTurns {
        SessionTurns {
            target,
            conn: Mutex::new(None),
        }
    }

    /// Tries to take the turn of session `key`: true when this node now holds it. One round
    /// trip (a connection that broke is replaced once). Callable from async workers.
    pub fn try_take(&self, key: i64) -> Result<bool> {
        let row = self.run("SELECT pg_try_advisory_lock($1)", key)?;
        Ok(row)
    }

    /// Gives the turn of session `key` back.
    pub fn give_back(&self, key: i64) {
        match self.run("SELECT pg_advisory_unlock($1)", key) {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                key,
                "cluster coordination: an upload session's turn was lost while held (its connection broke)"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cluster coordination: cannot give an upload session's turn back")
            }
        }
    }

    /// Runs `sql` (one boolean result) with `key` on the connection.
    fn run(&self, sql: &str, key: i64) -> Result<bool> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempt = 0;
        loop {
            attempt += 1;
            if conn.as_ref().is_none_or(Client::is_closed) {
                let c = self
                    .target
                    .connect("sessions")
                    .map_err(|e| Error::unavailable(e.message, crate::meta::pg::RETRY_AFTER))?;
                *conn = Some(c);
            }
            let c = conn.as_mut().expect("connected");
            match c.query_one(sql, &[&key]) {
                Ok(row) => return Ok(row.get::<_, bool>(0)),
                Err(e) => {
                    *conn = None;
                    if attempt > 1 {
                        // The database is unreachable: as for every metadata request, 503.
                        return Err(Error::unavailable(
                            format!(
                                "cluster coordination: upload session turns on {}: {}",
                                self.target.name(),
                                describe(&e)
                            ),
                            crate::meta::pg::RETRY_AFTER,
                        ));
                    }
                }
            }
        }
    }
}
