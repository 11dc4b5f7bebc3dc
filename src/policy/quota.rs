//! Quotas (`[[policies.quota]]`).

use serde::{Deserialize, Serialize};

/// One `[[policies.quota]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaRule {}

/// The compiled quotas.
#[derive(Debug, Default)]
pub struct Quotas {}

impl Quotas {
    pub fn compile(_rules: &[QuotaRule]) -> Result<Quotas, String> {
        Ok(Quotas {})
    }
}
