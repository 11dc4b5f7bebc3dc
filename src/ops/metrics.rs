//! Prometheus metrics (OpenMetrics text at `/metrics`), kept in one process-wide registry.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::gc::GcReport;
use crate::registry::Registry;

/// Labels of request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of request latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// Labels of replication counters: `push` (to a target) or `pull` (from a source), and its name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicationLabels {
    pub direction: String,
    pub name: String,
}

/// Labels of the pending-events gauge: the push target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

/// Labels of the quota gauges: the scope (`repo:<name>` or `ns:<prefix>`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    pub scope: String,
}

/// Labels of the leadership gauge: the role (`gc`, `webhook:<name>`, `replication:<name>`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

/// Every metric kura exports.
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub uploads_in_progress: Gauge,
    pub repositories: Gauge,
    pub blobs: Gauge,
    pub blob_bytes: Gauge,
    pub manifests: Gauge,
    pub gc_runs: Counter,
    pub gc_blobs_removed: Counter,
    pub gc_manifests_removed: Counter,
    /// Tags removed by retention (`policies.retention`), in collections and on demand.
    pub retention_tags_removed: Counter,
    pub gc_bytes_freed: Counter,
    pub gc_duration: Histogram,
    pub commit_latency: Histogram,
    pub replicated_manifests: Family<ReplicationLabels, Counter>,
    pub replication_errors: Family<ReplicationLabels, Counter>,
    pub replication_pending: Family<TargetLabels, Gauge>,
    pub mirror: crate::mirror::metrics::MirrorMetrics,
    pub rate_limit: crate::policy::rate_limit::metrics::RateLimitMetrics,
    pub quota_used: Family<ScopeLabels, Gauge>,
    pub quota_limit: Family<ScopeLabels, Gauge>,
    pub signatures: crate::policy::signatures::metrics::SignatureMetrics,
    /// 1 for each role this node leads (`cluster::Leader`), 0 for those it follows.
    pub cluster_leader: Family<RoleLabels, Gauge>,
}

fn build() -> Metrics {
    let mut r = prometheus_client::registry::Registry::with_prefix("kura");
    let m = Metrics {
        requests: Family::default(),
        latency: Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.5, 14))
        }),
        bytes_received: Counter::default(),
        bytes_sent: Counter::default(),
        uploads_in_progress: Gauge::default(),
        repositories: Gauge::default(),
        blobs: Gauge::default(),
        blob_bytes: Gauge::default(),
        manifests: Gauge::default(),
        gc_runs: Counter::default(),
        gc_blobs_removed: Counter::default(),
        gc_manifests_removed: Counter::default(),
        retention_tags_removed: Counter::default(),
        gc_bytes_freed: Counter::default(),
        gc_duration: Histogram::new(exponential_buckets(0.001, 3.0, 12)),
        commit_latency: Histogram::new(exponential_buckets(0.00005, 2.5, 14)),
        replicated_manifests: Family::default(),
        replication_errors: Family::default(),
        replication_pending: Family::default(),
        quota_used: Family::default(),
        quota_limit: Family::default(),
        mirror: Default::default(),
        rate_limit: Default::default(),
        signatures: Default::default(),
        cluster_leader: Family::default(),
        registry: prometheus_client::registry::Registry::default(),
    };
    m.mirror.register(&mut r);
    m.rate_limit.register(&mut r);
    m.signatures.register(&mut r);
    r.register(
        "http_requests",
        "HTTP requests by method, route and status",
        m.requests.clone(),
    );
    r.register(
        "http_request_duration_seconds",
        "HTTP request latency by method and route",
        m.latency.clone(),
    );
    r.register(
        "http_received_bytes",
        "Request body bytes received",
        m.bytes_received.clone(),
    );
    r.register(
        "http_sent_bytes",
        "Response body bytes sent",
        m.bytes_sent.clone(),
    );
    r.register(
        "uploads_in_progress",
        "Open upload sessions (started, not finished, cancelled or purged)",
        m.uploads_in_progress.clone(),
    );
    r.register(
        "repositories",
        "Repositories stored",
        m.repositories.clone(),
    );
    r.register(
        "blobs",
        "Blob files stored (manifests included)",
        m.blobs.clone(),
    );
    r.register(
        "blob_bytes",
        "Bytes of blob files stored",
        m.blob_bytes.clone(),
    );
    r.register(
        "manifests",
        "Manifest revisions stored",
        m.manifests.clone(),
    );
    r.register("gc_runs", "Garbage collection runs", m.gc_runs.clone());
    r.register(
        "gc_blobs_removed",
        "Blobs removed by garbage collection",
        m.gc_blobs_removed.clone(),
    );
    r.register(
        "gc_manifests_removed",
        "Manifests removed by garbage collection",
        m.gc_manifests_removed.clone(),
    );
    r.register(
        "retention_tags_removed",
        "Tags removed by retention rules",
        m.retention_tags_removed.clone(),
    );
    r.register(
        "gc_freed_bytes",
        "Bytes freed by garbage collection",
        m.gc_bytes_freed.clone(),
    );
    r.register(
        "gc_duration_seconds",
        "Garbage collection run time",
        m.gc_duration.clone(),
    );
    r.register(
        "meta_commit_duration_seconds",
        "Metadata write transaction commit latency",
        m.commit_latency.clone(),
    );
    r.register(
        "replication_manifests",
        "Manifests replicated, to push targets and from pull sources",
        m.replicated_manifests.clone(),
    );
    r.register(
        "replication_errors",
        "Failed replication attempts (push events, pull syncs)",
        m.replication_errors.clone(),
    );
    r.register(
        "replication_pending",
        "Events queued for a push target, as of the last status read or dispatch",
        m.replication_pending.clone(),
    );
    r.register(
        "quota_used_bytes",
        "Unique bytes held by each scope a quota is configured for",
        m.quota_used.clone(),
    );
    r.register(
        "quota_limit_bytes",
        "The limit of each configured quota",
        m.quota_limit.clone(),
    );
    r.register(
        "cluster_leader",
        "1 for each role this node leads (gc, webhook:<name>, replication:<name>), else 0",
        m.cluster_leader.clone(),
    );
    Metrics { registry: r, ..m }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(build)
}

