//! The steps of an import, per repository, against a `Sink` (the store, `apply.rs`, or the
//! dry run, `plan.rs`):
//!
//! 1. layer links: each linked blob is hashed as it is brought in (or found recorded: linked);
//! 2. manifest revisions, children before the indexes naming them: each is read, hashed and
//!    parsed; a blob it names that the repository does not link yet is brought in too (a
//!    Distribution store may have lost a layer link to a blob DELETE); a revision naming
//!    something that could not be brought in is skipped, and so is every index naming it;
//! 3. tags (`current/link`), pointing at revisions recorded in step 2.
//!
//! Each item is recorded in its own transaction and skipped when found recorded, so an
//! interrupted import run again picks up where it stopped. Broken items become `Problem`s;
//! only failures of the destination (I/O, metadata) end the run.

use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};

use super::layout::{Layout, Link};
use super::plan::{ImportReport, ProblemKind};
pub(super) use super::sink::{BlobState, Imported, Sink};
use crate::digest::Digest;
use crate::error::{Code, Result};
use crate::manifest::{self, MAX_MANIFEST_SIZE, Parsed};
use crate::names::{RepoName, is_tag};

/// Blobs brought in at once.
const PARALLEL: usize = 4;

/// One import run over every repository of `layout`.
pub(super) struct Run<'a, S> {
    pub layout: &'a Layout,
    pub sink: &'a S,
    pub report: ImportReport,
    /// Blobs found broken (missing or corrupt) this run, with why: checked once each.
    broken: HashMap<String, (ProblemKind, String)>,
    /// Blobs of the repository at hand brought in ahead (`prefetch`), not yet accounted for.
    fetched: HashMap<String, Imported>,
}

/// A revision read, verified and parsed, waiting for its children.
struct Pending {
    digest: Digest,
    link: Link,
    body: Bytes,
    parsed: Parsed,
}

impl<'a, S: Sink> Run<'a, S> {
    pub fn new(layout: &'a Layout, sink: &'a S, dry_run: bool) -> Self {
        Run {
            layout,
            sink,
            report: ImportReport {
                dry_run,
                ..ImportReport::default()
            },
            broken: HashMap::new(),
            fetched: HashMap::new(),
        }
    }

    /// Imports every repository, telling `progress` (done, total, name) before each.
    pub async fn all(&mut self, progress: &dyn Fn(usize, usize, &str)) -> Result<()> {
        let names = self.layout.repositories()?;
        for (i, name) in names.iter().enumerate() {
            progress(i, names.len(), name);
            let name = name.as_str();
            self.report.repositories += 1;
            self.report.uploads_ignored += self.layout.upload_count(name)? as u64;
            match RepoName::parse(name) {
                Ok(repo) => self.repository(&repo).await?,
                Err(e) => {
                    let path = self.layout.repository_where(name);
                    self.report
                        .problem(ProblemKind::Unsupported, name, &path, e.message);
                }
            }
        }
        self.report.problems.sort_by(|a, b| {
            (&a.repository, &a.path, a.kind).cmp(&(&b.repository, &b.path, b.kind))
        });
        Ok(())
    }

    async fn repository(&mut self, repo: &RepoName) -> Result<()> {
        let r = repo.as_str();
        let links = self.layout.layer_links(r)?;
        self.prefetch(r, &links).await?;
        for link in links {
            match &link.target {
                Ok(d) => {
                    // Reported where it fails; the rest of the repository goes on.
                    let _ = self.blob(r, d, Some(&link.path)).await?;
                }
                Err((kind, why)) => self.report.problem(*kind, r, &link.path, why.clone()),
            }
        }
        let done = self.revisions(repo).await?;
        self.tags(r, &done).await
    }

