//! Schema version 7: the policies' tables. `usage` holds the unique bytes each quota scope
//! holds and `scope_blobs` how many links and revisions of each digest a scope's repositories
//! have (quotas, `meta/usage.rs`), `tag_pulls` when each tag was last pulled and `tag_pushes`
//! when it was last pushed (retention). Every existing repository's usage is computed here from
//! `repo_blobs` and `manifests` (no namespace is tracked yet: a quota naming one computes it when
//! it is first configured).

use crate::meta::redb::RedbWrite;
use crate::meta::tables::{SCOPE_BLOBS, TAG_PULLS, TAG_PUSHES, USAGE};
use crate::meta::usage;

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
    let backfill = || -> crate::error::Result<()> {
        let mut t = RedbWrite::open(txn)?;
        usage::rebuild(&mut t)
    };
    backfill().map_err(|e| redb::Error::Corrupted(format!("usage backfill: {e}")))
}
