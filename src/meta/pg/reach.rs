//! Whether the metadata database can be reached, as the pool's own connection attempts say,
//! and the 503 a request gets while it cannot.
//!
//! The pool (r2d2) opens connections on threads of its own and, while a connect fails, tries
//! again in the background (the pause doubling up to half the pool's connection timeout); a
//! checkout only waits for a connection to turn up. `Tracked` wraps the connection manager
//! and notes each attempt's outcome: the latest one failed means the database is
//! unreachable, and a checkout that finds no connection then answers at once
//! instead of waiting out the checkout timeout. A pool that is merely busy (every connection
//! in use, the database fine) has no failed attempt, so its checkouts keep waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{Client, Manager};
use crate::error::Error;

/// What `Retry-After` says while the database is unreachable: the pool tries to reconnect at
/// least every second, so a client coming back after this finds it as soon as it is up.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The outcome of the pool's latest connection attempt.
#[derive(Default)]
pub(super) struct Reachability {
    /// When the latest attempt that finished had started, and its error if it failed.
    /// Attempts run side by side (one per missing connection): an attempt that started
    /// before the latest finished one is older news and changes nothing (one refused just
    /// before PostgreSQL came back must not mark it down after another got in).
    latest: Mutex<Option<(Instant, Option<String>)>>,
}

impl Reachability {
    /// The reason the database is unreachable, if the latest connection attempt failed.
    pub fn unreachable(&self) -> Option<String> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.as_ref().and_then(|(_, failed)| failed.clone())
    }

    fn note(&self, started: Instant, failed: Option<String>) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.as_ref().is_none_or(|(at, _)| *at <= started) {
            *latest = Some((started, failed));
        }
    }
}

/// The connection manager, noting each connection attempt's outcome in `reach`.
pub(super) struct Tracked {
    pub inner: Manager,
    pub reach: Arc<Reachability>,
}

impl r2d2::ManageConnection for Tracked {
    type Connection = Client;
    type Error = tokio_postgres::Error;

    fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let started = Instant::now();
        let c = self.inner.connect();
        let failed = c.as_ref().err().map(|e| {
            let why = super::pool::redact(&self.inner.config, super::pool::describe(e));
            tracing::warn!(err = %why, "metadata database: connecting failed");
            why
        });
        self.reach.note(started, failed);
        c
    }

    fn is_valid(&self, conn: &mut Client) -> Result<(), tokio_postgres::Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut Client) -> bool {
        self.inner.has_broken(conn)
    }
}

/// The 503 for a request that needs `target` (named without password) while it cannot be
/// reached; `why` is the connection error, already redacted.
pub(super) fn unavailable(target: &str, why: &str) -> Error {
    Error::unavailable(
        format!("the metadata database {target} is unreachable ({why}); retry shortly"),
        RETRY_AFTER,
    )
}
