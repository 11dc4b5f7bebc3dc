//! Quota usage (v7): the unique bytes each scope holds, kept exact in the transactions that
//! link and unlink blobs and add and remove manifest revisions.
//!
//! A repository *holds* a digest while it has a `repo_blobs` link to it or a `manifests` row
//! of it. Scopes are `repo:<name>` (every repository, always) and `ns:<prefix>` (the namespace
//! prefixes a quota names, recorded in `settings` as `quota_namespace:<prefix>`).
//! `scope_blobs[(scope, digest)]` = (holdings of the digest by the scope's repositories, its
//! size); the digest's size counts toward `usage[scope]` while that count is above zero, so a
//! layer shared by two repositories of one namespace counts once for it. `hold` and `release`
//! are called only by `blobs::link`/`unlink` and `manifests::insert`/`remove`, so every path
//! that changes those rows (pushes, mounts, GC, the mirror, imports, fsck repairs) keeps usage
//! exact.

use std::collections::BTreeMap;

use super::rows::ReadTx;
use super::{ManifestRecord, WriteTables};
use crate::error::Result;

/// Settings rows `quota_namespace:<prefix>` → "" name the namespaces whose usage is tracked.
pub const NAMESPACE_SETTING: &str = "quota_namespace:";

/// The scope of repository `repo`.
pub fn repo_scope(repo: &str) -> String {
    format!("repo:{repo}")
}

/// The scope of namespace `prefix`.
pub fn ns_scope(prefix: &str) -> String {
    format!("ns:{prefix}")
}

/// The namespace prefixes whose usage is tracked.
pub fn tracked_namespaces(t: &(impl ReadTx + ?Sized)) -> Result<Vec<String>> {
    Ok(t.settings_with_prefix(NAMESPACE_SETTING)?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix(NAMESPACE_SETTING).map(str::to_string))
        .collect())
}

/// The scopes `repo` belongs to, given the tracked namespace prefixes.
pub fn scopes_of(repo: &str, namespaces: &[String]) -> Vec<String> {
    let mut out = vec![repo_scope(repo)];
    out.extend(
        namespaces
            .iter()
            .filter(|p| repo.starts_with(p.as_str()))
            .map(|p| ns_scope(p)),
    );
    out
}

/// The bytes `scope` holds.
pub fn get(t: &(impl ReadTx + ?Sized), scope: &str) -> Result<u64> {
    Ok(t.usage(scope)?.unwrap_or(0))
}

fn add(t: &mut WriteTables<'_>, scope: &str, delta: i64) -> Result<()> {
    let new = get(t, scope)?.saturating_add_signed(delta);
    if new == 0 {
        t.remove_usage(scope)
    } else {
        t.put_usage(scope, new)
    }
}

/// `repo` now holds `digest` once more (a new link or a new revision of it).
pub(super) fn hold(t: &mut WriteTables<'_>, repo: &str, digest: &str, size: u64) -> Result<()> {
    let namespaces = tracked_namespaces(t)?;
    for scope in scopes_of(repo, &namespaces) {
        let (n, size) = t.scope_blob(&scope, digest)?.unwrap_or((0, size));
        t.put_scope_blob(&scope, digest, (n + 1, size))?;
        if n == 0 {
            add(t, &scope, size as i64)?;
        }
    }
    Ok(())
}

/// `repo` holds `digest` once less (a link or a revision of it removed).
pub(super) fn release(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    let namespaces = tracked_namespaces(t)?;
    for scope in scopes_of(repo, &namespaces) {
        let Some((n, size)) = t.scope_blob(&scope, digest)? else {
            continue;
        };
        if n <= 1 {
            t.remove_scope_blob(&scope, digest)?;
            add(t, &scope, -(size as i64))?;
        } else {
            t.put_scope_blob(&scope, digest, (n - 1, size))?;
        }
    }
    Ok(())
}

/// The size a holding of `digest` counts: its blob row's, else the revision's recorded size.
pub(super) fn size_of(t: &(impl ReadTx + ?Sized), digest: &str, fallback: u64) -> Result<u64> {
    Ok(t.blob(digest)?.map_or(fallback, |r| r.size))
}

/// Usage recomputed from the link and revision tables: what `usage` and `scope_blobs` must hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recomputed {
    pub usage: BTreeMap<String, u64>,
    pub scope_blobs: BTreeMap<(String, String), (u64, u64)>,
}

impl Recomputed {
    fn hold(&mut self, scope: String, digest: &str, size: u64) {
        let e = self
            .scope_blobs
            .entry((scope.clone(), digest.to_string()))
            .or_insert((0, size));
        e.0 += 1;
        if e.0 == 1 {
            *self.usage.entry(scope).or_default() += size;
        }
    }
}

