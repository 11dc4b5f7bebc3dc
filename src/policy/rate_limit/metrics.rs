//! The rate limiter's metrics, in the process-wide registry (`ops::metrics`):
//! `kura_rate_limited_total{class,by}` (requests refused) and the limits in force,
//! `kura_rate_limit_per_second{class,by}` and `kura_rate_limit_burst{class,by}` (absent: no
//! limit).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Class, KeyKind, Limits};

/// A class of requests (`pull`, `push`, `token`) and what its bucket is keyed by (`ip`, `user`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLabels {
    pub class: String,
    pub by: String,
}

impl RateLabels {
    fn of(class: Class, by: KeyKind) -> RateLabels {
        RateLabels {
            class: class.name().into(),
            by: by.name().into(),
        }
    }
}

/// Every rate-limit metric.
#[derive(Default)]
pub struct RateLimitMetrics {
    pub refused: Family<RateLabels, Counter>,
    pub per_second: Family<RateLabels, Gauge<f64, AtomicU64>>,
    pub burst: Family<RateLabels, Gauge>,
}

impl RateLimitMetrics {
    /// Registers every family under `kura_rate_limit*`.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "rate_limited",
            "Requests refused with 429 by a rate limit, by class and key (ip or user)",
            self.refused.clone(),
        );
        r.register(
            "rate_limit_per_second",
            "Configured rate limits in requests per second, by class and key",
            self.per_second.clone(),
        );
        r.register(
            "rate_limit_burst",
            "Configured rate-limit bursts, by class and key",
            self.burst.clone(),
        );
    }
}

fn metrics() -> &'static RateLimitMetrics {
    &crate::ops::metrics::global().rate_limit
}

/// Counts a refusal.
pub fn refused(class: Class, by: KeyKind) {
    metrics()
        .refused
        .get_or_create(&RateLabels::of(class, by))
        .inc();
}

/// Shows `limits` as the limits in force.
pub fn set_limits(limits: &Limits) {
    let m = metrics();
    m.per_second.clear();
    m.burst.clear();
    for class in Class::ALL {
        for by in KeyKind::ALL {
            if let Some(l) = limits.limit(class, by) {
                let labels = RateLabels::of(class, by);
                m.per_second.get_or_create(&labels).set(l.per_second());
                m.burst.get_or_create(&labels).set(i64::from(l.burst));
            }
        }
    }
}
