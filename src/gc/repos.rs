//! Repositories that hold nothing: no tag, no manifest revision and no blob link.

use super::{GcOptions, GcReport};
use crate::error::Result;
use crate::meta::{ReadTx, repos};
use crate::registry::Registry;

/// True when `repo` has no manifest revision, tag or blob link. (Rows of `repo` itself come
/// first among the rows of names starting with it.)
fn holds_nothing(t: &(impl ReadTx + ?Sized), repo: &str) -> Result<bool> {
    let first_is = |r: Option<&String>| r.is_some_and(|r| r == repo);
    Ok(
        !first_is(t.manifests_page(repo, None, 1)?.first().map(|m| &m.0))
            && t.tags_page(repo, None, 1)?.is_empty()
            && !first_is(t.links_page(repo, None, 1)?.first().map(|l| &l.0)),
    )
}

/// Removes the rows of repositories that hold nothing, so they leave `_catalog`. Each is
/// re-checked in the removing transaction; a push into one afterwards re-creates its row.
pub(super) fn collect(registry: &Registry, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let empty: Vec<String> = registry.meta().read(|t| {
        let mut out = Vec::new();
        for repo in repos::all(t)? {
            if holds_nothing(t, &repo)? {
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
            for repo in &empty {
                if holds_nothing(t, repo)? {
                    t.remove_repo(repo)?;
                    removed.push(repo.clone());
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
