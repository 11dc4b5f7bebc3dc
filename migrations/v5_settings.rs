//! Schema version 5: `settings`, facts about the store itself. `blob_store` names where the
//! blobs of this metadata live; a store that already holds blobs was on the filesystem (the
//! only driver before this version), a new one records its first configuration when opened.

use redb::ReadableTableMetadata;

use crate::meta::settings::{BLOB_STORE, StoreIdentity};
use crate::meta::tables::{BLOBS, SETTINGS};

pub(super) const STEP: super::Migration = super::Migration {
    version: 5,
    name: "add settings (name -> value) with blob_store, where this store's blobs live",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut settings = txn.open_table(SETTINGS)?;
    if !txn.open_table(BLOBS)?.is_empty()? {
        let json = serde_json::to_string(&StoreIdentity::filesystem())
            .expect("serialising a store identity");
        settings.insert(BLOB_STORE, json.as_str())?;
    }
    Ok(())
}
