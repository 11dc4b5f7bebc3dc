//! Pushing, pulling and deleting manifests, with their reference counts.

use bytes::Bytes;
use serde_json::json;

use super::Registry;
use crate::digest::{Algorithm, Digest};
use crate::error::{Code, Error, Result};
use crate::events::Target;
use crate::manifest::{self, Parsed};
use crate::meta::{
    ManifestRecord, ReadTx, WriteTables, blobs, deferred, manifests, mirror, now_secs, referrers,
    repos, tags,
};
use crate::names::{Reference, RepoName};
use crate::policy::immutable::ImmutableTags;

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub media_type: String,
    pub size: u64,
}

/// A manifest as pulled: its stored bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The bytes, absent for `HEAD`.
    pub body: Option<Bytes>,
}

pub(super) fn manifest_unknown(reference: &Reference) -> Error {
    Error::new(
        Code::ManifestUnknown,
        format!("manifest {reference} is unknown"),
    )
}

pub(super) fn name_unknown(repo: &str) -> Error {
    Error::new(Code::NameUnknown, format!("repository {repo} is unknown"))
}

/// The references of `p` that `repo` lacks, as spec error details.
fn missing_references(
    p: &Parsed,
    is_blob: impl Fn(&str) -> Result<bool>,
    is_manifest: impl Fn(&str) -> Result<bool>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for b in &p.blobs {
        if !is_blob(&b.to_string())? {
            missing.push(b.to_string());
        }
    }
    for m in &p.manifests {
        if !is_manifest(&m.to_string())? {
            missing.push(m.to_string());
        }
    }
    Ok(missing)
}

/// `MANIFEST_BLOB_UNKNOWN` unless every blob and child manifest `p` names is in `repo`; works
/// on a read snapshot (the early check) and inside the write transaction (the decisive one).
fn check_references(t: &(impl ReadTx + ?Sized), repo: &str, p: &Parsed) -> Result<()> {
    let missing = missing_references(
        p,
        |d| blobs::is_linked(t, repo, d),
        |d| manifests::exists(t, repo, d),
    )?;
    blob_unknown_error(missing)
}

fn blob_unknown_error(missing: Vec<String>) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        Code::ManifestBlobUnknown,
        format!(
            "manifest references {} unknown blob(s) or manifest(s)",
            missing.len()
        ),
    )
    .with_detail(json!({ "missing": missing })))
}

impl Registry {
    /// Stores a manifest pushed to `repo` under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        let parsed = manifest::parse(content_type, &body)?;
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if &actual != d {
                    return Err(Error::new(
                        Code::DigestInvalid,
                        format!("manifest body has digest {actual}, not {d}"),
                    ));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
        };
        self.meta()
            .read(|t| check_references(t, repo.as_str(), &parsed))?;
        let (repo, reference, out_digest) = (repo.to_string(), reference.clone(), digest.clone());
        let subject = parsed.subject.clone();
        let (media_type, size) = (parsed.media_type.clone(), body.len() as u64);
        self.blocking(move |r| {
            let size = body.len() as u64;
            let policies = r.policies();
            r.publish_manifest(&digest, body, |t| {
                let quota = r.quota_check(t, &repo)?;
                let origin = Origin::Pushed(&policies.immutable);
                record_manifest(t, &repo, &reference, &digest, &parsed, size, origin)?;
                if let Some(q) = quota {
                    q.finish(t)?;
                }
                r.queue_event(t, "push", |base| {
                    manifest_target(base, &repo, &reference, &digest, &parsed.media_type, size)
                })
            })?;
            r.events_committed();
            Ok(())
        })
        .await?;
        Ok(PutManifest {
            digest: out_digest,
            subject,
            media_type,
            size,
        })
    }

    /// Stores manifest `body` as blob `digest` and commits `record` (its revision) under the
    /// digest's lock; returns once durable. The file is written and synced before the lock;
    /// under it only the rename and the metadata commit. Blocking.
    pub(super) fn publish_manifest(
        &self,
        digest: &Digest,
        body: Bytes,
        record: impl FnMut(&mut WriteTables<'_>) -> Result<()>,
    ) -> Result<()> {
        let staged = self.store().stage_verified(digest, &body)?;
        let lock = self.digest_locks().lock(&digest.to_string())?;
        let recorded = self.is_recorded(digest)?;
        self.store()
            .publish_staged(digest, staged, &body, recorded)?;
        let committed = self.meta().commit(record)?;
        drop(lock);
        self.inner.manifests.insert(digest.clone(), body);
        committed.durable()
    }

    /// Looks up manifest `reference` of `repo`; reads its bytes when `with_body`. A pull by
    /// digest is a sighting: a client may push an index naming the revision next, so its grace
    /// period restarts (see `sight_manifest`).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        with_body: bool,
    ) -> Result<ManifestContent> {
        let found = self
            .meta()
            .read(|t| manifests::lookup(t, repo.as_str(), reference))?;
        let (digest, rec) = match found {
            manifests::Found::Manifest(digest, rec) => (digest, rec),
            manifests::Found::NoRepository => return Err(name_unknown(repo.as_str())),
            manifests::Found::NoManifest => return Err(manifest_unknown(reference)),
        };
        if let Reference::Tag(tag) = reference {
            self.inner.tag_pulls.note(repo.as_str(), tag);
        }
        if matches!(reference, Reference::Digest(_))
            && rec.grace_start() < now_secs()
            && !self.is_read_only()
        {
            self.sight_manifest(repo, reference, &digest).await?;
        }
        let body = if with_body {
            match self.inner.manifests.get(&digest) {
                Some(b) => Some(b),
                None => self.read_manifest_file(repo, reference, &digest)?,
            }
        } else {
            None
        };
        Ok(ManifestContent {
            digest,
            media_type: rec.media_type,
            size: rec.size,
            body,
        })
    }

    /// Records a client sighting of revision `digest` of `repo` in a write transaction that
    /// re-checks it: its grace period starts `SIGHTING_LEASE` ahead (so further sightings need
    /// no write for that long). If the collector removed it first, it is unknown.
    async fn sight_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<()> {
        let (r, d) = (repo.to_string(), digest.to_string());
        let found = self
            .blocking(move |reg| {
                reg.meta().write(|t| {
                    let Some(mut rec) = manifests::get(t, &r, &d)? else {
                        return Ok(false);
                    };
                    let now = now_secs();
                    if rec.grace_start() < now {
                        rec.touched = now + blobs::SIGHTING_LEASE;
                        manifests::insert(t, &r, &d, &rec)?;
                    }
                    Ok(true)
                })
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(manifest_unknown(reference))
        }
    }

    /// Reads manifest `digest` from its file (and caches it).
    fn read_manifest_file(
        &self,
        repo: &RepoName,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<Bytes>> {
        match self.store().read_blob(digest)? {
            Some(b) => {
                let b = Bytes::from(b);
                self.inner.manifests.insert(digest.clone(), b.clone());
                Ok(Some(b))
            }
            // Deleted and collected between the lookup and the read.
            None if !self.has_revision(repo, digest)? => Err(manifest_unknown(reference)),
            None => Err(Error::internal(
                "blob store",
                format!("manifest {digest} is recorded but its file is missing"),
            )),
        }
    }

    fn has_revision(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let d = digest.to_string();
        self.meta()
            .read(|t| Ok(manifests::get(t, repo.as_str(), &d)?.is_some()))
    }
}

/// The event target of manifest `digest` of `repo` pushed or pulled by `reference`.
pub(crate) fn manifest_target(
    base: &str,
    repo: &str,
    reference: &Reference,
    digest: &Digest,
    media_type: &str,
    size: u64,
) -> Target {
    Target {
        media_type: media_type.into(),
        size,
        digest: digest.to_string(),
        length: size,
        repository: repo.to_string(),
        url: format!("{base}/v2/{repo}/manifests/{digest}"),
        tag: match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        },
    }
}

