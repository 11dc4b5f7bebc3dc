//! Conversions shared by the row files: kura's u64 counts and times are stored as bigint (never
//! negative, see the schema's CHECKs), and a key prefix is a range of the byte-ordered keys.

use tokio_postgres::Row;

use crate::error::{Error, Result};

/// A bigint column as the u64 it stores.
pub(super) fn u(row: &Row, i: usize) -> u64 {
    row.get::<_, i64>(i) as u64
}

/// A u64 as the bigint stored for it; values above i64::MAX cannot be stored.
pub(super) fn i(v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::internal("metadata database", format!("{v} exceeds a bigint")))
}

/// A page size as a LIMIT.
pub(super) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The exclusive upper bound of the keys starting with `prefix` (kura's names and digests are
/// ASCII, so no key continues a prefix with U+10FFFF).
pub(super) fn upper(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}
