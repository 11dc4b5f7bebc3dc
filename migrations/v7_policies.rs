//! Schema version 7: the policies' tables. `usage` holds the unique bytes each quota scope
//! holds and `scope_blobs` how many links and revisions of each digest a scope's repositories
//! have (quotas, `meta/usage.rs`), `tag_pulls` when each tag was last pulled and `tag_pushes`
//! when it was last pushed (retention). Every existing repository's usage is computed here from
//! `repo_blobs` and `manifests` (no namespace is tracked yet: a quota naming one computes it when
//! it is first configured).

use crate::meta::tables::{
    BLOBS, MANIFESTS, REPO_BLOBS, SCOPE_BLOBS, SETTINGS, TAG_PULLS, TAG_PUSHES, USAGE,
};
use crate::meta::usage;

pub(super) const STEP: super::Migration = super::Migration {
    version: 7,
    name: "add usage, scope_blobs, tag_pulls and tag_pushes for quotas and retention",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut usage_t = txn.open_table(USAGE)?;
    let mut scope_blobs = txn.open_table(SCOPE_BLOBS)?;
    txn.open_table(TAG_PULLS)?;
    txn.open_table(TAG_PUSHES)?;
    let repo_blobs = txn.open_table(REPO_BLOBS)?;
    let manifests = txn.open_table(MANIFESTS)?;
    let blobs = txn.open_table(BLOBS)?;
    let settings = txn.open_table(SETTINGS)?;
    let mut backfill = || -> crate::error::Result<()> {
        let namespaces = usage::tracked_namespaces(&settings)?;
        let r = usage::recompute(&repo_blobs, &manifests, &blobs, &namespaces, None)?;
        usage::replace_all(&mut usage_t, &mut scope_blobs, &r)
    };
    backfill().map_err(|e| redb::Error::Corrupted(format!("usage backfill: {e}")))
}
