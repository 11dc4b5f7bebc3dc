//! Rate limits (`[policies.rate_limit]`).

use serde::{Deserialize, Serialize};

/// `[policies.rate_limit]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
