//! Tags: (repository, tag) → manifest digest, and the times kept per tag.

use super::WriteTables;
use super::rows::{ReadTx, TagTime};
use crate::error::Result;

/// The digest `tag` points to.
pub fn get(t: &(impl ReadTx + ?Sized), repo: &str, tag: &str) -> Result<Option<String>> {
    t.tag(repo, tag)
}

/// Points `tag` at `digest` and records it as pushed now (`tag_pushes`); returns the digest it
/// pointed to before.
pub fn set(t: &mut WriteTables<'_>, repo: &str, tag: &str, digest: &str) -> Result<Option<String>> {
    t.put_tag_time(TagTime::Pushed, repo, tag, super::now_secs())?;
    t.put_tag(repo, tag, digest)
}

/// Removes `tag`; returns the digest it pointed to.
pub fn remove(t: &mut WriteTables<'_>, repo: &str, tag: &str) -> Result<Option<String>> {
    // A cached tag's confirmation time goes with it, and so do its push and pull times.
    for kind in [TagTime::Checked, TagTime::Pushed, TagTime::Pulled] {
        t.remove_tag_time(kind, repo, tag)?;
    }
    t.remove_tag(repo, tag)
}

/// Up to `n` tags of `repo` after `last`, in byte order, and whether more follow.
pub fn list(
    t: &(impl ReadTx + ?Sized),
    repo: &str,
    last: Option<&str>,
    n: usize,
) -> Result<(Vec<String>, bool)> {
    let mut page = t.tag_names_page(repo, last, n.saturating_add(1))?;
    let more = page.len() > n;
    page.truncate(n);
    Ok((page, more))
}

/// Every tag of `repo` pointing at `digest`.
pub fn pointing_at(t: &(impl ReadTx + ?Sized), repo: &str, digest: &str) -> Result<Vec<String>> {
    Ok(all(t, repo)?
        .into_iter()
        .filter(|(_, d)| d == digest)
        .map(|(tag, _)| tag)
        .collect())
}

/// When `tag` of `repo` was last pushed (none for a tag pushed before schema version 7).
pub fn pushed_at(t: &(impl ReadTx + ?Sized), repo: &str, tag: &str) -> Result<Option<u64>> {
    t.tag_time(TagTime::Pushed, repo, tag)
}

/// When `tag` of `repo` was last pulled, as recorded by the last flush of pulls.
pub fn pulled_at(t: &(impl ReadTx + ?Sized), repo: &str, tag: &str) -> Result<Option<u64>> {
    t.tag_time(TagTime::Pulled, repo, tag)
}

/// Records a pull of `tag` of `repo` at `at` if the tag still exists (never moving it back).
pub fn set_pulled(t: &mut WriteTables<'_>, repo: &str, tag: &str, at: u64) -> Result<()> {
    if t.tag(repo, tag)?.is_none() {
        return Ok(());
    }
    let old = t.tag_time(TagTime::Pulled, repo, tag)?.unwrap_or(0);
    if at > old {
        t.put_tag_time(TagTime::Pulled, repo, tag, at)?;
    }
    Ok(())
}

/// Every (tag, digest) of `repo`, in byte order.
pub fn all(t: &(impl ReadTx + ?Sized), repo: &str) -> Result<Vec<(String, String)>> {
    t.tags_page(repo, None, usize::MAX)
}

/// How many tags `everything` reads at a time.
const PAGE: usize = 1024;

/// Every (repository, tag, digest) of the store, in order (fsck).
pub fn everything(t: &(impl ReadTx + ?Sized)) -> Result<Vec<(String, String, String)>> {
    super::paging::all(
        PAGE,
        |after: Option<&(String, String)>, n| {
            t.all_tags_page(after.map(|(r, tag)| (r.as_str(), tag.as_str())), n)
        },
        |(r, tag, _)| (r.clone(), tag.clone()),
    )
}
