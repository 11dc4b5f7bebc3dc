//! The `repositories` table.

use redb::ReadableTable;

use super::{WriteTables, now_secs};
use crate::error::Result;

/// Records `repo` if it is new.
pub fn ensure(t: &mut WriteTables<'_>, repo: &str) -> Result<()> {
    if t.repos.get(repo)?.is_none() {
        t.repos.insert(repo, now_secs())?;
    }
    Ok(())
}

/// True when `repo` exists.
pub fn exists(t: &impl ReadableTable<&'static str, u64>, repo: &str) -> Result<bool> {
    Ok(t.get(repo)?.is_some())
}

/// Up to `n` repository names after `last`, in order, and whether more follow.
pub fn list(
    t: &impl ReadableTable<&'static str, u64>,
    last: Option<&str>,
    n: usize,
) -> Result<(Vec<String>, bool)> {
    let mut out = Vec::new();
    let iter = match last {
        Some(l) => t.range::<&str>((std::ops::Bound::Excluded(l), std::ops::Bound::Unbounded))?,
        None => t.range::<&str>(..)?,
    };
    for item in iter {
        let (k, _) = item?;
        if out.len() == n {
            return Ok((out, true));
        }
        out.push(k.value().to_string());
    }
    Ok((out, false))
}

/// Calls `f` with the repository names starting with `prefix`, in order, after `last`, until
/// `f` returns false. Only rows with the prefix are read.
pub fn scan_prefix(
    t: &impl ReadableTable<&'static str, u64>,
    prefix: &str,
    last: Option<&str>,
    mut f: impl FnMut(&str) -> bool,
) -> Result<()> {
    use std::ops::Bound;
    let start = match last {
        Some(l) if l >= prefix => Bound::Excluded(l),
        _ => Bound::Included(prefix),
    };
    for item in t.range::<&str>((start, Bound::Unbounded))? {
        let (k, _) = item?;
        let name = k.value();
        if !name.starts_with(prefix) || !f(name) {
            break;
        }
    }
    Ok(())
}
