//! What an import did or, with `--dry-run`, would do: the report, and the sink that plays an
//! import without writing anything. The dry run walks the same steps as the import
//! (`engine.rs`) and hashes every blob it would bring in, so its counts and its problems
//! (dangling links, missing blobs, bad digests, manifests kura does not take) are the import's
//! own, for a store imported into an empty root.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;

use super::engine::{BlobState, Imported, Sink};
use super::layout::BlobSource;
use crate::digest::Digest;
use crate::error::Result;
use crate::names::RepoName;

/// What kind of trouble an item of the source store is in. Troubled items are skipped (with
/// what depends on them) and listed; the rest is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A link file holding no digest, or not the digest its path names.
    BadLink,
    /// A layer, revision or tag link to content the store does not hold (a missing blob).
    Dangling,
    /// Content that does not hash to its digest.
    BadDigest,
    /// Something kura does not take: a Docker schema1 or malformed manifest, a repository
    /// name or tag outside the grammar, a digest algorithm kura lacks.
    Unsupported,
    /// A manifest naming a blob or child manifest that could not be imported.
    Incomplete,
}

impl ProblemKind {
    /// True when the source could serve what was skipped (a schema1 manifest, corrupt bytes,
    /// an image missing a layer): the import lost something. A link or tag to nothing, or a
    /// link holding no digest, the source could not serve either (Distribution's
    /// `garbage-collect` leaves such layer links behind as a matter of course).
    pub fn loses_content(self) -> bool {
        matches!(
            self,
            ProblemKind::BadDigest | ProblemKind::Unsupported | ProblemKind::Incomplete
        )
    }
}

/// One problem: what, where (the Distribution path), and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub repository: String,
    pub path: String,
    pub detail: String,
}

/// The outcome of `kura import` (or of its dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Repositories found in the source.
    pub repositories: u64,
    /// Blobs (layers, configs) recorded by this run, and their bytes.
    pub blobs_new: u64,
    pub bytes_new: u64,
    /// Of those, how many were hard-linked and how many copied.
    pub hard_linked: u64,
    pub copied: u64,
    /// Blob links (a repository may serve a blob) added by this run.
    pub links_new: u64,
    /// Manifest revisions recorded by this run; of those, referrers (with a `subject`).
    pub manifests_new: u64,
    pub referrers_new: u64,
    /// Tags created, and tags moved to the revision the source names.
    pub tags_new: u64,
    pub tags_moved: u64,
    /// Items found already recorded (an earlier, maybe interrupted, import).
    pub unchanged: u64,
    /// Upload sessions in progress in the source (never imported).
    pub uploads_ignored: u64,
    pub problems: Vec<Problem>,
}

impl ImportReport {
    /// Problems that lost something the source could serve (`ProblemKind::loses_content`).
    pub fn losses(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.kind.loses_content())
            .count()
    }

    /// Items this run recorded (0 for an import that found everything in place).
    pub fn new_items(&self) -> u64 {
        self.blobs_new + self.links_new + self.manifests_new + self.tags_new + self.tags_moved
    }

    pub(super) fn problem(
        &mut self,
        kind: ProblemKind,
        repo: &str,
        path: &str,
        detail: impl Into<String>,
    ) {
        self.problems.push(Problem {
            kind,
            repository: repo.to_string(),
            path: path.to_string(),
            detail: detail.into(),
        });
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would be imported"
        } else {
            "imported"
        };
        writeln!(f, "{} repositories", self.repositories)?;
        write!(
            f,
            "blobs {verb}: {} ({} bytes",
            self.blobs_new, self.bytes_new
        )?;
        if !self.dry_run {
            write!(
                f,
                "; {} hard-linked, {} copied",
                self.hard_linked, self.copied
            )?;
        }
        writeln!(f, ")")?;
        writeln!(f, "blob links {verb}: {}", self.links_new)?;
        writeln!(
            f,
            "manifests {verb}: {} ({} referrers)",
            self.manifests_new, self.referrers_new
        )?;
        writeln!(
            f,
            "tags {verb}: {} new, {} moved",
            self.tags_new, self.tags_moved
        )?;
        writeln!(f, "already in place: {}", self.unchanged)?;
        writeln!(
            f,
            "upload sessions in progress (not imported): {}",
            self.uploads_ignored
        )?;
        write!(
            f,
            "problems (skipped): {}, of which {} lose what the source could serve",
            self.problems.len(),
            self.losses()
        )?;
        for p in &self.problems {
            write!(
                f,
                "\n  {:?} {}: {}: {}",
                p.kind, p.repository, p.path, p.detail
            )?;
        }
        Ok(())
    }
}

/// An import played in memory: blobs are hashed from the source (each digest once), nothing
/// is written.
#[derive(Default)]
pub(super) struct DryRun {
    state: Mutex<Played>,
}

#[derive(Default)]
struct Played {
    /// Blobs hashed and found sound.
    sound: HashSet<String>,
    links: HashSet<(String, String)>,
    revisions: HashSet<(String, String)>,
    tags: HashMap<(String, String), String>,
}

impl DryRun {
    fn played(&self) -> std::sync::MutexGuard<'_, Played> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for DryRun {
    fn blob_state(&self, repo: &str, d: &Digest) -> Result<BlobState> {
        let p = self.played();
        let d = d.to_string();
        Ok(if p.links.contains(&(repo.to_string(), d.clone())) {
            BlobState::Linked
        } else if p.sound.contains(&d) {
            BlobState::Recorded
        } else {
            BlobState::Absent
        })
    }

    async fn link_recorded(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.played()
            .links
            .insert((repo.to_string(), d.to_string()));
        Ok(true)
    }

    async fn import_blob(&self, repo: &str, d: &Digest, src: &BlobSource) -> Result<Imported> {
        let (actual, size) = super::hash_source(src, d.algorithm()).await?;
        if &actual != d {
            return Ok(Imported::Mismatch(actual));
        }
        let mut p = self.played();
        p.sound.insert(d.to_string());
        p.links.insert((repo.to_string(), d.to_string()));
        Ok(Imported::Done {
            size,
            hard_linked: false,
        })
    }

    fn has_revision(&self, repo: &str, d: &Digest) -> Result<bool> {
        Ok(self
            .played()
            .revisions
            .contains(&(repo.to_string(), d.to_string())))
    }

    async fn put_manifest(&self, repo: &RepoName, d: &Digest, _body: Bytes) -> Result<()> {
        let mut p = self.played();
        p.sound.insert(d.to_string());
        p.revisions.insert((repo.to_string(), d.to_string()));
        Ok(())
    }

    fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self
            .played()
            .tags
            .get(&(repo.to_string(), tag.to_string()))
            .cloned())
    }

    async fn set_tag(&self, repo: &str, tag: &str, d: &Digest) -> Result<()> {
        self.played()
            .tags
            .insert((repo.to_string(), tag.to_string()), d.to_string());
        Ok(())
    }
}
