//! The metadata store: every repository, tag, manifest revision, blob reference count and
//! upload session, in redb tables (see `tables`). Each request's state change is one write
//! transaction; reads are MVCC snapshots that never block writers.

pub mod blobs;
pub mod deferred;
pub mod manifests;
pub mod mirror;
pub mod notifications;
mod paging;
pub mod pg;
pub mod records;
pub mod redb;
pub mod referrers;
pub mod repos;
pub mod rows;
pub mod settings;
pub mod stats;
pub mod tables;
pub mod tags;
pub mod uploads;
pub mod usage;

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::migrations::{LATEST, Migration};

pub use records::{ManifestRecord, UploadRecord};
pub use rows::{ReadTx, WriteTx};

use self::pg::PgMeta;
use self::redb::{RedbCommitted, RedbMeta, RedbRead, RedbWrite};

/// One write transaction over every table, whatever the backend.
pub type WriteTables<'a> = dyn WriteTx + 'a;
/// One read snapshot of every table, whatever the backend.
pub type ReadTables<'a> = dyn ReadTx + 'a;

/// Why the metadata store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "metadata store {path} was written by a newer kura (schema version {found}; this kura supports up to {supported}); upgrade kura to open it"
    )]
    NewerSchema {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error("metadata store {path} is in use by another process (is a kura server running on it?)")]
    InUse { path: String },
    #[error("cannot open metadata store {path}: {source}")]
    Redb { path: String, source: ::redb::Error },
}

/// The open metadata store: redb (one node; the default) or PostgreSQL (a cluster).
pub struct Meta {
    backend: Backend,
    /// PostgreSQL: write transactions committed through this handle (redb counts its own).
    pg_commits: AtomicU64,
    /// PostgreSQL: told the latency of every commit (redb keeps its own observer).
    pg_observer: OnceLock<fn(Duration)>,
}

enum Backend {
    Redb(RedbMeta),
    Pg(PgMeta),
}

/// A write transaction that is committed and visible, but maybe not yet durable.
#[must_use = "a write is acknowledged only once `durable` returns"]
pub enum Committed<'a, T> {
    /// redb commits without an fsync, then waits for a group commit (`RedbMeta::write`).
    Redb(RedbCommitted<'a, T>),
    /// PostgreSQL returns from COMMIT once the commit is durable.
    Durable(T),
}

impl<T> Committed<'_, T> {
    /// Returns the transaction's result once it is durable (see `Meta::write`).
    pub fn durable(self) -> Result<T> {
        match self {
            Committed::Redb(c) => c.durable(),
            Committed::Durable(v) => Ok(v),
        }
    }
}

/// Generations handed out on PostgreSQL, where other nodes commit too (`Meta::generation`).
static PG_GENERATION: AtomicU64 = AtomicU64::new(0);

impl Meta {
    fn with(backend: Backend) -> Meta {
        Meta {
            backend,
            pg_commits: AtomicU64::new(0),
            pg_observer: OnceLock::new(),
        }
    }