    /// Brings in the blobs `links` name that the store lacks, `PARALLEL` at once; `blob`
    /// then accounts for each outcome in the links' order.
    async fn prefetch(&mut self, repo: &str, links: &[Link]) -> Result<()> {
        let mut todo = Vec::new();
        let mut seen = HashSet::new();
        for d in links.iter().filter_map(|l| l.target.as_ref().ok()) {
            let key = d.to_string();
            if self.broken.contains_key(&key) || !seen.insert(key) {
                continue;
            }
            if matches!(self.sink.blob_state(repo, d)?, BlobState::Absent)
                && self.layout.blob_size(d)?.is_some()
            {
                todo.push((d.clone(), self.layout.blob_source(d)));
            }
        }
        let sink = self.sink;
        let outcomes: Vec<(String, Result<Imported>)> = futures_util::stream::iter(todo)
            .map(|(d, src)| async move { (d.to_string(), sink.import_blob(repo, &d, &src).await) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (d, out) in outcomes {
            self.fetched.insert(d, out?);
        }
        Ok(())
    }

    /// Makes blob `d` available in `repo`; else says why not. A blob that a layer link
    /// (`link`) names and that cannot be brought in is reported there; one only a manifest
    /// names is reported with the manifest.
    async fn blob(
        &mut self,
        repo: &str,
        d: &Digest,
        link: Option<&str>,
    ) -> Result<Result<(), String>> {
        let key = d.to_string();
        let fetched = self.fetched.remove(&key);
        if fetched.is_none() {
            match self.sink.blob_state(repo, d)? {
                BlobState::Linked => {
                    // A layer link found in place; a manifest's blob linked before is no news.
                    if link.is_some() {
                        self.report.unchanged += 1;
                    }
                    return Ok(Ok(()));
                }
                BlobState::Recorded if self.sink.link_recorded(repo, d).await? => {
                    self.report.links_new += 1;
                    return Ok(Ok(()));
                }
                _ => {}
            }
        }
        let place = self.layout.blob_where(d);
        let outcome = match fetched {
            Some(outcome) => Some(outcome),
            None if self.broken.contains_key(&key) => None,
            None if self.layout.blob_size(d)?.is_none() => {
                let why = format!("blob {d} is missing ({place} does not exist)");
                self.broken
                    .insert(key.clone(), (ProblemKind::Dangling, why));
                None
            }
            None => {
                let src = self.layout.blob_source(d);
                Some(self.sink.import_blob(repo, d, &src).await?)
            }
        };
        let (kind, why) = match outcome {
            Some(Imported::Done { size, hard_linked }) => {
                self.report.blobs_new += 1;
                self.report.links_new += 1;
                self.report.bytes_new += size;
                match (self.report.dry_run, hard_linked) {
                    (true, _) => {}
                    (false, true) => self.report.hard_linked += 1,
                    (false, false) => self.report.copied += 1,
                }
                return Ok(Ok(()));
            }
            Some(Imported::Mismatch(actual)) => {
                let why = format!("{place} hashes to {actual}, not {d}");
                (ProblemKind::BadDigest, why)
            }
            None => self.broken[&key].clone(),
        };
        self.broken.insert(key, (kind, why.clone()));
        if let Some(link) = link {
            self.report.problem(kind, repo, link, why.clone());
        }
        Ok(Err(why))
    }

    /// Imports the revisions of `repo`; returns the digests it holds afterwards.
    async fn revisions(&mut self, repo: &RepoName) -> Result<HashSet<String>> {
        let r = repo.as_str();
        let mut done = HashSet::new();
        let mut pending = Vec::new();
        for link in self.layout.revision_links(r)? {
            let d = match &link.target {
                Ok(d) => d.clone(),
                Err((kind, why)) => {
                    let why = why.clone();
                    self.report.problem(*kind, r, &link.path, why);
                    continue;
                }
            };
            if self.sink.has_revision(r, &d)? {
                self.report.unchanged += 1;
                done.insert(d.to_string());
                continue;
            }
            if let Some(p) = self.read_manifest(r, d, link)? {
                pending.push(p);
            }
        }
        // Children first: each pass records every revision whose children are recorded; a
        // pass recording nothing leaves only revisions whose children never will be.
        let mut known: HashSet<String> = pending.iter().map(|p| p.digest.to_string()).collect();
        known.extend(done.iter().cloned());
        while !pending.is_empty() {
            let (ready, waiting): (Vec<Pending>, Vec<Pending>) =
                pending.into_iter().partition(|p| {
                    p.parsed
                        .manifests
                        .iter()
                        .all(|c| done.contains(&c.to_string()))
                });
            if ready.is_empty() {
                for p in waiting {
                    let lacking: Vec<String> = (p.parsed.manifests.iter())
                        .filter(|c| !done.contains(&c.to_string()))
                        .map(|c| {
                            let why = if known.contains(&c.to_string()) {
                                "not importable"
                            } else {
                                "not a revision of the repository"
                            };
                            format!("{c} ({why})")
                        })
                        .collect();
                    let why = format!(
                        "{} names child manifest(s) {}",
                        p.digest,
                        lacking.join(", ")
                    );
                    self.report
                        .problem(ProblemKind::Incomplete, r, &p.link.path, why);
                }
                break;
            }
            pending = waiting;
            for p in ready {
                if self.manifest(repo, &p).await? {
                    done.insert(p.digest.to_string());
                } else {
                    known.remove(&p.digest.to_string());
                }
            }
        }
        Ok(done)
    }

    /// Reads, hashes and parses revision `d` from the blob store; `None` when broken (reported).
    fn read_manifest(&mut self, repo: &str, d: Digest, link: Link) -> Result<Option<Pending>> {
        let place = self.layout.blob_where(&d);
        let problem = |report: &mut ImportReport, kind, why: String| {
            report.problem(kind, repo, &link.path, why);
            Ok(None)
        };
        let Some(size) = self.layout.blob_size(&d)? else {
            let why = format!("manifest {d} is missing ({place} does not exist)");
            return problem(&mut self.report, ProblemKind::Dangling, why);
        };
        if size > MAX_MANIFEST_SIZE as u64 {
            let why = format!("manifest {d} is {size} bytes, over kura's {MAX_MANIFEST_SIZE}");
            return problem(&mut self.report, ProblemKind::Unsupported, why);
        }
        let Some(body) = self.layout.read_blob(&d)? else {
            let why = format!("manifest {d} vanished from {place}");
            return problem(&mut self.report, ProblemKind::Dangling, why);
        };
        let body = Bytes::from(body);
        let actual = Digest::of(d.algorithm(), &body);
        if actual != d {
            let why = format!("{place} hashes to {actual}, not {d}");
            return problem(&mut self.report, ProblemKind::BadDigest, why);
        }
        match manifest::parse(None, &body) {
            Ok(parsed) => Ok(Some(Pending {
                digest: d,
                link,
                body,
                parsed,
            })),
            Err(e) => {
                let why = format!("manifest {d}: {}", e.message);
                problem(&mut self.report, ProblemKind::Unsupported, why)
            }
        }
    }

    /// Brings in the blobs `p` names and records it; false when it cannot be (reported).
    async fn manifest(&mut self, repo: &RepoName, p: &Pending) -> Result<bool> {
        let r = repo.as_str();
        let mut lacking = Vec::new();
        for b in &p.parsed.blobs {
            if let Err(why) = self.blob(r, b, None).await? {
                lacking.push(why);
            }
        }
        if !lacking.is_empty() {
            let why = format!(
                "{} names blob(s) not importable: {}",
                p.digest,
                lacking.join(", ")
            );
            self.report
                .problem(ProblemKind::Incomplete, r, &p.link.path, why);
            return Ok(false);
        }
        match self
            .sink
            .put_manifest(repo, &p.digest, p.body.clone())
            .await
        {
            Ok(()) => {
                self.report.manifests_new += 1;
                if p.parsed.subject.is_some() {
                    self.report.referrers_new += 1;
                }
                Ok(true)
            }
            // The store refused the content (not an I/O failure): this revision is skipped.
            Err(e) if e.code != Code::Unknown => {
                let why = format!("{}: {}", p.digest, e.message);
                self.report
                    .problem(ProblemKind::Incomplete, r, &p.link.path, why);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn tags(&mut self, repo: &str, done: &HashSet<String>) -> Result<()> {
        for t in self.layout.tags(repo)? {
            let d = match &t.target {
                Ok(d) => d,
                Err(why) => {
                    let why = format!("tag {}: {why}", t.tag);
                    self.report
                        .problem(ProblemKind::BadLink, repo, &t.path, why);
                    continue;
                }
            };
            if !is_tag(&t.tag) {
                let why = format!("{:?} is not a valid tag", t.tag);
                self.report
                    .problem(ProblemKind::Unsupported, repo, &t.path, why);
                continue;
            }
            if !done.contains(&d.to_string()) {
                let why = format!("tag {} names {d}, which was not imported", t.tag);
                self.report
                    .problem(ProblemKind::Dangling, repo, &t.path, why);
                continue;
            }
            match self.sink.tag(repo, &t.tag)? {
                Some(cur) if cur == d.to_string() => self.report.unchanged += 1,
                cur => {
                    self.sink.set_tag(repo, &t.tag, d).await?;
                    if cur.is_some() {
                        self.report.tags_moved += 1;
                    } else {
                        self.report.tags_new += 1;
                    }
                }
            }
        }
        Ok(())
    }
}
