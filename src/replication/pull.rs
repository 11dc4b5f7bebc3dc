//! Pull mode: copy the tags matching a source's patterns from upstream repositories into the
//! local store, every platform of an index included, digests preserved. Writes go through the
//! registry's own push path in process (`put_blob`, `mount`, `put_manifest`) on a handle with
//! no event context: this works the same online (the server's periodic task, `POST
//! /admin/replication/sync`) and offline (`kura sync --root`), needs no credentials for the
//! local registry, and queues no webhook or replication event. Resumable: a tag already
//! pointing at the upstream digest is skipped, and so are blobs and manifests already present.
//! Referrers (signatures, SBOMs) are copied with what they refer to; new referrers of a tag
//! already up to date are picked up on later syncs.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::config::{PullSource, matches_any};
use super::status::SyncCounts;
use crate::client::api::Repo;
use crate::client::image::{Descriptor, Graph, Manifest, walk};
use crate::client::transport::Registry as Remote;
use crate::client::{Error, Result};
use crate::digest::Digest;
use crate::meta::{blobs, manifests, tags};
use crate::names::{Reference, RepoName};
use crate::registry::Registry;

/// The outcome of one source's sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncResult {
    pub name: String,
    pub copied: SyncCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn local_error(context: String, e: crate::error::Error) -> Error {
    Error::Invalid(format!("{context}: {}", e.message))
}

/// Copies every matching tag of source `s` (upstream reached through `remote`) into `registry`.
pub async fn sync(registry: &Registry, s: &PullSource, remote: &Remote) -> Result<SyncCounts> {
    let mut counts = SyncCounts::default();
    for name in &s.repositories {
        let upstream = RepoName::parse(name).map_err(|e| Error::Invalid(e.message))?;
        let local = RepoName::parse(&format!("{}{name}", s.prefix))
            .map_err(|e| Error::Invalid(e.message))?;
        let up = Repo::new(remote.clone(), upstream);
        let mut wanted: Vec<String> = up
            .tags()
            .await?
            .into_iter()
            .filter(|t| matches_any(&s.tags, t))
            .collect();
        wanted.sort();
        for tag in wanted {
            sync_tag(registry, &up, &local, &tag, &mut counts).await?;
        }
    }
    Ok(counts)
}

/// Copies `tag` of `up` to `local` unless the local tag already names the upstream digest,
/// then the referrers (signatures, SBOMs) of what it copied, or of the tagged manifest when it
/// was up to date.
async fn sync_tag(
    registry: &Registry,
    up: &Repo,
    local: &RepoName,
    tag: &str,
    counts: &mut SyncCounts,
) -> Result<()> {
    let reference = Reference::Tag(tag.to_string());
    let (repo, t) = (local.to_string(), tag.to_string());
    let current = registry
        .meta()
        .read(|tx| tags::get(tx, &repo, &t))
        .map_err(|e| local_error(format!("reading {local}:{tag}"), e))?;
    let up_to_date = |d: &Digest| current.as_deref() == Some(d.to_string().as_str());
    // A HEAD first: Docker Hub does not count it against the pull rate limit.
    let head = match current {
        Some(_) => up.manifest_digest(&reference).await?.flatten(),
        None => None,
    };
    let subjects = match head.filter(|d| up_to_date(d)) {
        Some(d) => {
            counts.skipped += 1;
            vec![d]
        }
        None => {
            let root = up.get_manifest(&reference).await?;
            if up_to_date(&root.digest) {
                counts.skipped += 1;
                vec![root.digest]
            } else {
                let graph = fetch_graph(up, root).await?;
                store_graph(registry, up, local, &graph, Some(&reference), counts).await?;
                counts.tags += 1;
                graph.manifests.iter().map(|m| m.digest.clone()).collect()
            }
        }
    };
    copy_referrers(registry, up, local, subjects, counts).await
}

/// The graph under `root`, children fetched from `up`.
async fn fetch_graph(up: &Repo, root: Manifest) -> Result<Graph> {
    walk(root, |d: Descriptor| {
        let up = up.clone();
        async move { up.get_manifest(&Reference::Digest(d.digest()?)).await }
    })
    .await
}

