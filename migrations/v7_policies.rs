//! Schema version 7: the policies' tables. `usage` holds the unique bytes each quota scope
//! holds and `scope_blobs` how many of a scope's repositories hold each blob (quotas), and
//! `tag_pulls` when each tag was last pulled and `tag_pushes` when it was last pushed
//! (retention). A store without policies has them empty.

use crate::meta::tables::{SCOPE_BLOBS, TAG_PULLS, TAG_PUSHES, USAGE};

pub(super) const STEP: super::Migration = super::Migration {
    version: 7,
    name: "add usage, scope_blobs, tag_pulls and tag_pushes for quotas and retention",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(USAGE)?;
    txn.open_table(SCOPE_BLOBS)?;
    txn.open_table(TAG_PULLS)?;
    txn.open_table(TAG_PUSHES)?;
    Ok(())
}
