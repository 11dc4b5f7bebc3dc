//! The pull-through cache's metrics, in the process-wide registry (`ops::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A mirror and what was asked of it (`manifest` or `blob`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub mirror: String,
    pub kind: String,
}

/// A mirror and the outcome of a revalidation (`unchanged`, `changed`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub mirror: String,
    pub result: String,
}

/// A mirror.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    pub mirror: String,
}

/// Every mirror metric.
#[derive(Default)]
pub struct MirrorMetrics {
    pub hits: Family<KindLabels, Counter>,
    pub misses: Family<KindLabels, Counter>,
    pub upstream_bytes: Family<MirrorLabels, Counter>,
    pub upstream_errors: Family<MirrorLabels, Counter>,
    pub revalidations: Family<ResultLabels, Counter>,
    pub evictions: Family<MirrorLabels, Counter>,
    pub cached_bytes: Family<MirrorLabels, Gauge>,
}

impl MirrorMetrics {
    /// Registers every family under `kura_mirror_*`.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "mirror_hits",
            "Pulls answered from the cache",
            self.hits.clone(),
        );
        r.register(
            "mirror_misses",
            "Pulls that went upstream",
            self.misses.clone(),
        );
        r.register(
            "mirror_upstream_bytes",
            "Blob bytes received from upstreams",
            self.upstream_bytes.clone(),
        );
        r.register(
            "mirror_upstream_errors",
            "Upstream requests that failed (unreachable, 5xx, refused, bad content)",
            self.upstream_errors.clone(),
        );
        r.register(
            "mirror_revalidations",
            "Cached tags checked against the upstream after their TTL",
            self.revalidations.clone(),
        );
        r.register(
            "mirror_evictions",
            "Cached manifests and blob links evicted to keep the size budget",
            self.evictions.clone(),
        );
        r.register(
            "mirror_cached_bytes",
            "Bytes of content cached for the mirror (as of the last budget check)",
            self.cached_bytes.clone(),
        );
    }
}

fn m() -> &'static MirrorMetrics {
    &crate::ops::metrics::global().mirror
}

fn kind(mirror: &str, kind: &str) -> KindLabels {
    KindLabels {
        mirror: mirror.into(),
        kind: kind.into(),
    }
}

fn of(mirror: &str) -> MirrorLabels {
    MirrorLabels {
        mirror: mirror.into(),
    }
}

pub fn hit(mirror: &str, what: &str) {
    m().hits.get_or_create(&kind(mirror, what)).inc();
}

pub fn miss(mirror: &str, what: &str) {
    m().misses.get_or_create(&kind(mirror, what)).inc();
}

pub fn upstream_bytes(mirror: &str, n: u64) {
    m().upstream_bytes.get_or_create(&of(mirror)).inc_by(n);
}

pub fn upstream_error(mirror: &str) {
    m().upstream_errors.get_or_create(&of(mirror)).inc();
}

pub fn revalidation(mirror: &str, result: &str) {
    m().revalidations
        .get_or_create(&ResultLabels {
            mirror: mirror.into(),
            result: result.into(),
        })
        .inc();
}

pub fn evicted(mirror: &str, n: u64) {
    m().evictions.get_or_create(&of(mirror)).inc_by(n);
}

pub fn cached_bytes(mirror: &str, n: u64) {
    m().cached_bytes.get_or_create(&of(mirror)).set(n as i64);
}
