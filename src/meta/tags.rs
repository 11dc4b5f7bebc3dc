//! The `tags` table: (repository, tag) → manifest digest.

use std::ops::Bound;

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

type Key = (&'static str, &'static str);

/// The digest `tag` points to.
pub fn get(
    t: &impl ReadableTable<Key, &'static str>,
    repo: &str,
    tag: &str,
) -> Result<Option<String>> {
    Ok(t.get((repo, tag))?.map(|v| v.value().to_string()))
}

/// Points `tag` at `digest` and records it as pushed now (`tag_pushes`); returns the digest it
/// pointed to before.
pub fn set(t: &mut WriteTables<'_>, repo: &str, tag: &str, digest: &str) -> Result<Option<String>> {
    t.tag_pushes.insert((repo, tag), super::now_secs())?;
    Ok(t.tags
        .insert((repo, tag), digest)?
        .map(|v| v.value().to_string()))
}

/// Removes `tag`; returns the digest it pointed to.
pub fn remove(t: &mut WriteTables<'_>, repo: &str, tag: &str) -> Result<Option<String>> {
    // A cached tag's confirmation time goes with it.
    t.mirror_tags.remove((repo, tag))?;
    // So do its push and pull times.
    t.tag_pushes.remove((repo, tag))?;
    t.tag_pulls.remove((repo, tag))?;
    Ok(t.tags.remove((repo, tag))?.map(|v| v.value().to_string()))
}

/// Up to `n` tags of `repo` after `last`, in byte order, and whether more follow.
pub fn list(
    t: &impl ReadableTable<Key, &'static str>,
    repo: &str,
    last: Option<&str>,
    n: usize,
) -> Result<(Vec<String>, bool)> {
    let start = match last {
        Some(l) => Bound::Excluded((repo, l)),
        None => Bound::Included((repo, "")),
    };
    let mut out = Vec::new();
    for item in t.range::<(&str, &str)>((start, Bound::Unbounded))? {
        let (k, _) = item?;
        let (r, tag) = k.value();
        if r != repo {
            break;
        }
        if out.len() == n {
            return Ok((out, true));
        }
        out.push(tag.to_string());
    }
    Ok((out, false))
}

/// Every tag of `repo` pointing at `digest`.
pub fn pointing_at(
    t: &impl ReadableTable<Key, &'static str>,
    repo: &str,
    digest: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, &str)>((repo, "")..)? {
        let (k, v) = item?;
        let (r, tag) = k.value();
        if r != repo {
            break;
        }
        if v.value() == digest {
            out.push(tag.to_string());
        }
    }
    Ok(out)
}

/// When `tag` of `repo` was last pushed (none for a tag pushed before schema version 7).
pub fn pushed_at(t: &impl ReadableTable<Key, u64>, repo: &str, tag: &str) -> Result<Option<u64>> {
    Ok(t.get((repo, tag))?.map(|v| v.value()))
}

/// When `tag` of `repo` was last pulled, as recorded by the last flush of pulls.
pub fn pulled_at(t: &impl ReadableTable<Key, u64>, repo: &str, tag: &str) -> Result<Option<u64>> {
    Ok(t.get((repo, tag))?.map(|v| v.value()))
}

/// Records a pull of `tag` of `repo` at `at` if the tag still exists (never moving it back).
pub fn set_pulled(t: &mut WriteTables<'_>, repo: &str, tag: &str, at: u64) -> Result<()> {
    if t.tags.get((repo, tag))?.is_none() {
        return Ok(());
    }
    let old = t.tag_pulls.get((repo, tag))?.map_or(0, |v| v.value());
    if at > old {
        t.tag_pulls.insert((repo, tag), at)?;
    }
    Ok(())
}

/// Every (tag, digest) of `repo`, in byte order.
pub fn all(t: &impl ReadableTable<Key, &'static str>, repo: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, &str)>((repo, "")..)? {
        let (k, v) = item?;
        let (r, tag) = k.value();
        if r != repo {
            break;
        }
        out.push((tag.to_string(), v.value().to_string()));
    }
    Ok(out)
}
