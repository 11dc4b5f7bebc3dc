//! Immutable tags (`[[policies.immutable]]`).

use serde::{Deserialize, Serialize};

/// One `[[policies.immutable]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImmutableRule {}

/// The compiled immutable-tag rules.
#[derive(Debug, Default)]
pub struct ImmutableTags {}

impl ImmutableTags {
    pub fn compile(_rules: &[ImmutableRule]) -> Result<ImmutableTags, String> {
        Ok(ImmutableTags {})
    }
}
