//! Schema version 2: `blob_links`, the reverse index of `repo_blobs`, filled from it.

use redb::ReadableTable;

use crate::meta::tables::{BLOB_LINKS, REPO_BLOBS};

pub(super) const STEP: super::Migration = super::Migration {
    version: 2,
    name: "add blob_links (digest, repository), the reverse index of repo_blobs",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let links = txn.open_table(REPO_BLOBS)?;
    let mut reverse = txn.open_table(BLOB_LINKS)?;
    for entry in links.iter()? {
        let (k, _) = entry?;
        let (repo, digest) = k.value();
        reverse.insert((digest, repo), ())?;
    }
    Ok(())
}
