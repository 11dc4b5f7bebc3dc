//! The listings behind the repositories and repository pages, HTTP-free. Every page is
//! O(page): names come from range scans of the `repositories` and `tags` tables starting at
//! the page's `last`, a substring filter examines at most `SCAN_BUDGET` names per page (the
//! page then ends early with a link to go on), and the per-row figures read a bounded number
//! of rows each (`AGG_TAGS`, `AGG_MANIFESTS`), shown as `N+` when the bound was reached.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::meta::records::ManifestRecord;
use crate::meta::{ReadTables, blobs, manifests, repos};
use crate::registry::Registry;

/// Names examined at most per page when filtering.
pub const SCAN_BUDGET: usize = 5_000;
/// Tags counted at most per repository row.
pub const AGG_TAGS: usize = 1_000;
/// Manifest revisions read at most per repository row (last push, size).
pub const AGG_MANIFESTS: usize = 200;

/// A figure read up to a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounded {
    pub value: u64,
    /// The bound was reached: the true figure is at least `value`.
    pub more: bool,
}

/// One repository row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRow {
    pub name: String,
    pub tags: Bounded,
    /// The newest revision's creation (unix seconds), 0 when none.
    pub last_push: u64,
    /// Distinct blob bytes plus manifest bytes of the revisions read.
    pub size: Bounded,
}

/// A page of rows and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// The `last` of the next page, when there is one.
    pub next: Option<String>,
}

/// Which repositories a page shows.
pub struct RepoQuery<'a> {
    /// Names must start with this.
    pub prefix: &'a str,
    /// Names must contain this.
    pub contains: &'a str,
    pub last: Option<&'a str>,
    pub n: usize,
    /// Literal prefixes covering everything the viewer may see (`Rules::pull_prefixes`);
    /// `None`: no narrowing.
    pub visible: Option<Vec<String>>,
}

/// The roots to scan: the search prefix, narrowed by the viewer's prefixes.
fn roots(prefix: &str, visible: &Option<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = match visible {
        None => vec![prefix.to_string()],
        Some(ps) => ps
            .iter()
            .filter_map(|p| {
                if p.starts_with(prefix) {
                    Some(p.clone())
                } else if prefix.starts_with(p.as_str()) {
                    Some(prefix.to_string())
                } else {
                    None
                }
            })
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

/// One page of repositories that `allows` admits.
pub fn repositories(
    reg: &Registry,
    q: &RepoQuery<'_>,
    allows: &dyn Fn(&str) -> bool,
) -> Result<Page<RepoRow>> {
    reg.meta().read(|t| {
        let mut names: Vec<String> = Vec::new();
        let mut scanned = 0usize;
        let mut last_seen: Option<String> = None;
        let mut full = false;
        let mut budget_out = false;
        for root in roots(q.prefix, &q.visible) {
            if q.last
                .is_some_and(|l| l > root.as_str() && !l.starts_with(root.as_str()))
            {
                continue;
            }
            repos::scan_prefix(t, &root, q.last, |name| {
                if !name.contains(q.contains) || !allows(name) {
                    scanned += 1;
                    if scanned >= SCAN_BUDGET {
                        budget_out = true;
                        last_seen = Some(name.to_string());
                        return false;
                    }
                    return true;
                }
                if names.len() == q.n {
                    full = true;
                    return false;
                }
                scanned += 1;
                names.push(name.to_string());
                true
            })?;
            if full || budget_out {
                break;
            }
        }
        let next = if full {
            names.last().cloned()
        } else if budget_out {
            last_seen
        } else {
            None
        };
        let rows = names
            .into_iter()
            .map(|name| repo_row(t, name))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { rows, next })
    })
}

/// The bounded figures of repository `name`.
fn repo_row(t: &ReadTables<'_>, name: String) -> Result<RepoRow> {
    let counted = t.tags_page(&name, None, AGG_TAGS + 1)?.len();
    let tags = Bounded {
        value: counted.min(AGG_TAGS) as u64,
        more: counted > AGG_TAGS,
    };
    let mut size = Bounded::default();
    let mut last_push = 0;
    let mut seen = BTreeSet::new();
    // The rows of `name` come first among those of names starting with it.
    let revisions = t.manifests_page(&name, None, AGG_MANIFESTS + 1)?;
    for (read, (r, _, v)) in revisions.iter().enumerate() {
        if *r != name {
            break;
        }
        if read == AGG_MANIFESTS {
            size.more = true;
            break;
        }
        let Ok(rec) = serde_json::from_slice::<ManifestRecord>(v) else {
            continue;
        };
        last_push = last_push.max(rec.created);
        size.value += rec.size;
        for b in &rec.blobs {
            if seen.insert(b.clone())
                && let Some(row) = blobs::get(t, b)?
            {
                size.value += row.size;
            }
        }
    }
    Ok(RepoRow {
        name,
        tags,
        last_push,
        size,
    })
}

/// One tag row (before the store is read for platforms).
#[derive(Debug, Clone, PartialEq)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    pub record: Option<ManifestRecord>,
    /// Manifest bytes plus the distinct blobs it names (and, for an index, its children's).
    pub size: u64,
}

/// Up to `n` tags of `repo` containing `contains`, after `last`; `None` when the repository
/// does not exist.
pub fn tags(
    reg: &Registry,
    repo: &str,
    contains: &str,
    last: Option<&str>,
    n: usize,
) -> Result<Option<Page<TagRow>>> {
    reg.meta().read(|t| {
        if !repos::exists(t, repo)? {
            return Ok(None);
        }
        let mut rows = Vec::new();
        let mut next = None;
        let mut scanned = 0usize;
        let mut after = last.map(str::to_string);
        'pages: loop {
            let page = t.tags_page(repo, after.as_deref(), TAG_PAGE)?;
            let full = page.len() == TAG_PAGE;
            for (tag, digest) in page {
                scanned += 1;
                if !tag.contains(contains) {
                    if scanned >= SCAN_BUDGET {
                        next = Some(tag);
                        break 'pages;
                    }
                    after = Some(tag);
                    continue;
                }
                if rows.len() == n {
                    next = rows.last().map(|r: &TagRow| r.tag.clone());
                    break 'pages;
                }
                let record = manifests::get(t, repo, &digest)?;
                let size = match &record {
                    Some(rec) => revision_size(t, repo, rec)?,
                    None => 0,
                };
                after = Some(tag.clone());
                rows.push(TagRow {
                    tag,
                    digest,
                    record,
                    size,
                });
            }
            if !full {
                break;
            }
        }
        Ok(Some(Page { rows, next }))
    })
}

/// Tags read from the store at a time.
const TAG_PAGE: usize = 256;

/// Children of an index read at most for its size.
const INDEX_CHILDREN: usize = 64;

/// The bytes of revision `rec`: itself and its distinct blobs; for an index, its children too.
fn revision_size(t: &ReadTables<'_>, repo: &str, rec: &ManifestRecord) -> Result<u64> {
    let mut seen = BTreeSet::new();
    let mut total = rec.size;
    let mut add_blobs = |r: &ManifestRecord, total: &mut u64| -> Result<()> {
        for b in &r.blobs {
            if seen.insert(b.clone())
                && let Some(row) = blobs::get(t, b)?
            {
                *total += row.size;
            }
        }
        Ok(())
    };
    add_blobs(rec, &mut total)?;
    for child in rec.manifests.iter().take(INDEX_CHILDREN) {
        if let Some(c) = manifests::get(t, repo, child)? {
            total += c.size;
            add_blobs(&c, &mut total)?;
        }
    }
    Ok(total)
}
