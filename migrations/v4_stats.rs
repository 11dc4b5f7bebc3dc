//! Schema version 4: `stats`, store totals kept as counters (`blob_bytes`), computed once here
//! from the `blobs` table.

use redb::ReadableTable;

use crate::meta::stats::BLOB_BYTES;
use crate::meta::tables::{BLOBS, STATS};

pub(super) const STEP: super::Migration = super::Migration {
    version: 4,
    name: "add stats (counter -> value) with blob_bytes, the sum of blob sizes",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut bytes = 0u64;
    for row in txn.open_table(BLOBS)?.iter()? {
        bytes += row?.1.value().0;
    }
    txn.open_table(STATS)?.insert(BLOB_BYTES, bytes)?;
    Ok(())
}
