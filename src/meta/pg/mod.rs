//! PostgreSQL as the metadata store of a cluster of kura nodes (`[metadata] kind =
//! "postgres"`, issue 13): the same tables as redb (`migrations/pg/`), reached through a pool
//! of synchronous connections. Like the redb store, its API is synchronous: call it from
//! any thread (`client.rs`: the connections run on a runtime of their own).
//!
//! Every write is one SERIALIZABLE transaction, run again from the start when PostgreSQL
//! reports a serialization failure or deadlock, so concurrent writers on any number of nodes
//! behave as if run one at a time, as redb's single writer does. A read is one REPEATABLE
//! READ snapshot.

mod blobs;
mod client;
mod deferred;
mod manifests;
mod migrate;
mod mirror;
mod notifications;
mod pool;
mod reach;
mod referrers;
mod repos;
mod retry;
mod rows_util;
mod settings;
mod tags;
mod tx;
mod uploads;
mod usage;

use tokio_postgres::IsolationLevel;

use crate::error::{Error, Result};
pub use client::Client;
pub use migrate::{MIGRATIONS, Migration};
pub use pool::{Target, describe};
pub use reach::RETRY_AFTER;
pub use retry::WRITE_ATTEMPTS;
use tx::Failure;
pub use tx::{Params, Tx, connection_lost};

/// Why the metadata database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("invalid metadata database URL: {reason}")]
    Url { reason: String },
    #[error("cannot connect to metadata database {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error(
        "metadata store {target} was written by a newer kura (schema version {found}; this kura supports up to {supported}); upgrade kura to open it"
    )]
    NewerSchema {
        target: String,
        found: u64,
        supported: u64,
    },
    #[error(
        "cannot migrate metadata database {target} to schema version {version} ({name}): {reason}"
    )]
    Migrate {
        target: String,
        version: i64,
        name: String,
        reason: String,
    },
}

/// The open metadata database: a pool of connections to a migrated schema.
pub struct PgMeta {
    pool: pool::Pool,
    /// `postgres://user@host:port/db`, for messages (no password).
    target: String,
}

impl PgMeta {
    /// Connects to `url`, applies pending migrations and keeps a pool of up to `pool_size`
    /// connections.
    pub fn open(url: &str, pool_size: u32) -> Result<PgMeta, PgOpenError> {
        Self::open_with(url, pool_size, MIGRATIONS)
    }

    /// Opens with an explicit migration list (tests use synthetic lists).
    pub fn open_with(
        url: &str,
        pool_size: u32,
        steps: &[Migration],
    ) -> Result<PgMeta, PgOpenError> {
        let target = pool::Target::parse(url)?;
        let mut client = target.connect()?;
        migrate::run(&mut client, &target, steps)?;
        drop(client);
        Ok(PgMeta {
            pool: target.pool(pool_size)?,
            target: target.name,
        })
    }

    /// The database, as `postgres://user@host:port/db` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` in one SERIALIZABLE transaction and commits. On a serialization failure or
    /// deadlock (of a statement or of the commit) the transaction is rolled back and `f` run
    /// again, up to `WRITE_ATTEMPTS` times (see `retry.rs`); an error `f` returns otherwise
    /// rolls back and is returned. `f` must not start another write (nor wait for a thread
    /// that does): a retry holds the writers' lock, as redb's write transaction is held.
    pub fn write<T>(&self, f: impl FnMut(&Tx) -> Result<T>) -> Result<T> {
        retry::write(&self.pool, &self.target, f)
    }

    /// Runs `f` in one REPEATABLE READ, READ ONLY transaction: every statement sees the same
    /// snapshot, taken at its first statement. The BEGIN goes out with the first statement
    /// and the COMMIT is not waited for, so a read of one statement takes one round trip.
    /// When the connection turns out lost (it died idle in the pool), `f` runs again on
    /// another, up to once per pooled connection and one more.
    pub fn read<T>(&self, mut f: impl FnMut(&Tx) -> Result<T>) -> Result<T> {
        let mut lost = 0;
        loop {
            let mut conn = pool::checkout(&self.pool)?;
            let txn = conn
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start_with_first_statement();
            let tx = Tx::new(txn);
            let out = f(&tx);
            match (out, tx.failure()) {
                (Ok(v), Failure::None) => {
                    tx.finish_read();
                    return Ok(v);
                }
                (Err(e), Failure::Lost) if lost > self.pool.max_size() => return Err(e),
                (_, Failure::Lost) => lost += 1,
                (Err(e), _) => return Err(e),
                (Ok(_), _) => {
                    return Err(Error::internal(
                        "metadata database",
                        "a statement of a read failed and the read went on as if it had not",
                    ));
                }
            }
        }
    }
}
