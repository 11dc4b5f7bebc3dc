//! Store counters (v4): totals updated in the same transactions as the rows they sum, so
//! reading them costs one lookup.

use super::WriteTables;
use super::rows::ReadTx;
use crate::error::Result;

/// The sum of the sizes in the `blobs` table.
pub const BLOB_BYTES: &str = "blob_bytes";

/// The counter `name` (0 when absent).
pub fn get(t: &(impl ReadTx + ?Sized), name: &str) -> Result<u64> {
    t.stat(name)
}

/// Sets the counter `name` (migrations and repairs).
pub fn set(t: &mut WriteTables<'_>, name: &str, value: u64) -> Result<()> {
    t.put_stat(name, value)
}

/// Adds `delta` to the counter `name`, saturating at 0.
pub fn add(t: &mut WriteTables<'_>, name: &str, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let v = t.stat(name)?.saturating_add_signed(delta);
    t.put_stat(name, v)
}
