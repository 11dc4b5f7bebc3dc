//! Required-signature metrics, in the process-wide registry (`ops::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The outcome of a check (`allowed`, `denied`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Every required-signature metric.
#[derive(Default)]
pub struct SignatureMetrics {
    /// Pulls by tag in a repository under a rule, by outcome.
    pub checks: Family<ResultLabels, Counter>,
    /// Checks that verified signatures (a cache miss) rather than reusing a verdict.
    pub verifications: Counter,
}

impl SignatureMetrics {
    /// Registers every metric under `kura_signature_*`.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "signature_checks",
            "Pulls by tag checked by policies.signatures, by result",
            self.checks.clone(),
        );
        r.register(
            "signature_verifications",
            "Signature checks that verified signatures (verdict not cached)",
            self.verifications.clone(),
        );
    }
}

/// The process-wide signature metrics.
pub fn get() -> &'static SignatureMetrics {
    &crate::ops::metrics::global().signatures
}
