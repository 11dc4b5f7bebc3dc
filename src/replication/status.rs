//! What replication has done, per push target and per pull source: pending events (read from
//! the queue table when asked), last success, last error, counts. Kept in memory: after a
//! restart the times start empty, the pending events are in the table.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ops::metrics;
use crate::registry::Registry;

/// An error and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    pub message: String,
    pub time: String,
}

/// One push target's state, as `GET /admin/replication` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    pub url: String,
    /// Events queued and not yet acknowledged by the target.
    pub pending: u64,
    /// Events applied (manifests copied, deletes done) since the server started.
    pub replicated: u64,
    /// Events dropped because the target can never accept them (e.g. deletes refused).
    pub dropped: u64,
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
}

/// What one sync of a pull source copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncCounts {
    /// Tags whose manifest was copied (or re-pointed).
    pub tags: u64,
    /// Manifests stored (children and referrers included).
    pub manifests: u64,
    /// Blobs stored (downloaded or mounted).
    pub blobs: u64,
    /// Tags already up to date.
    pub skipped: u64,
}

/// One pull source's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub url: String,
    /// Seconds between periodic syncs; 0 when only `kura sync` runs it.
    pub interval_secs: u64,
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
    /// What the last completed sync copied.
    pub last_copied: Option<SyncCounts>,
}

/// The body of `GET /admin/replication`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub push: Vec<TargetStatus>,
    pub pull: Vec<SourceStatus>,
}

/// The live state of every target and source.
#[derive(Debug, Default)]
pub struct Board {
    push: Mutex<BTreeMap<String, TargetStatus>>,
    pull: Mutex<BTreeMap<String, SourceStatus>>,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The queue endpoint of push target `name`.
pub fn endpoint(name: &str) -> String {
    format!("replication:{name}")
}

/// Events queued for push target `name`.
pub fn pending(registry: &Registry, name: &str) -> Result<u64> {
    let e = endpoint(name);
    registry
        .meta()
        .read(|t| crate::meta::notifications::queued(t, &e))
}

impl Board {
    /// Registers a push target.
    pub fn add_target(&self, name: &str, url: &str) {
        self.push.lock().expect("status lock").insert(
            name.into(),
            TargetStatus {
                name: name.into(),
                url: url.into(),
                ..Default::default()
            },
        );
    }

    /// Registers a pull source.
    pub fn add_source(&self, name: &str, url: &str, interval_secs: u64) {
        self.pull.lock().expect("status lock").insert(
            name.into(),
            SourceStatus {
                name: name.into(),
                url: url.into(),
                interval_secs,
                ..Default::default()
            },
        );
    }

    fn target(&self, name: &str, f: impl FnOnce(&mut TargetStatus)) {
        if let Some(t) = self.push.lock().expect("status lock").get_mut(name) {
            f(t);
        }
    }

    fn source(&self, name: &str, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.pull.lock().expect("status lock").get_mut(name) {
            f(s);
        }
    }

    /// Target `name` acknowledged an event that copied `manifests` manifests.
    pub fn replicated(&self, name: &str, manifests: u64) {
        self.target(name, |t| {
            t.replicated += 1;
            t.last_success = Some(now());
        });
        metrics::record_replicated("push", name, manifests);
    }

    /// Target `name` failed an event (retried unless `dropped`).
    pub fn target_failed(&self, name: &str, message: String, dropped: bool) {
        self.target(name, |t| {
            t.dropped += u64::from(dropped);
            t.last_error = Some(LastError {
                message,
                time: now(),
            });
        });
        metrics::record_replication_error("push", name);
    }

    /// A sync of source `name` finished.
    pub fn synced(&self, name: &str, counts: SyncCounts) {
        self.source(name, |s| {
            s.last_success = Some(now());
            s.last_copied = Some(counts);
        });
        metrics::record_replicated("pull", name, counts.manifests);
    }

    /// A sync of source `name` failed.
    pub fn sync_failed(&self, name: &str, message: String) {
        self.source(name, |s| {
            s.last_error = Some(LastError {
                message,
                time: now(),
            });
        });
        metrics::record_replication_error("pull", name);
    }

    /// Every target (with its pending count read now) and source.
    pub fn report(&self, registry: &Registry) -> Result<Report> {
        let mut push: Vec<TargetStatus> = self
            .push
            .lock()
            .expect("status lock")
            .values()
            .cloned()
            .collect();
        for t in &mut push {
            t.pending = pending(registry, &t.name)?;
            metrics::set_replication_pending(&t.name, t.pending);
        }
        let pull = self
            .pull
            .lock()
            .expect("status lock")
            .values()
            .cloned()
            .collect();
        Ok(Report { push, pull })
    }
}