/// Where a revision being recorded comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// Pushed by a client (or replicated, or imported): every blob and child manifest it
    /// names must be in the repository, and an immutable tag may not move.
    Pushed(&'a ImmutableTags),
    /// Fetched from a mirror's upstream: what it names is fetched when pulled, so references
    /// to content not stored yet are deferred (`meta::deferred`); the cache follows its
    /// upstream, so immutable tags do not apply.
    Cached,
}

/// Records a manifest revision (counting its references if new) and points the tag at it.
pub(crate) fn record_manifest(
    t: &mut WriteTables<'_>,
    repo: &str,
    reference: &Reference,
    digest: &Digest,
    parsed: &Parsed,
    size: u64,
    origin: Origin<'_>,
) -> Result<()> {
    let immutable = match origin {
        Origin::Pushed(immutable) => {
            check_references(t, repo, parsed)?;
            immutable
        }
        Origin::Cached => &ImmutableTags::NONE,
    };
    let cached = matches!(origin, Origin::Cached);
    let d = digest.to_string();
    repos::ensure(t, repo)?;
    if manifests::get(t, repo, &d)?.is_none() {
        let rec = ManifestRecord {
            media_type: parsed.media_type.clone(),
            size,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
            subject: parsed.subject.as_ref().map(Digest::to_string),
            blobs: parsed.blobs.iter().map(Digest::to_string).collect(),
            manifests: parsed.manifests.iter().map(Digest::to_string).collect(),
            created: now_secs(),
            touched: 0,
        };
        blobs::touch(t, &d, size)?;
        blobs::add_ref(t, &d, 1)?;
        for r in rec.blobs.iter().chain(&rec.manifests) {
            if cached && blobs::get(t, r)?.is_none() {
                deferred::defer(t, r, repo, &d)?;
            } else {
                blobs::add_ref(t, r, 1)?;
            }
        }
        if let Some(s) = &rec.subject {
            referrers::add(t, repo, s, &d)?;
        }
        manifests::insert(t, repo, &d, &rec)?;
    } else if let Some(mut rec) = manifests::get(t, repo, &d)? {
        // A re-push restarts the revision's grace period, as a first push starts it.
        let now = now_secs();
        if rec.grace_start() < now {
            rec.touched = now;
            manifests::insert(t, repo, &d, &rec)?;
        }
    }
    if let Reference::Tag(tag) = reference {
        super::tag_writes::set_tag(t, immutable, repo, tag, &d)?;
    }
    Ok(())
}

/// Removes revision `digest` of `repo`, its tags, its referrer entry and its counted references.
/// Refused (`DENIED`) when an immutable tag points at it.
pub(crate) fn remove_revision(
    t: &mut WriteTables<'_>,
    immutable: &ImmutableTags,
    repo: &str,
    digest: &str,
) -> Result<Option<()>> {
    let tagged = tags::pointing_at(t, repo, digest)?;
    for tag in &tagged {
        immutable.check_remove(repo, tag)?;
    }
    let Some(rec) = manifests::remove(t, repo, digest)? else {
        return Ok(None);
    };
    for tag in tagged {
        tags::remove(t, repo, &tag)?;
    }
    if let Some(s) = &rec.subject {
        referrers::remove(t, repo, s, digest)?;
    }
    blobs::add_ref(t, digest, -1)?;
    for r in rec.blobs.iter().chain(&rec.manifests) {
        if !deferred::remove(t, r, repo, digest)? {
            blobs::add_ref(t, r, -1)?;
        }
    }
    mirror::forget_pulled(t, repo, digest)?;
    Ok(Some(()))
}
