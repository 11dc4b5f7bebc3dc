//! The pull-through cache's bookkeeping: `mirror_tags` (when a cached tag was last confirmed
//! upstream) and `mirror_pulls` (when a cached item was last pulled, the eviction order).

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

type Key = (&'static str, &'static str);

/// When tag `tag` of `repo` was last confirmed upstream.
pub fn tag_checked(t: &impl ReadableTable<Key, u64>, repo: &str, tag: &str) -> Result<Option<u64>> {
    Ok(t.get((repo, tag))?.map(|v| v.value()))
}

/// Records that tag `tag` of `repo` was confirmed upstream at `at`.
pub fn set_tag_checked(t: &mut WriteTables<'_>, repo: &str, tag: &str, at: u64) -> Result<()> {
    t.mirror_tags.insert((repo, tag), at)?;
    Ok(())
}

/// Records a pull of cached `digest` of `repo` at `at` (never moving it back).
pub fn set_pulled(t: &mut WriteTables<'_>, repo: &str, digest: &str, at: u64) -> Result<()> {
    let old = t.mirror_pulls.get((repo, digest))?.map_or(0, |v| v.value());
    if at > old {
        t.mirror_pulls.insert((repo, digest), at)?;
    }
    Ok(())
}

/// Forgets the pull time of `digest` of `repo`.
pub fn forget_pulled(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    t.mirror_pulls.remove((repo, digest))?;
    Ok(())
}

/// Every (repository, digest, last pulled) of repositories starting with `prefix`.
pub fn pulls_under(
    t: &impl ReadableTable<Key, u64>,
    prefix: &str,
) -> Result<Vec<(String, String, u64)>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, &str)>((prefix, "")..)? {
        let (k, v) = item?;
        let (repo, digest) = k.value();
        if !repo.starts_with(prefix) {
            break;
        }
        out.push((repo.to_string(), digest.to_string(), v.value()));
    }
    Ok(out)
}
