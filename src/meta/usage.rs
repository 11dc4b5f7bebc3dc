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

use redb::{ReadableTable, Table};

use super::{ManifestRecord, WriteTables};
use crate::error::Result;

/// Settings rows `quota_namespace:<prefix>` → "" name the namespaces whose usage is tracked.
pub const NAMESPACE_SETTING: &str = "quota_namespace:";

type ScopeKey = (&'static str, &'static str);

/// The scope of repository `repo`.
pub fn repo_scope(repo: &str) -> String {
    format!("repo:{repo}")
}

/// The scope of namespace `prefix`.
pub fn ns_scope(prefix: &str) -> String {
    format!("ns:{prefix}")
}

/// The namespace prefixes whose usage is tracked.
pub fn tracked_namespaces(
    settings: &impl ReadableTable<&'static str, &'static str>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in settings.range::<&str>(NAMESPACE_SETTING..)? {
        let (k, _) = item?;
        let Some(prefix) = k.value().strip_prefix(NAMESPACE_SETTING) else {
            break;
        };
        out.push(prefix.to_string());
    }
    Ok(out)
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
pub fn get(t: &impl ReadableTable<&'static str, u64>, scope: &str) -> Result<u64> {
    Ok(t.get(scope)?.map_or(0, |v| v.value()))
}

fn add(usage: &mut Table<'_, &'static str, u64>, scope: &str, delta: i64) -> Result<()> {
    let old = get(usage, scope)?;
    let new = old.saturating_add_signed(delta);
    if new == 0 {
        usage.remove(scope)?;
    } else {
        usage.insert(scope, new)?;
    }
    Ok(())
}

fn hold_in(
    usage: &mut Table<'_, &'static str, u64>,
    scope_blobs: &mut Table<'_, ScopeKey, (u64, u64)>,
    scope: &str,
    digest: &str,
    size: u64,
) -> Result<()> {
    let (n, size) = scope_blobs
        .get((scope, digest))?
        .map_or((0, size), |v| v.value());
    scope_blobs.insert((scope, digest), (n + 1, size))?;
    if n == 0 {
        add(usage, scope, size as i64)?;
    }
    Ok(())
}

/// `repo` now holds `digest` once more (a new link or a new revision of it).
pub(super) fn hold(t: &mut WriteTables<'_>, repo: &str, digest: &str, size: u64) -> Result<()> {
    let namespaces = tracked_namespaces(&t.settings)?;
    for scope in scopes_of(repo, &namespaces) {
        hold_in(&mut t.usage, &mut t.scope_blobs, &scope, digest, size)?;
    }
    Ok(())
}

/// `repo` holds `digest` once less (a link or a revision of it removed).
pub(super) fn release(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<()> {
    let namespaces = tracked_namespaces(&t.settings)?;
    for scope in scopes_of(repo, &namespaces) {
        let Some((n, size)) = t
            .scope_blobs
            .get((scope.as_str(), digest))?
            .map(|v| v.value())
        else {
            continue;
        };
        if n <= 1 {
            t.scope_blobs.remove((scope.as_str(), digest))?;
            add(&mut t.usage, &scope, -(size as i64))?;
        } else {
            t.scope_blobs
                .insert((scope.as_str(), digest), (n - 1, size))?;
        }
    }
    Ok(())
}

/// The size a holding of `digest` counts: its blob row's, else the revision's recorded size.
pub(super) fn size_of(
    blobs: &impl ReadableTable<&'static str, (u64, u64, u64)>,
    digest: &str,
    fallback: u64,
) -> Result<u64> {
    Ok(blobs.get(digest)?.map_or(fallback, |v| v.value().0))
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
    repo_blobs: &impl ReadableTable<ScopeKey, u64>,
    manifests: &impl ReadableTable<ScopeKey, &'static [u8]>,
    blobs: &impl ReadableTable<&'static str, (u64, u64, u64)>,
    namespaces: &[String],
    only: Option<&str>,
) -> Result<Recomputed> {
    let mut out = Recomputed::default();
    let start = only.unwrap_or("");
    for item in repo_blobs.range::<(&str, &str)>((start, "")..)? {
        let (k, _) = item?;
        let (repo, d) = k.value();
        if !repo.starts_with(start) {
            break;
        }
        let size = size_of(blobs, d, 0)?;
        for scope in scopes_of(repo, namespaces) {
            out.hold(scope, d, size);
        }
    }
    for item in manifests.range::<(&str, &str)>((start, "")..)? {
        let (k, v) = item?;
        let (repo, d) = k.value();
        if !repo.starts_with(start) {
            break;
        }
        let rec: ManifestRecord = serde_json::from_slice(v.value())?;
        let size = size_of(blobs, d, rec.size)?;
        for scope in scopes_of(repo, namespaces) {
            out.hold(scope, d, size);
        }
    }
    Ok(out)
}

/// Replaces `usage` and `scope_blobs` whole with `r` (migration backfill, fsck repair).
pub fn replace_all(
    usage: &mut Table<'_, &'static str, u64>,
    scope_blobs: &mut Table<'_, ScopeKey, (u64, u64)>,
    r: &Recomputed,
) -> Result<()> {
    usage.retain(|_, _| false)?;
    scope_blobs.retain(|_, _| false)?;
    for (scope, bytes) in &r.usage {
        usage.insert(scope.as_str(), *bytes)?;
    }
    for ((scope, d), v) in &r.scope_blobs {
        scope_blobs.insert((scope.as_str(), d.as_str()), *v)?;
    }
    Ok(())
}

/// Starts tracking namespace `prefix`: computes its usage once from the repositories under it
/// and records it in `settings`. False when it was tracked already.
pub fn track_namespace(t: &mut WriteTables<'_>, prefix: &str) -> Result<bool> {
    let key = format!("{NAMESPACE_SETTING}{prefix}");
    if t.settings.get(key.as_str())?.is_some() {
        return Ok(false);
    }
    let ns = [prefix.to_string()];
    let r = recompute(&t.repo_blobs, &t.manifests, &t.blobs, &ns, Some(prefix))?;
    let scope = ns_scope(prefix);
    forget_scope(t, &scope)?;
    for ((s, d), v) in &r.scope_blobs {
        if *s == scope {
            t.scope_blobs.insert((s.as_str(), d.as_str()), *v)?;
        }
    }
    if let Some(bytes) = r.usage.get(&scope).filter(|b| **b > 0) {
        t.usage.insert(scope.as_str(), *bytes)?;
    }
    t.settings.insert(key.as_str(), "")?;
    Ok(true)
}

/// Stops tracking namespace `prefix` and forgets its usage. False when it was not tracked.
pub fn untrack_namespace(t: &mut WriteTables<'_>, prefix: &str) -> Result<bool> {
    let key = format!("{NAMESPACE_SETTING}{prefix}");
    if t.settings.remove(key.as_str())?.is_none() {
        return Ok(false);
    }
    forget_scope(t, &ns_scope(prefix))?;
    Ok(true)
}

fn forget_scope(t: &mut WriteTables<'_>, scope: &str) -> Result<()> {
    let mut digests = Vec::new();
    for item in t.scope_blobs.range::<(&str, &str)>((scope, "")..)? {
        let (k, _) = item?;
        let (s, d) = k.value();
        if s != scope {
            break;
        }
        digests.push(d.to_string());
    }
    for d in digests {
        t.scope_blobs.remove((scope, d.as_str()))?;
    }
    t.usage.remove(scope)?;
    Ok(())
}

/// Every scope's usage, in scope order.
pub fn all(t: &impl ReadableTable<&'static str, u64>) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_string(), v.value()));
    }
    Ok(out)
}

/// The differences between the stored usage and a recomputation in the same snapshot (fsck).
pub fn verify(t: &super::ReadTables) -> Result<Vec<String>> {
    let namespaces = tracked_namespaces(&t.settings)?;
    let want = recompute(&t.repo_blobs, &t.manifests, &t.blobs, &namespaces, None)?;
    let mut problems = Vec::new();
    let stored: BTreeMap<String, u64> = all(&t.usage)?.into_iter().collect();
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
    let mut rows = BTreeMap::new();
    for item in t.scope_blobs.iter()? {
        let (k, v) = item?;
        let (s, d) = k.value();
        rows.insert((s.to_string(), d.to_string()), v.value());
    }
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
    let namespaces = tracked_namespaces(&t.settings)?;
    let r = recompute(&t.repo_blobs, &t.manifests, &t.blobs, &namespaces, None)?;
    replace_all(&mut t.usage, &mut t.scope_blobs, &r)
}
