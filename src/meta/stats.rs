//! The `stats` table (v4): store totals updated in the same transactions as the rows they
//! sum, so reading them costs one lookup.

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

/// The sum of the sizes in the `blobs` table.
pub const BLOB_BYTES: &str = "blob_bytes";

/// The counter `name` (0 when absent).
pub fn get(t: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64> {
    Ok(t.get(name)?.map_or(0, |v| v.value()))
}

/// Sets the counter `name` (migrations and repairs).
pub fn set(t: &mut WriteTables<'_>, name: &str, value: u64) -> Result<()> {
    t.stats.insert(name, value)?;
    Ok(())
}

/// Adds `delta` to the counter `name`, saturating at 0.
pub fn add(t: &mut WriteTables<'_>, name: &str, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let v = get(&t.stats, name)?.saturating_add_signed(delta);
    t.stats.insert(name, v)?;
    Ok(())
}
