//! Required signatures (`[[policies.signatures]]`).

use serde::{Deserialize, Serialize};

/// One `[[policies.signatures]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignatureRule {}

/// The compiled signature requirements.
#[derive(Debug, Default)]
pub struct SignaturePolicy {}

impl SignaturePolicy {
    pub fn compile(_rules: &[SignatureRule]) -> Result<SignaturePolicy, String> {
        Ok(SignaturePolicy {})
    }
}