/// Recomputes the usage of every repository and of `namespaces` (all of them, or only the
/// repositories starting with `only`, when given).
pub fn recompute(
    t: &(impl ReadTx + ?Sized),
    namespaces: &[String],
    only: Option<&str>,
) -> Result<Recomputed> {
    let mut out = Recomputed::default();
    let prefix = only.unwrap_or("");
    super::blobs::scan_links(t, prefix, |repo, d| {
        let size = size_of(t, d, 0)?;
        for scope in scopes_of(repo, namespaces) {
            out.hold(scope, d, size);
        }
        Ok(true)
    })?;
    super::manifests::scan(t, prefix, |repo, d, rec: ManifestRecord| {
        let size = size_of(t, d, rec.size)?;
        for scope in scopes_of(repo, namespaces) {
            out.hold(scope, d, size);
        }
        Ok(true)
    })?;
    Ok(out)
}

/// Replaces `usage` and `scope_blobs` whole with `r` (migration backfill, fsck repair).
pub fn replace_all(t: &mut WriteTables<'_>, r: &Recomputed) -> Result<()> {
    t.clear_usage()?;
    for (scope, bytes) in &r.usage {
        t.put_usage(scope, *bytes)?;
    }
    for ((scope, d), v) in &r.scope_blobs {
        t.put_scope_blob(scope, d, *v)?;
    }
    Ok(())
}

/// Starts tracking namespace `prefix`: computes its usage once from the repositories under it
/// and records it in `settings`. False when it was tracked already.
pub fn track_namespace(t: &mut WriteTables<'_>, prefix: &str) -> Result<bool> {
    let key = format!("{NAMESPACE_SETTING}{prefix}");
    if t.setting(&key)?.is_some() {
        return Ok(false);
    }
    let ns = [prefix.to_string()];
    let r = recompute(t, &ns, Some(prefix))?;
    let scope = ns_scope(prefix);
    forget_scope(t, &scope)?;
    for ((s, d), v) in &r.scope_blobs {
        if *s == scope {
            t.put_scope_blob(s, d, *v)?;
        }
    }
    if let Some(bytes) = r.usage.get(&scope).filter(|b| **b > 0) {
        t.put_usage(&scope, *bytes)?;
    }
    t.put_setting(&key, "")?;
    Ok(true)
}

/// Stops tracking namespace `prefix` and forgets its usage. False when it was not tracked.
pub fn untrack_namespace(t: &mut WriteTables<'_>, prefix: &str) -> Result<bool> {
    let key = format!("{NAMESPACE_SETTING}{prefix}");
    if !t.remove_setting(&key)? {
        return Ok(false);
    }
    forget_scope(t, &ns_scope(prefix))?;
    Ok(true)
}

fn forget_scope(t: &mut WriteTables<'_>, scope: &str) -> Result<()> {
    for (_, d, _, _) in t.scope_blobs(Some(scope))? {
        t.remove_scope_blob(scope, &d)?;
    }
    t.remove_usage(scope)
}

/// Every scope's usage, in scope order.
pub fn all(t: &(impl ReadTx + ?Sized)) -> Result<Vec<(String, u64)>> {
    t.usages()
}

/// The differences between the stored usage and a recomputation in the same snapshot (fsck).
pub fn verify(t: &(impl ReadTx + ?Sized)) -> Result<Vec<String>> {
    let namespaces = tracked_namespaces(t)?;
    let want = recompute(t, &namespaces, None)?;
    let mut problems = Vec::new();
    let stored: BTreeMap<String, u64> = all(t)?.into_iter().collect();
    let scopes: std::collections::BTreeSet<&String> =
        stored.keys().chain(want.usage.keys()).collect();
    for scope in scopes {
        let (have, need) = (
            stored.get(scope).copied().unwrap_or(0),
            want.usage.get(scope).copied().unwrap_or(0),
        );
        if have != need {
            problems.push(format!(
                "usage of {scope} is {have} bytes but its links and revisions imply {need}"
            ));
        }
    }
    let rows: BTreeMap<(String, String), (u64, u64)> = t
        .scope_blobs(None)?
        .into_iter()
        .map(|(s, d, held, size)| ((s, d), (held, size)))
        .collect();
    let wrong = rows
        .iter()
        .filter(|(k, v)| want.scope_blobs.get(*k) != Some(*v))
        .count()
        + want
            .scope_blobs
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .count();
    if wrong > 0 {
        problems.push(format!(
            "scope_blobs: {wrong} row(s) disagree with the links and revisions"
        ));
    }
    Ok(problems)
}

/// Rewrites `usage` and `scope_blobs` from the link and revision tables (fsck --repair).
pub fn rebuild(t: &mut WriteTables<'_>) -> Result<()> {
    let namespaces = tracked_namespaces(t)?;
    let r = recompute(t, &namespaces, None)?;
    replace_all(t, &r)
}
