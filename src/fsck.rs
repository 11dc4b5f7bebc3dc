//! Store verification: every blob file against its digest (in parallel), every table against
//! the others, reference counts against the manifests. `repair` fixes what is safe to fix
//! while no server holds the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Result;
use crate::meta::{
    ManifestRecord, UploadRecord, blobs, manifests, referrers, stats, tags, uploads,
};
use crate::registry::Registry;

/// What `fsck` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    /// Inconsistencies: missing or corrupt files, wrong counts, dangling rows.
    pub errors: Vec<String>,
    /// Harmless leftovers (orphan files, stale temp files) that GC also reclaims.
    pub notices: Vec<String>,
    /// What `repair` changed.
    pub repaired: Vec<String>,
}

impl FsckReport {
    /// True when no error remains.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for n in &self.notices {
            writeln!(f, "notice: {n}")?;
        }
        for r in &self.repaired {
            writeln!(f, "repaired: {r}")?;
        }
        write!(
            f,
            "{} blob(s), {} bytes verified: {} error(s), {} notice(s), {} repair(s)",
            self.blobs_checked,
            self.bytes_checked,
            self.errors.len(),
            self.notices.len(),
            self.repaired.len()
        )
    }
}

/// A consistent copy of the tables fsck compares.
#[derive(Default)]
struct Snapshot {
    blobs: BTreeMap<String, blobs::BlobRow>,
    links: BTreeSet<(String, String)>,
    /// Links in only one of the link table and its reverse index.
    asymmetric_links: Vec<(String, String)>,
    manifests: Vec<(String, String, ManifestRecord)>,
    tags: Vec<(String, String, String)>,
    referrers: Vec<(String, String, String)>,
    uploads: BTreeMap<String, UploadRecord>,
    /// `stats.blob_bytes` as recorded.
    blob_bytes: u64,
    /// Deferred references of cached manifests: (digest, repository, manifest).
    deferred: BTreeSet<(String, String, String)>,
}

fn snapshot(registry: &Registry) -> Result<Snapshot> {
    registry.meta().read(|t| {
        let mut s = Snapshot::default();
        blobs::scan(t, |d, row| {
            s.blobs.insert(d.to_string(), row);
            Ok(true)
        })?;
        blobs::scan_links(t, "", |r, d| {
            s.links.insert((r.to_string(), d.to_string()));
            Ok(true)
        })?;
        s.asymmetric_links = t.asymmetric_links()?;
        manifests::scan(t, "", |r, d, rec| {
            s.manifests.push((r.to_string(), d.to_string(), rec));
            Ok(true)
        })?;
        s.tags = tags::everything(t)?;
        s.referrers = referrers::everything(t)?;
        s.deferred = crate::meta::deferred::everything(t)?.into_iter().collect();
        s.uploads = uploads::all(t)?.into_iter().collect();
        s.blob_bytes = stats::get(t, stats::BLOB_BYTES)?;
        Ok(s)
    })
}

/// Hashes every recorded blob file with `workers` threads; returns (digest, problem) pairs.
fn verify_files(
    registry: &Registry,
    rows: &[(&String, u64)],
    workers: usize,
    bar: &ProgressBar,
) -> Vec<(String, String)> {
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((d, size)) = rows.get(i) else { break };
                    if let Some(problem) = verify_one(registry, d, *size, bar) {
                        problems
                            .lock()
                            .expect("problems lock")
                            .push(((*d).clone(), problem));
                    }
                }
            });
        }
    });
    problems.into_inner().expect("problems lock")
}

const MISSING: &str = "file is missing";

/// Re-checks a blob whose file was missing against the tables as they are now: on a live store
/// the collector may have removed it after the snapshot. Under the digest's lock a visible row
/// always has its file (writers place the file before committing the row; the collector
/// unlinks only after removing the row). `None` when the blob is simply gone.
fn recheck_missing(registry: &Registry, d: &str, bar: &ProgressBar) -> Result<Option<String>> {
    let (recorded, present) = {
        let _lock = registry.digest_locks().lock(d)?;
        let row = registry.meta().read(|t| blobs::get(t, d))?;
        let present = match (&row, d.parse::<Digest>()) {
            (Some(_), Ok(digest)) => registry.store().stat(&digest)?.is_some(),
            _ => false,
        };
        (row, present)
    };
    Ok(match recorded {
        None => None,
        Some(_) if !present => Some(MISSING.into()),
        // Uploaded again since: verify the file now there.
        Some(row) => verify_one(registry, d, row.size, bar),
    })
}

