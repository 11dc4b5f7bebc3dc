//! Running a write transaction until it commits without a serialization conflict.
//!
//! Every attempt is one SERIALIZABLE transaction. An attempt that conflicts (SQLSTATE 40001
//! or 40P01, of a statement or of the commit) is rolled back and, after a short random pause,
//! made again. Writers also hold a session advisory lock around each attempt: a first
//! attempt holds it shared, so first attempts run side by side; a retry holds it exclusive,
//! so it runs while no other write does (on any node: the lock is the database's), as redb's
//! single writer would, and cannot lose again to the writers that beat it. A hot row (a
//! counter every write changes) thus costs a writer one retry, not the whole budget.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio_postgres::IsolationLevel;

use super::client::Client;
use super::pool::{self, Pool};

use super::tx::{self, Failure, Tx};
use crate::error::{Error, Result};

/// Attempts a write transaction gets before its conflicts are reported as an error (a retry
/// runs alone, so only writers outside kura or a deadlock can make it conflict again).
pub const WRITE_ATTEMPTS: u32 = 20;
/// The longest pause between two attempts (the pause grows from 2 ms, randomised).
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// The writers' advisory lock ("kurawrit"; per database, so shared by every node on it).
const WRITE_LOCK: i64 = 0x6b75_7261_7772_6974;

/// Runs `f` as described in the module's documentation, each attempt on a connection from
/// `pool`; `target` names the database. An attempt whose connection was lost before its
/// COMMIT went out is made again on another connection (a pooled connection may have died
/// idle, when PostgreSQL restarted), up to once per pooled connection and one more.
pub(super) fn write<T>(
    pool: &Pool,
    target: &str,
    mut f: impl FnMut(&Tx) -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    let mut lost = 0;
    while attempt <= WRITE_ATTEMPTS {
        let mut conn = pool::checkout(pool)?;
        let held = WriteLock {
            client: &mut conn,
            shared: attempt == 1,
        };
        let outcome = once(held.client, held.shared, &mut f)?;
        drop(held);
        match outcome {
            Attempt::Committed(v) => return Ok(v),
            Attempt::Lost(e) if lost > pool.max_size() => return Err(e),
            Attempt::Lost(_) => lost += 1,
            Attempt::Conflict => {
                if attempt < WRITE_ATTEMPTS {
                    std::thread::sleep(backoff(attempt));
                }
                attempt += 1;
            }
        }
    }
    Err(Error::internal(
        "metadata database",
        format!(
            "a write transaction on {target} still conflicted with concurrent ones after {WRITE_ATTEMPTS} attempts"
        ),
    ))
}

/// How one attempt ended, short of an error to return.
enum Attempt<T> {
    Committed(T),
    /// A serialization failure or deadlock: rolled back.
    Conflict,
    /// The connection was lost before the COMMIT was sent: nothing was committed.
    Lost(Error),
}

/// One attempt, holding the writers' lock (`shared` or not; taken in the BEGIN's round
/// trip).
fn once<T>(
    client: &mut Client,
    shared: bool,
    f: &mut impl FnMut(&Tx) -> Result<T>,
) -> Result<Attempt<T>> {
    let lock = if shared {
        "SELECT pg_advisory_lock_shared($1)"
    } else {
        "SELECT pg_advisory_lock($1)"
    };
    let started = client
        .build_transaction()
        .after(lock, WRITE_LOCK)
        .isolation_level(IsolationLevel::Serializable)
        .start();
    let txn = match started {
        Ok(txn) => txn,
        Err(e) if tx::connection_lost(&e) => return Ok(Attempt::Lost(e.into())),
        Err(e) => return Err(e.into()),
    };
    let tx = Tx::new(txn);
    let out = f(&tx);
    match (out, tx.failure()) {
        // Whatever `f` made of it, a conflict means running it again.
        (_, Failure::Conflict) => Ok(Attempt::Conflict),
        (Err(e), Failure::Lost) => Ok(Attempt::Lost(e)),
        (Err(e), _) => Err(e),
        (Ok(_), Failure::Other | Failure::Lost) => Err(Error::internal(
            "metadata database",
            "a statement failed and the transaction went on as if it had not; rolled back",
        )),
        (Ok(v), Failure::None) => match tx.commit() {
            Ok(()) => Ok(Attempt::Committed(v)),
            Err(e) if tx::is_conflict(&e) => Ok(Attempt::Conflict),
            // Lost during the COMMIT: whether it committed is unknown, so not run again.
            Err(e) => Err(e.into()),
        },
    }
}

/// The writers' lock of one attempt, released when dropped, also when the attempt failed
/// before or after taking it or `f` panicked: a pooled connection must not go back to the
/// pool holding it. The release is sent without waiting for its answer (the connection's
/// next request runs after it; it fails only with the connection, whose lock is then gone).
struct WriteLock<'c> {
    client: &'c mut Client,
    shared: bool,
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        let sql = if self.shared {
            "SELECT pg_advisory_unlock_shared($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        if self.client.is_closed() {
            return; // the session, and its lock, are gone
        }
        if let Err(e) = self.client.execute_unawaited(sql, &[&WRITE_LOCK]) {
            tracing::warn!(err = %super::describe(&e), "metadata database: releasing the writers' lock");
        }
    }
}

/// The pause before attempt `attempt + 1`: random, up to 2 ms doubled per attempt made, at
/// most `MAX_BACKOFF` (full jitter: conflicting writers spread out instead of colliding again).
fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(2)
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    cap.mul_f64((random % 1024) as f64 / 1024.0)
}
