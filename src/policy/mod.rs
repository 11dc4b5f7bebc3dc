//! Policies (`[policies]` in the configuration): rate limits, quotas, retention, immutable
//! tags and required signatures. Each policy is one module: its configuration (checked at start
//! and by `kura config check`), its compiled rules, and its decisions, testable without HTTP.
//! Quotas and immutable tags are enforced inside the metadata transaction of the change they
//! guard; required signatures when a manifest is pulled by tag; retention by the collector and
//! on demand; rate limits in front of the handlers. All but the rate limiter's buckets are
//! replaced whole by a live reload (`Registry::set_policies`).

pub mod immutable;
pub mod patterns;
pub mod quota;
pub mod rate_limit;
pub mod retention;
pub mod signatures;

use serde::{Deserialize, Serialize};

/// `[policies]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoliciesConfig {
    /// `[[policies.immutable]]`: tags that can be created once, then neither moved nor deleted.
    pub immutable: Vec<immutable::ImmutableRule>,
    /// `[[policies.quota]]`: the most unique bytes a repository or namespace may hold.
    pub quota: Vec<quota::QuotaRule>,
    /// `[[policies.retention]]`: which tags the collector removes.
    pub retention: Vec<retention::RetentionRule>,
    /// `[[policies.signatures]]`: repositories whose tags are served only when signed.
    pub signatures: Vec<signatures::SignatureRule>,
    /// `[policies.rate_limit]`: request rates per client IP and per user.
    pub rate_limit: rate_limit::RateLimitConfig,
}

impl PoliciesConfig {
    /// Checks every policy; the error names the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        Policies::compile(self).map(|_| ())?;
        self.rate_limit.validate()
    }
}

/// The policies the registry enforces, compiled from `PoliciesConfig` (the rate limits live
/// with the HTTP layer, `rate_limit::RateLimiter`).
#[derive(Debug, Default)]
pub struct Policies {
    pub immutable: immutable::ImmutableTags,
    pub quota: quota::Quotas,
    pub retention: retention::RetentionRules,
    pub signatures: signatures::SignaturePolicy,
}

impl Policies {
    /// Compiles `config`; an invalid rule is an error naming it.
    pub fn compile(config: &PoliciesConfig) -> Result<Policies, String> {
        Ok(Policies {
            immutable: immutable::ImmutableTags::compile(&config.immutable)?,
            quota: quota::Quotas::compile(&config.quota)?,
            retention: retention::RetentionRules::compile(&config.retention)?,
            signatures: signatures::SignaturePolicy::compile(&config.signatures)?,
        })
    }
}
