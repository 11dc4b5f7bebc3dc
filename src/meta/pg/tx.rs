//! `Tx`: one open transaction, shared (`&Tx`) by the functions of a metadata operation for
//! reads and writes alike, and what became of its statements.

use std::cell::{Cell, RefCell};

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::client::Transaction;

use crate::error::{Code, Error, Result};

/// The worst that happened to a statement of a transaction so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    None,
    /// A serialization failure or deadlock (SQLSTATE 40001, 40P01): the whole transaction
    /// may be run again.
    Conflict,
    /// The connection was lost (closed, or its server process ended): nothing of the
    /// transaction was committed, so the whole of it may be run again on another connection.
    Lost,
    /// Any other error: the transaction is aborted and must not be committed.
    Other,
}

/// An open transaction. Statements run one at a time through its helpers; each borrows the
/// transaction only while it runs, so a `&Tx` can be handed to any number of functions.
pub struct Tx<'a> {
    txn: RefCell<Transaction<'a>>,
    failure: Cell<Failure>,
}

/// Statement parameters, as `postgres` takes them.
pub type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a> Tx<'a> {
    pub(super) fn new(txn: Transaction<'a>) -> Tx<'a> {
        Tx {
            txn: RefCell::new(txn),
            failure: Cell::new(Failure::None),
        }
    }

    /// Every row `sql` returns.
    pub fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let r = self.txn.borrow_mut().query(sql, params);
        r.map_err(|e| self.failed(e))
    }

    /// The one row `sql` returns, or none; more than one is an error.
    pub fn query_opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        let r = self.txn.borrow_mut().query_opt(sql, params);
        r.map_err(|e| self.failed(e))
    }

    /// The one row `sql` returns; none or more than one is an error.
    pub fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<Row> {
        let r = self.txn.borrow_mut().query_one(sql, params);
        r.map_err(|e| self.failed(e))
    }

    /// Runs `sql`; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let r = self.txn.borrow_mut().execute(sql, params);
        r.map_err(|e| self.failed(e))
    }

    pub(super) fn failure(&self) -> Failure {
        self.failure.get()
    }

    /// Ends a read (see `Transaction::finish_read`).
    pub(super) fn finish_read(self) {
        self.txn.into_inner().finish_read()
    }

    /// Commits. The caller checks `failure` first: PostgreSQL answers COMMIT to a
    /// transaction a statement of which failed by rolling it back, without an error.
    pub(super) fn commit(self) -> std::result::Result<(), tokio_postgres::Error> {
        self.txn.into_inner().commit()
    }

    /// Records what `e` means for the transaction and converts it.
    fn failed(&self, e: tokio_postgres::Error) -> Error {
        if connection_lost(&e) && self.failure.get() == Failure::None {
            self.failure.set(Failure::Lost);
            return e.into();
        }
        if is_conflict(&e) {
            self.failure.set(Failure::Conflict);
            // Expected under contention and retried: not logged as an internal error.
            return Error::new(
                Code::Unknown,
                format!("metadata database: {}", super::describe(&e)),
            );
        }
        if self.failure.get() == Failure::None {
            self.failure.set(Failure::Other);
        }
        e.into()
    }
}

/// Whether `e` is a serialization failure or a deadlock, after which running the whole
/// transaction again may succeed.
pub(super) fn is_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Whether `e` means the connection is gone: closed, or its server process ending
/// (PostgreSQL shutting down or restarting, `pg_terminate_backend`): a transaction on it
/// was not committed, and a fresh connection may succeed.
pub fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN
        )
        || std::iter::successors(std::error::Error::source(e), |s| s.source())
            .any(|s| s.is::<std::io::Error>())
}
