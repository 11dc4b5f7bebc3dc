//! Online garbage collection. It runs inside the server while pushes and pulls go on:
//!
//! 1. **Manifests** (`manifests.rs`): per repository, revisions nothing keeps alive are removed
//!    — referrers whose subject is gone, and with `delete_untagged` every revision that is not
//!    tagged, not a child of a live index and not a referrer of a live manifest. Liveness is
//!    recomputed inside the removing write transaction, so a tag or index pushed meanwhile wins.
//! 2. **Blobs** (`blobs.rs`): rows with a zero reference count untouched for the grace period
//!    are removed with their links in one transaction per batch that re-checks them, and their
//!    files are unlinked after it commits, under the per-digest locks (`registry::locks`).
//! 3. **Uploads** (`uploads.rs`): sessions idle longer than the maximum age, and stray temp
//!    files, are removed.
//! 4. **Orphan files** (`blobs.rs`): files in `blobs/` with no row (left by a crash between a
//!    rename and its commit) older than the grace period are unlinked.
//! 5. **Empty repositories** (`repos.rs`): repositories with no tag, manifest or blob link
//!    leave `_catalog`.

pub(crate) mod blobs;
mod manifests;
mod repos;
pub mod retention;
mod schedule;
mod uploads;

pub use schedule::spawn_periodic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Code, Error, Result};
use crate::registry::Registry;

/// What a collection run does.
#[derive(Clone)]
pub struct GcOptions {
    /// Unreferenced items younger than this are kept.
    pub grace: Duration,
    /// Also collect untagged manifests that no live index or subject keeps alive.
    pub delete_untagged: bool,
    /// Report what would go, change nothing.
    pub dry_run: bool,
    /// Upload sessions idle longer than this are purged.
    pub upload_max_age: Duration,
    /// Blobs removed per transaction.
    pub batch_size: usize,
    /// The shortest grace this run may use: `gc.min_online_grace` for collections on a store
    /// a server is serving (pushes in flight rely on their blobs), zero offline.
    pub min_grace: Duration,
    /// Called inside each blob batch's removal transaction, before it commits (tests use it to
    /// force interleavings).
    pub in_removal: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Called after each blob batch's removal is durable and before its files are unlinked
    /// (tests use it to force interleavings).
    pub after_commit: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(24 * 3600),
            delete_untagged: false,
            dry_run: false,
            upload_max_age: Duration::from_secs(168 * 3600),
            batch_size: 512,
            min_grace: Duration::ZERO,
            in_removal: None,
            after_commit: None,
        }
    }
}

impl std::fmt::Debug for GcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcOptions")
            .field("grace", &self.grace)
            .field("delete_untagged", &self.delete_untagged)
            .field("dry_run", &self.dry_run)
            .field("upload_max_age", &self.upload_max_age)
            .field("batch_size", &self.batch_size)
            .field("min_grace", &self.min_grace)
            .finish()
    }
}

impl GcOptions {
    /// Refuses a grace below the floor (400 from `POST /admin/gc`, an error from `kura gc`).
    pub fn check(&self) -> Result<()> {
        if self.grace >= self.min_grace {
            return Ok(());
        }
        Err(Error::new(
            Code::Unsupported,
            format!(
                "grace {} is below gc.min_online_grace ({}): collecting a live store with it would delete pushes in flight; stop the server and run `kura gc --root DIR` for a shorter grace",
                humantime::format_duration(self.grace),
                humantime::format_duration(self.min_grace)
            ),
        )
        .with_status(actix_web::http::StatusCode::BAD_REQUEST))
    }
}

/// What a collection run removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub manifests_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub uploads_purged: u64,
    pub orphan_files_removed: u64,
    /// Repositories that held nothing any more.
    #[serde(default)]
    pub repositories_removed: u64,
    /// Tags removed by retention (`policies.retention`).
    #[serde(default)]
    pub tags_removed: u64,
    pub duration_ms: u64,
    /// Every removed item as `repo@digest` (manifests), `digest` (blobs), `upload <id>`,
    /// `orphan <path>`, `repository <name>`, `tag <repo>:<tag>` (retention).
    pub items: Vec<String>,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        write!(
            f,
            "{verb} {} manifest(s), {} blob(s) ({} bytes), {} upload(s), {} orphan file(s), {} empty repositories, {} tag(s) by retention in {} ms",
            self.manifests_removed,
            self.blobs_removed,
            self.bytes_freed,
            self.uploads_purged,
            self.orphan_files_removed,
            self.repositories_removed,
            self.tags_removed,
            self.duration_ms
        )
    }
}

/// Runs one collection over `registry` (blocking; call from a blocking thread).
pub fn collect(registry: &Registry, opts: &GcOptions) -> Result<GcReport> {
    opts.check()?;
    let _running = registry.gc_lock();
    let start = Instant::now();
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..GcReport::default()
    };
    // Retention first: the revisions it untags are collected in this same run.
    retention::apply(registry, opts.dry_run, crate::meta::now_secs(), &mut report)?;
    manifests::collect(registry, opts, &mut report)?;
    blobs::collect(registry, opts, &mut report)?;
    uploads::purge(registry, opts, &mut report)?;
    blobs::collect_orphan_files(registry, opts, &mut report)?;
    repos::collect(registry, opts, &mut report)?;
    report.duration_ms = start.elapsed().as_millis() as u64;
    crate::ops::metrics::record_gc(&report);
    tracing::info!(
        target: "kura::gc",
        dry_run = report.dry_run,
        manifests = report.manifests_removed,
        blobs = report.blobs_removed,
        bytes_freed = report.bytes_freed,
        uploads = report.uploads_purged,
        orphans = report.orphan_files_removed,
        repositories = report.repositories_removed,
        tags = report.tags_removed,
        duration_ms = report.duration_ms,
        "garbage collection finished"
    );
    Ok(report)
}

/// Seconds in `d`, for comparisons with the tables' unix-second timestamps.
/// True when something last touched at `touched` is older than `grace` at `now`. Times are
/// whole seconds (rounded down), so a difference of `n` seconds proves only more than `n - 1`
/// elapsed: the difference must exceed the grace rounded up. A zero grace takes everything.
fn expired(touched: u64, now: u64, grace: Duration) -> bool {
    grace.is_zero() || now.saturating_sub(touched) > grace.as_secs_f64().ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::expired;
    use std::time::Duration;

    #[test]
    fn grace_is_never_shorter_than_configured_despite_whole_second_timestamps() {
        let g = Duration::from_secs(1);
        // Touched at 100.999 s (recorded 100), now 101.000 s: 1 ms old, not expired.
        assert!(!expired(100, 101, g));
        // Recorded 100 (at most 100.999), now 102.0: more than 1 s old.
        assert!(expired(100, 102, g));
        // A fractional grace rounds up.
        assert!(!expired(100, 102, Duration::from_millis(1500)));
        assert!(expired(100, 103, Duration::from_millis(1500)));
        // Zero takes everything, even what was touched this second.
        assert!(expired(100, 100, Duration::ZERO));
        assert!(!expired(100, 100 + 86_400, Duration::from_secs(86_400)));
    }
}
