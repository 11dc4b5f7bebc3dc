//! Retention (`[[policies.retention]]`).

use serde::{Deserialize, Serialize};

/// One `[[policies.retention]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRule {}

/// The compiled retention rules.
#[derive(Debug, Default)]
pub struct RetentionRules {}

impl RetentionRules {
    pub fn compile(_rules: &[RetentionRule]) -> Result<RetentionRules, String> {
        Ok(RetentionRules {})
    }
}
