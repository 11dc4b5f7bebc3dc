//! Repositories: name → creation time.

use super::rows::ReadTx;
use super::{WriteTables, now_secs};
use crate::error::Result;

/// Records `repo` if it is new.
pub fn ensure(t: &mut WriteTables<'_>, repo: &str) -> Result<()> {
    if t.repo(repo)?.is_none() {
        t.put_repo(repo, now_secs())?;
    }
    Ok(())
}

/// True when `repo` exists.
pub fn exists(t: &(impl ReadTx + ?Sized), repo: &str) -> Result<bool> {
    Ok(t.repo(repo)?.is_some())
}

/// Up to `n` repository names after `last`, in order, and whether more follow.
pub fn list(
    t: &(impl ReadTx + ?Sized),
    last: Option<&str>,
    n: usize,
) -> Result<(Vec<String>, bool)> {
    let mut page = t.repos_page("", last, n.saturating_add(1))?;
    let more = page.len() > n;
    page.truncate(n);
    Ok((page, more))
}

/// How many names `scan_prefix` reads at a time.
const SCAN_PAGE: usize = 256;

/// Calls `f` with the repository names starting with `prefix`, in order, after `last`, until
/// `f` returns false. Only rows with the prefix are read.
pub fn scan_prefix(
    t: &(impl ReadTx + ?Sized),
    prefix: &str,
    last: Option<&str>,
    mut f: impl FnMut(&str) -> bool,
) -> Result<()> {
    super::paging::each(
        last.map(str::to_string),
        SCAN_PAGE,
        |after: Option<&String>, n| t.repos_page(prefix, after.map(String::as_str), n),
        Clone::clone,
        |name| Ok(f(&name)),
    )
}

/// Every repository name, in order.
pub fn all(t: &(impl ReadTx + ?Sized)) -> Result<Vec<String>> {
    t.repos_page("", None, usize::MAX)
}