fn verify_one(registry: &Registry, d: &str, size: u64, bar: &ProgressBar) -> Option<String> {
    let digest: Digest = match d.parse() {
        Ok(d) => d,
        Err(_) => return Some("row key is not a valid digest".into()),
    };
    let (actual, len) = match registry.store().hash_blob(&digest, &mut |n| bar.inc(n)) {
        Ok(Some(found)) => found,
        Ok(None) => return Some(MISSING.into()),
        Err(e) => return Some(format!("read error: {e}")),
    };
    if len != size {
        return Some(format!("file has {len} bytes, the row says {size}"));
    }
    (actual != digest).then(|| format!("content hashes to {actual}"))
}

/// Checks the whole store. With `repair`, fixes counts, dangling rows and leftovers (only when
/// this process holds the store exclusively). `progress` draws a bar on stderr.
pub fn fsck(registry: &Registry, repair: bool, progress: bool) -> Result<FsckReport> {
    fsck_with_hook(registry, repair, progress, &|| {})
}

/// `fsck`, calling `after_snapshot` once the tables are read and before the files are checked
/// (tests use it to force the collector into the pass).
pub fn fsck_with_hook(
    registry: &Registry,
    repair: bool,
    progress: bool,
    after_snapshot: &dyn Fn(),
) -> Result<FsckReport> {
    let s = snapshot(registry)?;
    after_snapshot();
    let mut report = FsckReport::default();

    // 1. Every recorded blob file, hashed.
    let rows: Vec<(&String, u64)> = s.blobs.iter().map(|(d, r)| (d, r.size)).collect();
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "verifying {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Errors fsck cannot fix, and errors `repair` fixes.
    let mut fatal = Vec::new();
    let mut fixable = Vec::new();
    for (d, problem) in verify_files(registry, &rows, workers, &bar) {
        let problem = if problem == MISSING {
            match recheck_missing(registry, &d, &bar)? {
                Some(p) => p,
                None => continue, // collected during the pass
            }
        } else {
            problem
        };
        fatal.push(format!("blob {d}: {problem}"));
    }
    bar.finish_and_clear();
    report.blobs_checked = rows.len() as u64;
    report.bytes_checked = total;

    // 2. Files nobody recorded. One not named by a digest is not kura's: reported, left alone.
    let mut orphans = Vec::new();
    registry.store().list_blobs(&mut |l| {
        if s.blobs.contains_key(&l.name) {
            return Ok(());
        }
        match l.name.parse::<Digest>() {
            Ok(d) => {
                report.notices.push(format!(
                    "orphan file {} (no blob row; GC reclaims it)",
                    l.name
                ));
                orphans.push(d);
            }
            Err(_) => report.notices.push(format!(
                "file {} under blobs/ is not named by a digest (not kura's; left in place)",
                l.name
            )),
        }
        Ok(())
    })?;

    // 3. Reference counts and references, recomputed from the manifests.
    // A cached manifest's reference to content not stored yet is deferred, not counted; a
    // deferral is valid only while that content has no row and the revision names it.
    let mut expected: HashMap<&str, u64> = HashMap::new();
    let mut revisions = BTreeSet::new();
    let mut valid_deferrals = BTreeSet::new();
    for (repo, d, rec) in &s.manifests {
        revisions.insert((repo.as_str(), d.as_str()));
        *expected.entry(d).or_default() += 1;
        for r in rec.blobs.iter().chain(&rec.manifests) {
            let key = (r.clone(), repo.clone(), d.clone());
            if !s.blobs.contains_key(r) && s.deferred.contains(&key) {
                valid_deferrals.insert(key);
            } else {
                *expected.entry(r).or_default() += 1;
            }
        }
    }
    let bad_deferrals: Vec<_> = s.deferred.difference(&valid_deferrals).cloned().collect();
    for (d, r, m) in &bad_deferrals {
        fixable.push(format!(
            "deferred reference of {r}@{m} to {d} is stale (stored, or not named by a revision)"
        ));
    }
    let mut count_fixes = Vec::new();
    for (d, want) in &expected {
        if !s.blobs.contains_key(*d) {
            fatal.push(format!(
                "{d} is referenced by {want} manifest revision(s) but has no blob row"
            ));
        }
    }
    for (d, row) in &s.blobs {
        let want = expected.get(d.as_str()).copied().unwrap_or(0);
        if row.refs != want {
            fixable.push(format!(
                "blob {d}: reference count {} but manifests imply {want}",
                row.refs
            ));
            count_fixes.push((d.clone(), blobs::BlobRow { refs: want, ..*row }));
        }
    }
    // The store totals kept as counters.
    let blob_bytes: u64 = s.blobs.values().map(|r| r.size).sum();
    let fix_bytes = blob_bytes != s.blob_bytes;
    if fix_bytes {
        fixable.push(format!(
            "stats: blob_bytes is {} but the blob rows sum to {blob_bytes}",
            s.blob_bytes
        ));
    }

    // Quota usage, recomputed from links and revisions in one snapshot.
    let usage_problems = registry.meta().read(|t| crate::meta::usage::verify(t))?;
    let fix_usage = !usage_problems.is_empty();
    fixable.extend(usage_problems);

    // 4. Links, tags, referrers and uploads pointing at nothing.
    let dangling_links: Vec<_> = s
        .links
        .iter()
        .filter(|(_, d)| !s.blobs.contains_key(d))
        .cloned()
        .collect();
    for (r, d) in &dangling_links {
        fixable.push(format!("repository {r} links {d}, which has no blob row"));
    }
    let asymmetric = s.asymmetric_links.clone();
    for (r, d) in &asymmetric {
        fixable.push(format!(
            "link {r} -> {d} is missing from one of repo_blobs / blob_links"
        ));
    }
    let dangling_tags: Vec<_> = s
        .tags
        .iter()
        .filter(|(r, _, d)| !revisions.contains(&(r.as_str(), d.as_str())))
        .cloned()
        .collect();
    for (r, t, d) in &dangling_tags {
        fixable.push(format!(
            "tag {r}:{t} points at {d}, which is not a revision of {r}"
        ));
    }
    let dangling_referrers: Vec<_> = s
        .referrers
        .iter()
        .filter(|(r, _, d)| !revisions.contains(&(r.as_str(), d.as_str())))
        .cloned()
        .collect();
    for (r, subject, d) in &dangling_referrers {
        fixable.push(format!("referrer {r}@{d} of {subject} is not a revision"));
    }
    let mut stored = BTreeSet::new();
    registry.store().list_uploads(&mut |l| {
        stored.insert(l.name);
        Ok(())
    })?;
    let mut stale_records = Vec::new();
    // Every session stores something from its start (a file; on S3 its session object).
    for id in s.uploads.keys() {
        if !stored.contains(id) {
            report.notices.push(format!("upload {id} has no file"));
            stale_records.push(id.clone());
        }
    }
    let mut stray_files = Vec::new();
    for id in stored {
        if !s.uploads.contains_key(&id) {
            report.notices.push(format!("stray upload file {id}"));
            stray_files.push(id);
        }
    }

    if !repair {
        report.errors = fatal;
        report.errors.extend(fixable);
        return Ok(report);
    }
    registry.meta().write(|t| {
        for (d, row) in &count_fixes {
            blobs::put(t, d, *row)?;
        }
        for (d, r, m) in &bad_deferrals {
            crate::meta::deferred::remove(t, d, r, m)?;
        }
        for (r, d) in dangling_links.iter().chain(&asymmetric) {
            blobs::unlink(t, r, d)?;
            if s.blobs.contains_key(d) && s.links.contains(&(r.clone(), d.clone())) {
                blobs::link(t, r, d)?;
            }
        }
        for (r, tag, _) in &dangling_tags {
            tags::remove(t, r, tag)?;
        }
        for (r, subject, d) in &dangling_referrers {
            referrers::remove(t, r, subject, d)?;
        }
        for id in &stale_records {
            uploads::remove(t, id)?;
        }
        if fix_bytes {
            // Recomputed in this transaction: rows may have changed since the snapshot.
            let mut sum = 0u64;
            blobs::scan(t, |_, row| {
                sum += row.size;
                Ok(true)
            })?;
            stats::set(t, stats::BLOB_BYTES, sum)?;
        }
        // After the link repairs above, which change usage themselves.
        if fix_usage || !dangling_links.is_empty() || !asymmetric.is_empty() {
            crate::meta::usage::rebuild(t)?;
        }
        Ok(())
    })?;
    report.repaired = fixable;
    report.errors = fatal;
    for d in &orphans {
        registry.store().remove_blob(d)?;
        report.repaired.push(format!("removed orphan file {d}"));
    }
    for id in &stale_records {
        registry.drop_session(id);
    }
    for id in stray_files.iter().chain(&stale_records) {
        let state = s.uploads.get(id).map(|r| &r.state);
        registry.store().remove_upload(id, state)?;
        report.repaired.push(format!("removed upload {id}"));
    }
    tracing::info!(target: "kura::fsck", repaired = report.repaired.len(), "fsck repair finished");
    Ok(report)
}
