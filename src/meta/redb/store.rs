//! The redb metadata store: one database file, one writer at a time, group commit (see
//! `RedbMeta::write`), and a reopen after an I/O error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::{RedbRead, RedbWrite};
use crate::error::{Error, Result};
use crate::meta::tables::META;
use crate::meta::{OpenError, ReadTables, WriteTables};
use crate::migrations::{MIGRATIONS, Migration};

/// The open redb metadata database.
pub struct RedbMeta {
    path: PathBuf,
    /// The database; `None` only between closing it after an I/O error and reopening it.
    db: RwLock<Option<Arc<Database>>>,
    /// Commit numbers lost when the database was reopened after an I/O error (committed
    /// without an fsync, never made durable), as inclusive ranges; `any_lost` once there is one.
    lost: Mutex<Vec<(u64, u64)>>,
    any_lost: AtomicBool,
    /// Write transactions committed (non-durably) so far.
    committed: AtomicU64,
    /// Times the database was reopened after an I/O error (which may lose commits).
    reopens: AtomicU64,
    /// Of those, how many a durable commit has covered.
    durable: AtomicU64,
    /// Held by the one thread making commits durable.
    flush: Mutex<()>,
    /// Told the latency of every durable write (set by whoever observes the store, e.g. the
    /// metrics of `ops`); the store itself knows nothing about metrics.
    on_commit: std::sync::OnceLock<fn(Duration)>,
}

/// A write transaction that is committed and visible, but maybe not yet durable.
#[must_use = "a write is acknowledged only once `durable` returns"]
pub struct RedbCommitted<'a, T> {
    meta: &'a RedbMeta,
    seq: u64,
    start: Instant,
    value: T,
}

impl<T> RedbCommitted<'_, T> {
    /// Returns the transaction's result once it is durable (see `Meta::write`).
    pub fn durable(self) -> Result<T> {
        self.meta.make_durable(self.seq)?;
        if let Some(observe) = self.meta.on_commit.get() {
            observe(self.start.elapsed());
        }
        Ok(self.value)
    }
}

