//! The pull-through cache's bookkeeping: when a cached tag was last confirmed upstream, and
//! when a cached item was last pulled (the eviction order).

use super::WriteTables;
use super::rows::{ReadTx, TagTime};
use crate::error::Result;

/// When tag `tag` of `repo` was last confirmed upstream.
pub fn tag_checked(t: &(impl ReadTx + ?Sized), repo: &str, tag: &str) -> Result<Option<u64>> {
    t.tag_time(TagTime::Checked, repo, tag)
}

/// Records that tag `tag` of `repo` was confirmed upstream at `at`.
pub fn set_tag_checked(t: &mut WriteTables<'_>, repo: &str, tag: &str, at: u64) -> Result<()> {
    t.put_tag_time(TagTime::Checked, repo, tag, at)
}

/// Records a pull of cached `digest` of `repo` at `at` (never moving it back).
pub fn set_pulled(t: &mut WriteTables<'_>, repo: &str, digest: &str, at: u64) -> Result<()> {
    let old = t.mirror_pull(repo, digest)?.unwrap_or(0);
    if at > old {
        t.put_mirror_pull(repo, digest, at)?;
    }
    Ok(())
}

/// Forgets the pull time of `digest` of `repo`.
pub fn forget_pulled(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    t.remove_mirror_pull(repo, digest)
}

/// Every (repository, digest, last pulled) of repositories starting with `prefix`.
pub fn pulls_under(t: &(impl ReadTx + ?Sized), prefix: &str) -> Result<Vec<(String, String, u64)>> {
    t.mirror_pulls_under(prefix)
}