/// Records a finished garbage collection.
pub fn record_gc(report: &GcReport) {
    super::gc_history::record(report);
    if report.dry_run {
        return;
    }
    let m = global();
    m.gc_runs.inc();
    m.gc_blobs_removed.inc_by(report.blobs_removed);
    m.gc_manifests_removed.inc_by(report.manifests_removed);
    m.retention_tags_removed.inc_by(report.tags_removed);
    m.gc_bytes_freed.inc_by(report.bytes_freed);
    m.gc_duration.observe(report.duration_ms as f64 / 1000.0);
}

/// Records a retention run made alone (`kura retention`, `POST /admin/retention`); a
/// collection's retention is counted by `record_gc`.
pub fn record_retention(report: &GcReport) {
    if !report.dry_run {
        global().retention_tags_removed.inc_by(report.tags_removed);
    }
}

fn replication_labels(direction: &str, name: &str) -> ReplicationLabels {
    ReplicationLabels {
        direction: direction.into(),
        name: name.into(),
    }
}

/// Records `n` manifests replicated by `direction` (`push`/`pull`) target or source `name`.
pub fn record_replicated(direction: &str, name: &str, n: u64) {
    global()
        .replicated_manifests
        .get_or_create(&replication_labels(direction, name))
        .inc_by(n);
}

/// Records a failed replication attempt.
pub fn record_replication_error(direction: &str, name: &str) {
    global()
        .replication_errors
        .get_or_create(&replication_labels(direction, name))
        .inc();
}

/// Sets the events pending for push target `target`.
pub fn set_replication_pending(target: &str, n: u64) {
    global()
        .replication_pending
        .get_or_create(&TargetLabels {
            target: target.into(),
        })
        .set(n as i64);
}

/// Adds `delta` to the leadership gauge of `role` (+1 on taking it, -1 on losing it).
pub fn add_cluster_leader(role: &str, delta: i64) {
    global()
        .cluster_leader
        .get_or_create(&RoleLabels { role: role.into() })
        .inc_by(delta);
}

/// Records one metadata commit's latency.
pub fn record_commit(d: Duration) {
    global().commit_latency.observe(d.as_secs_f64());
}

/// Refreshes the store gauges from a metadata snapshot (constant cost).
fn refresh_store_gauges(reg: &Registry) -> crate::error::Result<()> {
    let m = global();
    m.uploads_in_progress.set(reg.session_count() as i64);
    reg.meta().read(|t| {
        let counts = t.counts()?;
        m.repositories.set(counts.repositories as i64);
        m.manifests.set(counts.manifests as i64);
        m.blobs.set(counts.blobs as i64);
        // Row counts come from the backend's own counts (redb's table headers) and bytes
        // from a counter kept in the transactions that change `blobs`: a scrape reads no
        // table.
        m.blob_bytes
            .set(crate::meta::stats::get(t, crate::meta::stats::BLOB_BYTES)? as i64);
        // Only the scopes a quota names (one row read each), so series go with their quota.
        m.quota_used.clear();
        m.quota_limit.clear();
        for q in reg.policies().quota.all() {
            let key = q.scope.key();
            let labels = ScopeLabels { scope: key };
            let used = crate::meta::usage::get(t, &labels.scope)?;
            m.quota_used.get_or_create(&labels).set(used as i64);
            m.quota_limit.get_or_create(&labels).set(q.max_bytes as i64);
        }
        Ok(())
    })
}

/// `GET /metrics`.
pub async fn handler(reg: web::Data<Registry>) -> HttpResponse {
    let r = reg.get_ref().clone();
    let refreshed = tokio::task::spawn_blocking(move || refresh_store_gauges(&r)).await;
    if let Ok(Err(e)) | Err(e) = refreshed.map_err(|e| crate::error::Error::internal("metrics", e))
    {
        tracing::warn!(error = %e, "store gauges not refreshed");
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &global().registry) {
        return HttpResponse::InternalServerError().body(e.to_string());
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(out)
}
