//! Schema version 6: the pull-through cache's tables. `deferred_refs` holds references of cached
//! manifests to content not fetched yet, `mirror_tags` when each cached tag was last confirmed
//! upstream, `mirror_pulls` when each cached item was last pulled (eviction order). A store
//! without mirrors has them empty.

use crate::meta::tables::{DEFERRED_REFS, MIRROR_PULLS, MIRROR_TAGS};

pub(super) const STEP: super::Migration = super::Migration {
    version: 6,
    name: "add deferred_refs, mirror_tags and mirror_pulls for the pull-through cache",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(DEFERRED_REFS)?;
    txn.open_table(MIRROR_TAGS)?;
    txn.open_table(MIRROR_PULLS)?;
    Ok(())
}
