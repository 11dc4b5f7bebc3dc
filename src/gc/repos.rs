//! Repositories that hold nothing: no tag, no manifest revision and no blob link.

use redb::ReadableTable;

use super::{GcOptions, GcReport};
use crate::error::Result;
use crate::registry::Registry;

/// True when `t` has a key whose first part is `repo`.
fn has_key<V: redb::Value + 'static>(t: &impl ReadableTable<Key, V>, repo: &str) -> Result<bool> {
    match t.range::<(&str, &str)>((repo, "")..)?.next() {
        Some(item) => Ok(item?.0.value().0 == repo),
        None => Ok(false),
    }
}

type Key = (&'static str, &'static str);

/// True when `repo` has no manifest revision, tag or blob link.
fn holds_nothing(
    manifests: &impl ReadableTable<Key, &'static [u8]>,
    tags: &impl ReadableTable<Key, &'static str>,
    links: &impl ReadableTable<Key, u64>,
    repo: &str,
) -> Result<bool> {
    Ok(!has_key(manifests, repo)? && !has_key(tags, repo)? && !has_key(links, repo)?)
}

/// Removes the rows of repositories that hold nothing, so they leave `_catalog`. Each is
/// re-checked in the removing transaction; a push into one afterwards re-creates its row.
pub(super) fn collect(registry: &Registry, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let empty: Vec<String> = registry.meta().read(|t| {
        let mut out = Vec::new();
        for item in t.repos.iter()? {
            let repo = item?.0.value().to_string();
            if holds_nothing(&t.manifests, &t.tags, &t.repo_blobs, &repo)? {
                out.push(repo);
            }
        }
        Ok(out)
    })?;
    if empty.is_empty() {
        return Ok(());
    }
    let removed = if opts.dry_run {
        empty
    } else {
        registry.meta().write(|t| {
            let mut removed = Vec::new();
            for repo in empty {
                if holds_nothing(&t.manifests, &t.tags, &t.repo_blobs, &repo)? {
                    t.repos.remove(repo.as_str())?;
                    removed.push(repo);
                }
            }
            Ok(removed)
        })?
    };
    report.repositories_removed += removed.len() as u64;
    report
        .items
        .extend(removed.into_iter().map(|r| format!("repository {r}")));
    Ok(())
}
