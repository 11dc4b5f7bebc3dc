//! The metadata store: every repository, tag, manifest revision, blob reference count and
//! upload session, in redb tables (see `tables`). Each request's state change is one write
//! transaction; reads are MVCC snapshots that never block writers.

pub mod blobs;
pub mod manifests;
pub mod notifications;
pub mod records;
pub mod referrers;
pub mod repos;
pub mod tables;
pub mod tags;
pub mod uploads;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, WriteTransaction,
};

use crate::error::Result;
use crate::migrations::{LATEST, MIGRATIONS, Migration};
use tables::*;

pub use records::{ManifestRecord, UploadRecord};

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
    Redb { path: String, source: redb::Error },
}

/// The open metadata database.
pub struct Meta {
    db: Database,
    /// Write transactions committed (non-durably) so far.
    committed: AtomicU64,
    /// Of those, how many a durable commit has covered.
    durable: AtomicU64,
    /// Held by the one thread making commits durable.
    flush: Mutex<()>,
}

/// Every table, opened for writing inside one transaction.
pub struct WriteTables<'txn> {
    pub repos: Table<'txn, &'static str, u64>,
    pub blobs: Table<'txn, &'static str, (u64, u64, u64)>,
    pub repo_blobs: Table<'txn, (&'static str, &'static str), u64>,
    pub blob_links: Table<'txn, (&'static str, &'static str), ()>,
    pub manifests: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub tags: Table<'txn, (&'static str, &'static str), &'static str>,
    pub referrers: Table<'txn, (&'static str, &'static str, &'static str), ()>,
    pub uploads: Table<'txn, &'static str, &'static [u8]>,
    pub notifications: Table<'txn, (&'static str, u64), &'static [u8]>,
}

/// Every table, opened in one read snapshot.
pub struct ReadTables {
    pub repos: ReadOnlyTable<&'static str, u64>,
    pub blobs: ReadOnlyTable<&'static str, (u64, u64, u64)>,
    pub repo_blobs: ReadOnlyTable<(&'static str, &'static str), u64>,
    pub blob_links: ReadOnlyTable<(&'static str, &'static str), ()>,
    pub manifests: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    pub tags: ReadOnlyTable<(&'static str, &'static str), &'static str>,
    pub referrers: ReadOnlyTable<(&'static str, &'static str, &'static str), ()>,
    pub uploads: ReadOnlyTable<&'static str, &'static [u8]>,
    pub notifications: ReadOnlyTable<(&'static str, u64), &'static [u8]>,
}

impl Meta {
    /// Opens (creating if needed) the store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Meta, OpenError> {
        Self::open_with(path, MIGRATIONS)
    }

    /// Opens the store with an explicit migration list (tests use synthetic lists).
    pub fn open_with(path: &Path, steps: &[Migration]) -> Result<Meta, OpenError> {
        let p = path.display().to_string();
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse { path: p.clone() },
            e => OpenError::Redb {
                path: p.clone(),
                source: e.into(),
            },
        })?;
        migrate(&db, steps).map_err(|e| match e {
            MigrateError::Newer(found) => OpenError::NewerSchema {
                path: p.clone(),
                found,
                supported: steps.last().map_or(0, |s| s.version),
            },
            MigrateError::Redb(source) => OpenError::Redb { path: p, source },
        })?;
        Ok(Meta {
            db,
            committed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flush: Mutex::new(()),
        })
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        Ok(t.get("schema_version")?.map_or(0, |v| v.value()))
    }

    /// Runs `f` in one write transaction; commits on `Ok`, rolls back on `Err`. Returns only
    /// once the commit is durable.
    ///
    /// Group commit: the transaction commits without an fsync, then waits for a durable commit
    /// made after it. One waiting thread makes an empty `Durability::Immediate` commit, which
    /// persists every commit before it, while the others wait for it; so concurrent writers
    /// share one fsync instead of queueing for one each.
    pub fn write<T>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<T>) -> Result<T> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let out = {
            let mut t = WriteTables::open(&txn)?;
            f(&mut t)
        };
        match out {
            Ok(v) => {
                let start = std::time::Instant::now();
                txn.commit()?;
                let seq = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
                self.make_durable(seq)?;
                crate::ops::metrics::record_commit(start.elapsed());
                Ok(v)
            }
            Err(e) => {
                txn.abort()?;
                Err(e)
            }
        }
    }

    /// Returns once commit number `seq` is durable, making it so if nobody else is.
    fn make_durable(&self, seq: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _flusher = self.flush.lock().unwrap_or_else(|e| e.into_inner());
        if self.durable.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        // Every commit counted here finished before this transaction can begin.
        let target = self.committed.load(Ordering::Acquire);
        let txn = self.db.begin_write()?;
        txn.commit()?;
        self.durable.store(target, Ordering::Release);
        Ok(())
    }

    /// Runs `f` on a consistent read snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTables) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        let t = ReadTables {
            repos: txn.open_table(REPOSITORIES)?,
            blobs: txn.open_table(BLOBS)?,
            repo_blobs: txn.open_table(REPO_BLOBS)?,
            blob_links: txn.open_table(BLOB_LINKS)?,
            manifests: txn.open_table(MANIFESTS)?,
            tags: txn.open_table(TAGS)?,
            referrers: txn.open_table(REFERRERS)?,
            uploads: txn.open_table(UPLOADS)?,
            notifications: txn.open_table(NOTIFICATIONS)?,
        };
        f(&t)
    }
}

impl<'txn> WriteTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(WriteTables {
            repos: txn.open_table(REPOSITORIES)?,
            blobs: txn.open_table(BLOBS)?,
            repo_blobs: txn.open_table(REPO_BLOBS)?,
            blob_links: txn.open_table(BLOB_LINKS)?,
            manifests: txn.open_table(MANIFESTS)?,
            tags: txn.open_table(TAGS)?,
            referrers: txn.open_table(REFERRERS)?,
            uploads: txn.open_table(UPLOADS)?,
            notifications: txn.open_table(NOTIFICATIONS)?,
        })
    }
}

enum MigrateError {
    Newer(u64),
    Redb(redb::Error),
}

impl<E: Into<redb::Error>> From<E> for MigrateError {
    fn from(e: E) -> Self {
        MigrateError::Redb(e.into())
    }
}

/// Applies every step newer than the store's version in one transaction.
fn migrate(db: &Database, steps: &[Migration]) -> Result<(), MigrateError> {
    let latest = steps.last().map_or(0, |s| s.version);
    let txn = db.begin_write()?;
    let current = {
        let meta = txn.open_table(META)?;
        meta.get("schema_version")?.map_or(0, |v| v.value())
    };
    if current > latest {
        txn.abort()?;
        return Err(MigrateError::Newer(current));
    }
    if current == latest {
        txn.abort()?;
        return Ok(());
    }
    for step in steps.iter().filter(|s| s.version > current) {
        tracing::info!(
            version = step.version,
            step = step.name,
            "migrating metadata store"
        );
        (step.apply)(&txn)?;
    }
    txn.open_table(META)?.insert("schema_version", latest)?;
    txn.commit()?;
    Ok(())
}

/// The schema version this kura writes.
pub const SCHEMA_VERSION: u64 = LATEST;

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