impl RedbMeta {
    /// Opens (creating if needed) the store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<RedbMeta, OpenError> {
        Self::open_with(path, MIGRATIONS)
    }

    /// Reports the latency of every durable write to `observe` (the first observer set stays).
    pub fn observe_commits(&self, observe: fn(Duration)) {
        let _ = self.on_commit.set(observe);
    }

    /// Opens the store with an explicit migration list (tests use synthetic lists).
    pub fn open_with(path: &Path, steps: &[Migration]) -> Result<RedbMeta, OpenError> {
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
        Ok(RedbMeta {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            lost: Mutex::new(Vec::new()),
            any_lost: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flush: Mutex::new(()),
            on_commit: std::sync::OnceLock::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions committed since the store was opened (tests count durable writes).
    pub fn commit_count(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Changes whenever what a read may see changes: a commit, or a reopen after an I/O error
    /// (which can lose commits). Read it *before* a snapshot: while it is unchanged, whatever
    /// was derived from that snapshot is still current (caches of derived facts key on it).
    pub fn generation(&self) -> (u64, u64) {
        (
            self.reopens.load(Ordering::Acquire),
            self.committed.load(Ordering::Acquire),
        )
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u64> {
        let db = self.db()?;
        let txn = db.begin_read()?;
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
    pub fn write<T>(&self, f: impl FnMut(&mut WriteTables<'_>) -> Result<T>) -> Result<T> {
        self.commit(f)?.durable()
    }

    /// Like `write`, but returns as soon as the commit is visible to later transactions; the
    /// caller may release its locks and then wait with `Committed::durable` before replying.
    pub fn commit<T>(
        &self,
        mut f: impl FnMut(&mut WriteTables<'_>) -> Result<T>,
    ) -> Result<RedbCommitted<'_, T>> {
        self.commit_with(|txn| f(&mut RedbWrite::open(txn)?))
    }

    fn commit_with<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T>,
    ) -> Result<RedbCommitted<'_, T>> {
        let mut db = self.db()?;
        let mut txn = match db.begin_write() {
            Err(e) if is_previous_io(&e) => {
                // Let go of the handle before waiting for the flush lock: the reopen waits
                // for every handle.
                let failed = Arc::downgrade(&db);
                drop(db);
                let flush = self.flush.lock().unwrap_or_else(|e| e.into_inner());
                self.reopen(&failed, &flush)?;
                drop(flush);
                db = self.db()?;
                db.begin_write()?
            }
            r => r?,
        };
        txn.set_durability(Durability::None)?;
        let out = f(&txn);
        match out {
            Ok(value) => {
                let start = Instant::now();
                txn.commit()?;
                let seq = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
                // A reopen waits for every handle on the old database before it counts what
                // was lost, so the commit above is counted by then.
                drop(db);
                Ok(RedbCommitted {
                    meta: self,
                    seq,
                    start,
                    value,
                })
            }
            Err(e) => {
                txn.abort()?;
                Err(e)
            }
        }
    }

    /// Returns once commit number `seq` is durable, making it so if nobody else is.
    fn make_durable(&self, seq: u64) -> Result<()> {
        if self.is_durable(seq)? {
            return Ok(());
        }
        let flusher = self.flush.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_durable(seq)? {
            return Ok(());
        }
        // Every commit counted here finished before this transaction can begin.
        let target = self.committed.load(Ordering::Acquire);
        let db = self.db()?;
        let txn = match db.begin_write() {
            Err(e) if is_previous_io(&e) => {
                let failed = Arc::downgrade(&db);
                drop(db);
                self.reopen(&failed, &flusher)?;
                return self.is_durable(seq).map(|_| ());
            }
            r => r?,
        };
        txn.commit()?;
        self.durable.store(target, Ordering::Release);
        Ok(())
    }

    /// Whether commit `seq` is durable; an error if it was lost in a reopen.
    fn is_durable(&self, seq: u64) -> Result<bool> {
        let durable = self.durable.load(Ordering::Acquire);
        if self.any_lost.load(Ordering::Acquire)
            && self
                .lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|&(from, to)| (from..=to).contains(&seq))
        {
            return Err(Error::internal(
                "metadata store",
                "an I/O error (disk full?) undid this change before it was durable",
            ));
        }
        Ok(durable >= seq)
    }

    /// The open database, reopened first if a failed reopen left none.
    fn db(&self) -> Result<Arc<Database>> {
        if let Some(db) = &*self.db.read().unwrap_or_else(|e| e.into_inner()) {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(Arc::new(self.create()?));
        }
        Ok(slot.as_ref().expect("just set").clone())
    }

    fn create(&self) -> Result<Database> {
        Database::create(&self.path).map_err(|e| Error::internal("reopening metadata store", e))
    }

    /// Closes and reopens the database after `failed` reported an earlier I/O error: redb then
    /// refuses every write until it is reopened (a full disk would otherwise stop all writes
    /// until a restart). Commits that were not yet durable are lost and their writers get an
    /// error. Called with the flush lock held.
    fn reopen(&self, failed: &Weak<Database>, _flush: &MutexGuard<'_, ()>) -> Result<()> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        // (`failed` keeps its allocation, so a new database cannot share its address.)
        if slot
            .as_ref()
            .is_some_and(|db| !std::ptr::eq(Arc::as_ptr(db), failed.as_ptr()))
        {
            return Ok(()); // someone else already reopened it
        }
        tracing::warn!("metadata store had an I/O error (disk full?); reopening it");
        if let Some(old) = slot.take() {
            // Wait (bounded) for every other handle: writers hold theirs until their commit is
            // counted, readers until their snapshot ends.
            let weak = Arc::downgrade(&old);
            drop(old);
            let deadline = Instant::now() + Duration::from_secs(5);
            while weak.strong_count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let (durable, committed) = (
            self.durable.load(Ordering::Acquire),
            self.committed.load(Ordering::Acquire),
        );
        if committed > durable {
            self.lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((durable + 1, committed));
            self.any_lost.store(true, Ordering::Release);
            self.durable.store(committed, Ordering::Release);
        }
        *slot = Some(Arc::new(self.create()?));
        self.reopens.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Runs `f` on the redb tables of one read snapshot (a backup copies them row by row).
    pub fn read_redb<T>(&self, f: impl FnOnce(&RedbRead) -> Result<T>) -> Result<T> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        f(&RedbRead::open(&txn)?)
    }

    /// Runs `f` on the redb tables of one write transaction (a backup's copy, a restore).
    pub fn write_redb<T>(&self, mut f: impl FnMut(&mut RedbWrite<'_>) -> Result<T>) -> Result<T> {
        self.commit_with(|txn| f(&mut RedbWrite::open(txn)?))?
            .durable()
    }

    /// Runs `f` on a consistent read snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTables<'_>) -> Result<T>) -> Result<T> {
        // The handle is held until the snapshot ends, so a reopen waits for it.
        let db = self.db()?;
        let txn = db.begin_read()?;
        f(&RedbRead::open(&txn)?)
    }
}

fn is_previous_io(e: &redb::TransactionError) -> bool {
    matches!(
        e,
        redb::TransactionError::Storage(redb::StorageError::PreviousIo)
    )
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