    /// Opens (creating if needed) the redb store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Meta, OpenError> {
        RedbMeta::open(path).map(|m| Meta::with(Backend::Redb(m)))
    }

    /// Opens the redb store with an explicit migration list (tests use synthetic lists).
    pub fn open_with(path: &Path, steps: &[Migration]) -> Result<Meta, OpenError> {
        RedbMeta::open_with(path, steps).map(|m| Meta::with(Backend::Redb(m)))
    }

    /// Connects to the PostgreSQL database at `url` (migrating it) with a pool of up to
    /// `pool_size` connections.
    pub fn open_postgres(url: &str, pool_size: u32) -> Result<Meta, pg::PgOpenError> {
        PgMeta::open(url, pool_size).map(|m| Meta::with(Backend::Pg(m)))
    }

    /// Where the metadata lives, for messages (no password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Redb(m) => m.path().display().to_string(),
            Backend::Pg(m) => m.target().to_string(),
        }
    }

    /// True when the metadata is in PostgreSQL (shared by the nodes of a cluster).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// Reports the latency of every durable write to `observe` (the first observer set stays).
    pub fn observe_commits(&self, observe: fn(Duration)) {
        match &self.backend {
            Backend::Redb(m) => m.observe_commits(observe),
            Backend::Pg(_) => {
                let _ = self.pg_observer.set(observe);
            }
        }
    }

    /// Write transactions committed since the store was opened (tests count durable writes).
    pub fn commit_count(&self) -> u64 {
        match &self.backend {
            Backend::Redb(m) => m.commit_count(),
            Backend::Pg(_) => self.pg_commits.load(Ordering::Acquire),
        }
    }

    /// Changes whenever what a read may see changes. Read it *before* a snapshot: while it is
    /// unchanged, whatever was derived from that snapshot is still current (caches of derived
    /// facts key on it). On PostgreSQL other nodes commit too, so every call returns a new
    /// value: such caches are bypassed.
    pub fn generation(&self) -> (u64, u64) {
        match &self.backend {
            Backend::Redb(m) => m.generation(),
            Backend::Pg(_) => (u64::MAX, PG_GENERATION.fetch_add(1, Ordering::AcqRel)),
        }
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u64> {
        match &self.backend {
            Backend::Redb(m) => m.schema_version(),
            Backend::Pg(m) => m.read(|tx| {
                let r = tx.query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    &[],
                )?;
                Ok(r.get::<_, i64>(0) as u64)
            }),
        }
    }

    /// Runs `f` in one write transaction; commits on `Ok`, rolls back on `Err`. Returns only
    /// once the commit is durable. `f` may run more than once (PostgreSQL re-runs a
    /// transaction that conflicted with another), so it must only act through `t`.
    pub fn write<T>(&self, f: impl FnMut(&mut WriteTables<'_>) -> Result<T>) -> Result<T> {
        self.commit(f)?.durable()
    }

    /// Like `write`, but returns as soon as the commit is visible to later transactions; the
    /// caller may release its locks and then wait with `Committed::durable` before replying.
    pub fn commit<T>(
        &self,
        mut f: impl FnMut(&mut WriteTables<'_>) -> Result<T>,
    ) -> Result<Committed<'_, T>> {
        match &self.backend {
            Backend::Redb(m) => m.commit(f).map(Committed::Redb),
            Backend::Pg(m) => {
                let start = Instant::now();
                let v = m.write(|tx| {
                    let mut tx = tx;
                    f(&mut tx)
                })?;
                self.pg_commits.fetch_add(1, Ordering::AcqRel);
                if let Some(observe) = self.pg_observer.get() {
                    observe(start.elapsed());
                }
                Ok(Committed::Durable(v))
            }
        }
    }

    /// Runs `f` on a consistent read snapshot.
    pub fn read<T>(&self, mut f: impl FnMut(&ReadTables<'_>) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Redb(m) => m.read(f),
            Backend::Pg(m) => m.read(|tx| f(&tx)),
        }
    }

    /// Runs `f` on the redb tables of one read snapshot (a backup copies them row by row).
    pub fn read_redb<T>(&self, f: impl FnOnce(&RedbRead) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Redb(m) => m.read_redb(f),
            Backend::Pg(_) => Err(redb_only()),
        }
    }

    /// Runs `f` on the redb tables of one write transaction (a backup's copy).
    pub fn write_redb<T>(&self, f: impl FnMut(&mut RedbWrite<'_>) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Redb(m) => m.write_redb(f),
            Backend::Pg(_) => Err(redb_only()),
        }
    }
}

fn redb_only() -> Error {
    Error::internal(
        "metadata store",
        "this operation copies redb files; a PostgreSQL-backed cluster is backed up with pg_dump and the bucket's own versioning",
    )
}

/// The schema version this kura writes.
pub const SCHEMA_VERSION: u64 = LATEST;

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod observer_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    fn count(_: Duration) {
        SEEN.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn every_durable_write_is_reported_to_the_observer_the_store_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
        meta.write(|t| repos::ensure(t, "before")).unwrap();
        assert_eq!(
            SEEN.load(Ordering::SeqCst),
            0,
            "no observer, nothing reported"
        );
        meta.observe_commits(count);
        for name in ["a", "b", "c"] {
            meta.write(|t| repos::ensure(t, name)).unwrap();
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 3);
    }
}
