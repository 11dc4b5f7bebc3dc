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

use super::tx::{self, Failure, Tx};
use crate::error::{Error, Result};

/// Attempts a write transaction gets before its conflicts are reported as an error (a retry
/// runs alone, so only writers outside kura or a deadlock can make it conflict again).
pub const WRITE_ATTEMPTS: u32 = 20;
/// The longest pause between two attempts (the pause grows from 2 ms, randomised).
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// The writers' advisory lock ("kurawrit"; per database, so shared by every node on it).
const WRITE_LOCK: i64 = 0x6b75_7261_7772_6974;

/// Runs `f` as described in the module's documentation; `target` names the database.
pub(super) fn write<T>(
    client: &mut Client,
    target: &str,
    mut f: impl FnMut(&Tx) -> Result<T>,
) -> Result<T> {
    for attempt in 1..=WRITE_ATTEMPTS {
        let held = WriteLock::take(client, attempt == 1)?;
        let outcome = once(held.client, &mut f)?;
        drop(held);
        if let Some(v) = outcome {
            return Ok(v);
        }
        if attempt < WRITE_ATTEMPTS {
            std::thread::sleep(backoff(attempt));
        }
    }
    Err(Error::internal(
        "metadata database",
        format!(
            "a write transaction on {target} still conflicted with concurrent ones after {WRITE_ATTEMPTS} attempts"
        ),
    ))
}

/// One attempt: its value once committed, `None` after a conflict (rolled back).
fn once<T>(client: &mut Client, f: &mut impl FnMut(&Tx) -> Result<T>) -> Result<Option<T>> {
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()?;
    let tx = Tx::new(txn);
    let out = f(&tx);
    match (out, tx.failure()) {
        // Whatever `f` made of it, a conflict means running it again.
        (_, Failure::Conflict) => Ok(None),
        (Err(e), _) => Err(e),
        (Ok(_), Failure::Other) => Err(Error::internal(
            "metadata database",
            "a statement failed and the transaction went on as if it had not; rolled back",
        )),
        (Ok(v), Failure::None) => match tx.commit() {
            Ok(()) => Ok(Some(v)),
            Err(e) if tx::is_conflict(&e) => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

/// The writers' lock, held by this session until dropped (also when `f` panics: a pooled
/// connection must not go back to the pool holding it).
struct WriteLock<'c> {
    client: &'c mut Client,
    shared: bool,
}

impl<'c> WriteLock<'c> {
    fn take(client: &'c mut Client, shared: bool) -> Result<WriteLock<'c>> {
        let sql = if shared {
            "SELECT pg_advisory_lock_shared($1)"
        } else {
            "SELECT pg_advisory_lock($1)"
        };
        client.execute(sql, &[&WRITE_LOCK])?;
        Ok(WriteLock { client, shared })
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        let sql = if self.shared {
            "SELECT pg_advisory_unlock_shared($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        // Fails only with the connection, whose session (and lock) is then gone.
        if let Err(e) = self.client.execute(sql, &[&WRITE_LOCK]) {
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
