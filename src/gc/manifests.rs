//! Manifest revisions nothing keeps alive.

use std::collections::{BTreeMap, BTreeSet};

use super::{GcOptions, GcReport, expired};
use crate::error::Result;
use crate::meta::{ManifestRecord, ReadTx, WriteTables, manifests, now_secs, repos, tags};
use crate::registry::{Registry, remove_revision};

/// A repository's revisions and tags as read in one transaction.
struct RepoView {
    manifests: BTreeMap<String, ManifestRecord>,
    tagged: BTreeSet<String>,
}

/// The revisions of `view` to remove: expired and not live. Live are tagged revisions, the
/// children of live indexes and the referrers of live manifests (transitively); without
/// `delete_untagged` every revision is live except referrers whose subject is absent.
fn dead(view: &RepoView, opts: &GcOptions, now: u64) -> Vec<String> {
    let has_subject = |r: &ManifestRecord| r.subject.is_some();
    let mut live: BTreeSet<&str> = if opts.delete_untagged {
        view.tagged.iter().map(String::as_str).collect()
    } else {
        view.manifests
            .iter()
            .filter(|(d, r)| !has_subject(r) || view.tagged.contains(*d))
            .map(|(d, _)| d.as_str())
            .collect()
    };
    loop {
        let before = live.len();
        for (d, r) in &view.manifests {
            if live.contains(d.as_str()) {
                for c in &r.manifests {
                    if view.manifests.contains_key(c) {
                        live.insert(c.as_str());
                    }
                }
            } else if r.subject.as_deref().is_some_and(|s| live.contains(s)) {
                live.insert(d.as_str());
            }
        }
        if live.len() == before {
            break;
        }
    }
    view.manifests
        .iter()
        .filter(|(d, r)| !live.contains(d.as_str()) && expired(r.grace_start(), now, opts.grace))
        .map(|(d, _)| d.clone())
        .collect()
}

fn view_of(t: &(impl ReadTx + ?Sized), repo: &str) -> Result<RepoView> {
    Ok(RepoView {
        manifests: manifests::of_repo(t, repo)?.into_iter().collect(),
        tagged: tags::all(t, repo)?.into_iter().map(|(_, d)| d).collect(),
    })
}

/// Removes dead revisions repository by repository.
pub(super) fn collect(registry: &Registry, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let now = now_secs();
    let repos: Vec<String> = registry.meta().read(|t| repos::all(t))?;
    // Tagged revisions are live, so an immutable tag never stops a collection; the check
    // stays as every other removal's.
    let policies = registry.policies();
    for repo in repos {
        let planned = registry
            .meta()
            .read(|t| Ok(dead(&view_of(t, &repo)?, opts, now)))?;
        if planned.is_empty() {
            continue;
        }
        let removed = if opts.dry_run {
            planned
        } else {
            registry.meta().write(|t: &mut WriteTables<'_>| {
                // Recompute inside the write transaction: a tag or index pushed since wins.
                let dead = dead(&view_of(t, &repo)?, opts, now);
                for d in &dead {
                    remove_revision(t, &policies.immutable, &repo, d)?;
                }
                Ok(dead)
            })?
        };
        report.manifests_removed += removed.len() as u64;
        report
            .items
            .extend(removed.into_iter().map(|d| format!("{repo}@{d}")));
    }
    Ok(())
}
