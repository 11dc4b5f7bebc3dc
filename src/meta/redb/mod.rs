//! The redb backend of the metadata boundary (`rows.rs`): every table of `tables.rs` opened in
//! one write transaction (`RedbWrite`) or one read snapshot (`RedbRead`), with the row
//! operations of each concern in its own file.

mod blobs;
mod deferred;
mod manifests;
mod mirror;
mod notifications;
mod referrers;
mod repos;
mod settings;
mod store;
mod tags;
mod uploads;
mod usage;

use redb::{ReadOnlyTable, ReadTransaction, Table, WriteTransaction};

pub use store::{RedbCommitted, RedbMeta};

use super::tables::*;
use crate::error::Result;

/// Every table, opened for writing inside one transaction.
pub struct RedbWrite<'txn> {
    pub repos: Table<'txn, &'static str, u64>,
    pub blobs: Table<'txn, &'static str, (u64, u64, u64)>,
    pub repo_blobs: Table<'txn, (&'static str, &'static str), u64>,
    pub blob_links: Table<'txn, (&'static str, &'static str), ()>,
    pub manifests: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub tags: Table<'txn, (&'static str, &'static str), &'static str>,
    pub referrers: Table<'txn, (&'static str, &'static str, &'static str), ()>,
    pub uploads: Table<'txn, &'static str, &'static [u8]>,
    pub notifications: Table<'txn, (&'static str, u64), &'static [u8]>,
    pub stats: Table<'txn, &'static str, u64>,
    pub settings: Table<'txn, &'static str, &'static str>,
    pub deferred_refs: Table<'txn, (&'static str, &'static str, &'static str), ()>,
    pub mirror_tags: Table<'txn, (&'static str, &'static str), u64>,
    pub mirror_pulls: Table<'txn, (&'static str, &'static str), u64>,
    pub usage: Table<'txn, &'static str, u64>,
    pub scope_blobs: Table<'txn, (&'static str, &'static str), (u64, u64)>,
    pub tag_pulls: Table<'txn, (&'static str, &'static str), u64>,
    pub tag_pushes: Table<'txn, (&'static str, &'static str), u64>,
}

/// Every table, opened in one read snapshot.
pub struct RedbRead {
    pub repos: ReadOnlyTable<&'static str, u64>,
    pub blobs: ReadOnlyTable<&'static str, (u64, u64, u64)>,
    pub repo_blobs: ReadOnlyTable<(&'static str, &'static str), u64>,
    pub blob_links: ReadOnlyTable<(&'static str, &'static str), ()>,
    pub manifests: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    pub tags: ReadOnlyTable<(&'static str, &'static str), &'static str>,
    pub referrers: ReadOnlyTable<(&'static str, &'static str, &'static str), ()>,
    pub uploads: ReadOnlyTable<&'static str, &'static [u8]>,
    pub notifications: ReadOnlyTable<(&'static str, u64), &'static [u8]>,
    pub stats: ReadOnlyTable<&'static str, u64>,
    pub settings: ReadOnlyTable<&'static str, &'static str>,
    pub deferred_refs: ReadOnlyTable<(&'static str, &'static str, &'static str), ()>,
    pub mirror_tags: ReadOnlyTable<(&'static str, &'static str), u64>,
    pub mirror_pulls: ReadOnlyTable<(&'static str, &'static str), u64>,
    pub usage: ReadOnlyTable<&'static str, u64>,
    pub scope_blobs: ReadOnlyTable<(&'static str, &'static str), (u64, u64)>,
    pub tag_pulls: ReadOnlyTable<(&'static str, &'static str), u64>,
    pub tag_pushes: ReadOnlyTable<(&'static str, &'static str), u64>,
}

/// Opens every table of one set, for writing or in a snapshot.
macro_rules! open_all {
    ($ty:ident, $txn:expr) => {
        $ty {
            repos: $txn.open_table(REPOSITORIES)?,
            blobs: $txn.open_table(BLOBS)?,
            repo_blobs: $txn.open_table(REPO_BLOBS)?,
            blob_links: $txn.open_table(BLOB_LINKS)?,
            manifests: $txn.open_table(MANIFESTS)?,
            tags: $txn.open_table(TAGS)?,
            referrers: $txn.open_table(REFERRERS)?,
            uploads: $txn.open_table(UPLOADS)?,
            notifications: $txn.open_table(NOTIFICATIONS)?,
            stats: $txn.open_table(STATS)?,
            settings: $txn.open_table(SETTINGS)?,
            deferred_refs: $txn.open_table(DEFERRED_REFS)?,
            mirror_tags: $txn.open_table(MIRROR_TAGS)?,
            mirror_pulls: $txn.open_table(MIRROR_PULLS)?,
            usage: $txn.open_table(USAGE)?,
            scope_blobs: $txn.open_table(SCOPE_BLOBS)?,
            tag_pulls: $txn.open_table(TAG_PULLS)?,
            tag_pushes: $txn.open_table(TAG_PUSHES)?,
        }
    };
}

impl<'txn> RedbWrite<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(open_all!(RedbWrite, txn))
    }
}

impl RedbRead {
    pub fn open(txn: &ReadTransaction) -> Result<Self> {
        Ok(open_all!(RedbRead, txn))
    }
}

/// Implements a read trait for both the write transaction and the read snapshot: their
/// tables have the same names, and the bodies only read.
macro_rules! for_both {
    ($tr:path { $($body:tt)* }) => {
        impl $tr for super::RedbWrite<'_> { $($body)* }
        impl $tr for super::RedbRead { $($body)* }
    };
}
use for_both;

/// True when key `k` starts with `prefix`. Most scans pass an empty prefix (every key): that
/// case skips the byte comparison, which as a `memcmp` call per row cost the 100-name catalog
/// page a fifth of its time (`cargo bench --bench registry`, catalog_page_100_of_100k).
#[inline]
fn has_prefix(k: &str, prefix: &str) -> bool {
    prefix.is_empty() || k.starts_with(prefix)
}

/// Collects up to `n` items of a redb range, mapped by `f` until it returns `None` (the end
/// of the leading key).
fn collect<K, V, T>(
    range: redb::Range<'_, K, V>,
    n: usize,
    mut f: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Option<T>,
) -> Result<Vec<T>>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    collect_rows(range, n, |k, v| f(k.value(), v.value()))
}

/// `collect` for scans that need only the keys: the values are never decoded (a tag's digest
/// is 71 bytes of UTF-8 to validate per row, which cost a 100-tag page ~15%).
fn collect_keys<K, V, T>(
    range: redb::Range<'_, K, V>,
    n: usize,
    mut f: impl FnMut(K::SelfType<'_>) -> Option<T>,
) -> Result<Vec<T>>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    collect_rows(range, n, |k, _| f(k.value()))
}

/// The loop of `collect` and `collect_keys`: `f` sees each row's undecoded guards.
fn collect_rows<'a, K, V, T>(
    range: redb::Range<'a, K, V>,
    n: usize,
    mut f: impl FnMut(&redb::AccessGuard<'a, K>, &redb::AccessGuard<'a, V>) -> Option<T>,
) -> Result<Vec<T>>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let mut out = Vec::new();
    for item in range {
        if out.len() == n {
            break;
        }
        let (k, v) = item?;
        match f(&k, &v) {
            Some(x) => out.push(x),
            None => break,
        }
    }
    Ok(out)
}
