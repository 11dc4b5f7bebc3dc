//! Retention (`[[policies.retention]]`, `policy::retention`) applied to the store: the
//! collector runs it first (so the revisions it untags can be collected in the same run), and
//! `kura retention` / `POST /admin/retention` run it alone. Pulls noted in memory are written
//! first, so `not_pulled_for` sees them.
//!
//! Each repository's tags are planned on one read snapshot; each removal is then its own write
//! transaction that re-checks the tag still names the revision the plan saw, pushed at the same
//! time: a push that moved or re-pushed the tag meanwhile wins, and a tag pushed after the plan
//! is not in it. Immutable tags are excluded by the plan and refused by the removal itself.

use std::time::Instant;

use super::GcReport;
use crate::error::Result;
use crate::meta::{ReadTables, manifests, now_secs, repos, tags};
use crate::policy::retention::{Rule, TagState};
use crate::registry::{Registry, remove_tag};

/// Runs retention alone now (blocking) and reports it as a collection would.
pub fn run(registry: &Registry, dry_run: bool) -> Result<GcReport> {
    run_at(registry, dry_run, now_secs())
}

/// `run` as if the time were `now` (unix seconds).
pub fn run_at(registry: &Registry, dry_run: bool, now: u64) -> Result<GcReport> {
    let _running = registry.gc_lock();
    let start = Instant::now();
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    apply(registry, dry_run, now, &mut report)?;
    report.duration_ms = start.elapsed().as_millis() as u64;
    crate::ops::metrics::record_retention(&report);
    tracing::info!(target: "kura::retention", dry_run, tags = report.tags_removed, "retention finished");
    Ok(report)
}

/// Removes (or, dry, lists) the tags the retention rules in force select at `now`, adding
/// each as `tag <repo>:<tag>` to `report`.
pub(super) fn apply(
    registry: &Registry,
    dry_run: bool,
    now: u64,
    report: &mut GcReport,
) -> Result<()> {
    let policies = registry.policies();
    if policies.retention.is_empty() {
        return Ok(());
    }
    // A dry run too, so that it sees what the real run would.
    registry.flush_tag_pulls_blocking()?;
    let (names, _) = registry.meta().read(|t| repos::list(t, None, usize::MAX))?;
    for repo in names {
        let Some(rule) = policies.retention.rule_for(&repo) else {
            continue;
        };
        let planned = registry
            .meta()
            .read(|t| plan(t, rule, &repo, &policies.immutable, now))?;
        for (tag, _why) in planned {
            let removed = dry_run || remove_planned(registry, &repo, &tag)?;
            if removed {
                report.tags_removed += 1;
                report.items.push(format!("tag {repo}:{}", tag.tag));
            }
        }
    }
    Ok(())
}

/// Removes tag `planned.tag` of `repo` in its own write transaction if it still names
/// `planned.digest` with the push time the plan saw (a push since wins: `false`); immutable
/// tags are refused. The collector's step, public for tests.
pub fn remove_planned(registry: &Registry, repo: &str, planned: &TagState) -> Result<bool> {
    let policies = registry.policies();
    registry.meta().write(|t| {
        let current = tags::get(t, repo, &planned.tag)?;
        if current.as_deref() != Some(planned.digest.as_str()) {
            return Ok(false);
        }
        let at = pushed(t, repo, &planned.tag, &planned.digest)?;
        if at != planned.pushed {
            return Ok(false);
        }
        Ok(remove_tag(t, &policies.immutable, repo, &planned.tag)?.is_some())
    })
}

/// The tags of `repo` `rule` removes at `now`, read from one snapshot.
fn plan(
    t: &ReadTables<'_>,
    rule: &Rule,
    repo: &str,
    immutable: &crate::policy::immutable::ImmutableTags,
    now: u64,
) -> Result<Vec<(TagState, crate::policy::retention::Reason)>> {
    let mut states = Vec::new();
    for (tag, digest) in tags::all(t, repo)? {
        states.push(TagState {
            pushed: pushed(t, repo, &tag, &digest)?,
            pulled: tags::pulled_at(t, repo, &tag)?,
            tag,
            digest,
        });
    }
    Ok(rule.select(repo, states, immutable, now))
}

/// When `tag` (naming `digest`) was last pushed: its `tag_pushes` row, else (a tag pushed
/// before pushes were recorded) when its revision was first pushed.
fn pushed(
    t: &(impl crate::meta::ReadTx + ?Sized),
    repo: &str,
    tag: &str,
    digest: &str,
) -> Result<u64> {
    if let Some(at) = tags::pushed_at(t, repo, tag)? {
        return Ok(at);
    }
    Ok(manifests::get(t, repo, digest)?.map_or(0, |r| r.created))
}