/// Stores `graph`'s blobs, then its manifests (children first), the root under `root_ref`
/// (by digest when `None`); what is already stored is skipped.
async fn store_graph(
    registry: &Registry,
    up: &Repo,
    local: &RepoName,
    graph: &Graph,
    root_ref: Option<&Reference>,
    counts: &mut SyncCounts,
) -> Result<()> {
    for b in &graph.blobs {
        if copy_blob(registry, up, local, b).await? {
            counts.blobs += 1;
        }
    }
    let n = graph.manifests.len();
    for (i, m) in graph.manifests.iter().enumerate() {
        let tagged = root_ref.filter(|_| i == n - 1);
        let had = has_revision(registry, local, &m.digest)?;
        if had && tagged.is_none() {
            continue;
        }
        let r = tagged
            .cloned()
            .unwrap_or_else(|| Reference::Digest(m.digest.clone()));
        put_manifest(registry, local, &r, m).await?;
        counts.manifests += u64::from(!had);
    }
    Ok(())
}

/// Copies the manifests whose subject is one of `subjects`, and theirs, recursively.
async fn copy_referrers(
    registry: &Registry,
    up: &Repo,
    local: &RepoName,
    subjects: Vec<Digest>,
    counts: &mut SyncCounts,
) -> Result<()> {
    let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
    let mut todo = subjects;
    while let Some(subject) = todo.pop() {
        for desc in up.referrers(&subject).await? {
            let d = desc.digest()?;
            if !seen.insert(d.clone()) {
                continue;
            }
            todo.push(d.clone());
            if has_revision(registry, local, &d)? {
                continue;
            }
            let m = up.get_manifest(&Reference::Digest(d)).await?;
            let graph = fetch_graph(up, m).await?;
            store_graph(registry, up, local, &graph, None, counts).await?;
        }
    }
    Ok(())
}

fn has_revision(registry: &Registry, repo: &RepoName, digest: &Digest) -> Result<bool> {
    let (r, d) = (repo.to_string(), digest.to_string());
    registry
        .meta()
        .read(|t| Ok(manifests::get(t, &r, &d)?.is_some()))
        .map_err(|e| local_error(format!("reading {repo}@{digest}"), e))
}

async fn put_manifest(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    m: &Manifest,
) -> Result<()> {
    let stored = registry
        .put_manifest(
            repo,
            reference,
            Some(&m.media_type),
            bytes::Bytes::from(m.bytes.clone()),
        )
        .await
        .map_err(|e| local_error(format!("storing {repo}:{reference}"), e))?;
    if stored.digest != m.digest {
        return Err(Error::Invalid(format!(
            "{repo}:{reference} was stored as {}, not {}",
            stored.digest, m.digest
        )));
    }
    Ok(())
}

/// Makes blob `desc` present in `local`: already there, mounted from another local repository,
/// or downloaded (verified by the registry against its digest). True when it was stored.
async fn copy_blob(
    registry: &Registry,
    up: &Repo,
    local: &RepoName,
    desc: &Descriptor,
) -> Result<bool> {
    let digest = desc.digest()?;
    if registry.blob_size(local, &digest).is_ok() {
        return Ok(false);
    }
    let d = digest.to_string();
    let linked: HashSet<String> = registry
        .meta()
        .read(|t| blobs::links_of(t, &d))
        .map_err(|e| local_error(format!("reading links of {digest}"), e))?
        .into_iter()
        .collect();
    for from in linked.iter().filter_map(|r| RepoName::parse(r).ok()) {
        if registry
            .mount(local, &from, &digest)
            .await
            .map_err(|e| local_error(format!("mounting {digest} into {local}"), e))?
        {
            return Ok(true);
        }
    }
    let resp = up.get_blob(&digest, 0).await?;
    let body = resp.bytes_stream().map_err(|e| e.to_string());
    registry
        .put_blob(local, &digest, Box::pin(body))
        .await
        .map_err(|e| local_error(format!("storing blob {digest} in {local}"), e))?;
    Ok(true)
}
