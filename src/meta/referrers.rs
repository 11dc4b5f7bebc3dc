//! The referrers index: (repository, subject, referrer).

use super::WriteTables;
use super::rows::ReadTx;
use crate::error::Result;

/// Records that `referrer` in `repo` has `subject`.
pub fn add(t: &mut WriteTables<'_>, repo: &str, subject: &str, referrer: &str) -> Result<()> {
    t.put_referrer(repo, subject, referrer)
}

/// Forgets that `referrer` has `subject`.
pub fn remove(t: &mut WriteTables<'_>, repo: &str, subject: &str, referrer: &str) -> Result<()> {
    t.remove_referrer(repo, subject, referrer)
}

/// The digests of every manifest in `repo` whose subject is `subject`.
pub fn list(t: &(impl ReadTx + ?Sized), repo: &str, subject: &str) -> Result<Vec<String>> {
    t.referrers_page(repo, subject, None, usize::MAX)
}

/// How many referrers `scan` reads at a time.
const PAGE: usize = 256;

/// Calls `f` with the digests of the manifests in `repo` whose subject is `subject`, in order,
/// starting after `last`, until `f` returns false.
pub fn scan(
    t: &(impl ReadTx + ?Sized),
    repo: &str,
    subject: &str,
    last: Option<&str>,
    mut f: impl FnMut(&str) -> Result<bool>,
) -> Result<()> {
    super::paging::each(
        last.map(str::to_string),
        PAGE,
        |after: Option<&String>, n| t.referrers_page(repo, subject, after.map(String::as_str), n),
        Clone::clone,
        |d| f(&d),
    )
}

/// Every (repository, subject, referrer) of the store, in order (fsck).
pub fn everything(t: &(impl ReadTx + ?Sized)) -> Result<Vec<(String, String, String)>> {
    super::paging::all(
        PAGE,
        |after: Option<&(String, String, String)>, n| {
            t.all_referrers_page(
                after.map(|(r, s, d)| (r.as_str(), s.as_str(), d.as_str())),
                n,
            )
        },
        Clone::clone,
    )
}
