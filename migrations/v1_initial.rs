//! Schema version 1: the initial tables (listed in ARCHITECTURE.md).

use crate::meta::tables::*;

pub(super) const STEP: super::Migration = super::Migration {
    version: 1,
    name: "initial schema: repositories, blobs, repo_blobs, manifests, tags, referrers, uploads",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(REPOSITORIES)?;
    txn.open_table(BLOBS)?;
    txn.open_table(REPO_BLOBS)?;
    txn.open_table(MANIFESTS)?;
    txn.open_table(TAGS)?;
    txn.open_table(REFERRERS)?;
    txn.open_table(UPLOADS)?;
    Ok(())
}
