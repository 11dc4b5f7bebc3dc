//! Versioned schema migrations: SQL files under `migrations/pg/`, compiled in, applied in
//! order and recorded in `schema_migrations`. Each step runs in a transaction of its own that
//! first takes a transaction-level advisory lock, so nodes starting together apply each step
//! exactly once: the others wait for the lock, then find the step recorded.

use tokio_postgres::IsolationLevel;

use super::client::Client;

use super::PgOpenError;
use super::pool::{Target, describe};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Versions increase along the list; a database records the ones applied.
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every step this kura knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "schema",
    sql: include_str!("../../../migrations/pg/0001_schema.sql"),
}];

/// The advisory lock key every migrating kura takes ("kuramigr"). Advisory locks are per
/// database, so separate databases on one server do not wait for each other.
const LOCK_KEY: i64 = 0x6b75_7261_6d69_6772;

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Applies the steps of `steps` the database has not recorded; refuses a database that
/// records a version newer than the last of `steps`.
pub(super) fn run(
    client: &mut Client,
    target: &Target,
    steps: &[Migration],
) -> Result<(), PgOpenError> {
    debug_assert!(steps.windows(2).all(|w| w[0].version < w[1].version));
    let supported = steps.last().map_or(0, |s| s.version);
    let fail = |version: i64, name: &str, e: tokio_postgres::Error| PgOpenError::Migrate {
        target: target.name.clone(),
        version,
        name: name.to_string(),
        reason: target.redact(describe(&e)),
    };

    // The ledger, and the newest version recorded in it.
    let found = locked(client, |tx| {
        tx.batch_execute(LEDGER)?;
        let row = tx.query_one("SELECT max(version) FROM schema_migrations", &[])?;
        Ok(row.get::<_, Option<i64>>(0).unwrap_or(0))
    })
    .map_err(|e| fail(0, "schema_migrations", e))?;
    if found > supported {
        return Err(PgOpenError::NewerSchema {
            target: target.name.clone(),
            found: found as u64,
            supported: supported as u64,
        });
    }

    for step in steps {
        locked(client, |tx| {
            let done = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[&step.version],
                )?
                .is_some();
            if !done {
                tx.batch_execute(step.sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[&step.version, &step.name],
                )?;
                tracing::info!(
                    database = %target.name,
                    version = step.version,
                    name = step.name,
                    "applied metadata schema migration"
                );
            }
            Ok(())
        })
        .map_err(|e| fail(step.version, step.name, e))?;
    }
    Ok(())
}

/// Runs `f` in a READ COMMITTED transaction holding the migration lock, and commits. READ
/// COMMITTED: each statement after the lock sees what the previous holder committed.
fn locked<T>(
    client: &mut Client,
    f: impl FnOnce(&mut super::client::Transaction<'_>) -> Result<T, tokio_postgres::Error>,
) -> Result<T, tokio_postgres::Error> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    let out = f(&mut tx)?;
    tx.commit()?;
    Ok(out)
}
