//! Whole-image operations: push a local image, pull into an OCI layout, copy between
//! repositories (all platforms of an index, optionally the referrers too). Blobs move in
//! parallel; manifests are pushed after their blobs, children before the indexes naming them.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use super::api::Repo;
use super::blobs::{BlobSource, TransferOptions, download, upload, uploaded_fields};
use super::error::{Error, Result};
use super::image::{Descriptor, Graph, Manifest, walk};
use super::layout::{LayoutWriter, LocalImage};
use super::progress::Progress;
use crate::digest::Digest;
use crate::names::{Reference, RepoName};

/// What every whole-image operation needs.
#[derive(Clone)]
pub struct Context {
    pub progress: Progress,
    pub opts: TransferOptions,
    /// Blob transfers run at once.
    pub jobs: usize,
}

/// Runs `f` on every item, at most `jobs` at a time; the first error cancels the rest.
async fn parallel<T, F, Fut>(jobs: usize, items: Vec<T>, f: F) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut items = items.into_iter();
    loop {
        while set.len() < jobs.max(1) {
            match items.next() {
                Some(it) => {
                    set.spawn(f(it));
                }
                None => break,
            }
        }
        match set.join_next().await {
            None => return Ok(()),
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(Error::Invalid(format!("a transfer task failed: {e}"))),
        }
    }
}

/// Where a copy reads an image from: a repository on a registry (`Repo`), or another store
/// (kura's own, which replicates from it in process).
pub trait ImageSource: Clone + Send + Sync + 'static {
    /// The manifest `reference` names, its digest checked.
    fn manifest(&self, reference: &Reference) -> impl Future<Output = Result<Manifest>> + Send;
    /// The descriptors of the manifests whose subject is `digest`.
    fn referrers(&self, digest: &Digest) -> impl Future<Output = Result<Vec<Descriptor>>> + Send;
    /// Where blob bytes are read from.
    fn blob_source(&self) -> BlobSource;
    /// Repositories of `dst`'s registry that blobs may be mounted from (the source itself,
    /// when both are on one registry).
    fn mount_from(&self, dst: &Repo) -> Vec<RepoName>;
}

impl ImageSource for Repo {
    fn manifest(&self, reference: &Reference) -> impl Future<Output = Result<Manifest>> + Send {
        self.get_manifest(reference)
    }

    fn referrers(&self, digest: &Digest) -> impl Future<Output = Result<Vec<Descriptor>>> + Send {
        Repo::referrers(self, digest)
    }

    fn blob_source(&self) -> BlobSource {
        BlobSource::Remote(self.clone())
    }

    fn mount_from(&self, dst: &Repo) -> Vec<RepoName> {
        if self.registry.name() == dst.registry.name() {
            vec![self.name.clone()]
        } else {
            Vec::new()
        }
    }
}

async fn fetch_child<S: ImageSource>(src: S, desc: Descriptor) -> Result<Manifest> {
    src.manifest(&Reference::Digest(desc.digest()?)).await
}

/// The graph under `root`, children fetched from `src`.
async fn remote_graph<S: ImageSource>(src: &S, root: Manifest) -> Result<Graph> {
    walk(root, |d| fetch_child(src.clone(), d)).await
}

/// Pushes the non-root manifests of `graph` by digest, then its root under `reference`
/// (by digest when `None`).
async fn put_manifests(
    progress: &Progress,
    dst: &Repo,
    graph: &Graph,
    reference: Option<&Reference>,
) -> Result<()> {
    let n = graph.manifests.len();
    for (i, m) in graph.manifests.iter().enumerate() {
        let by_digest = Reference::Digest(m.digest.clone());
        let r = match reference {
            Some(r) if i == n - 1 => r,
            _ => &by_digest,
        };
        dst.put_manifest(r, m).await?;
        progress.event(json!({
            "event": "manifest", "digest": m.digest.to_string(), "mediaType": m.media_type,
            "reference": r.to_string(), "repository": dst.display(),
        }));
    }
    Ok(())
}

fn check_digest(reference: Option<&Reference>, root: &Manifest) -> Result<()> {
    match reference {
        Some(Reference::Digest(d)) if *d != root.digest => Err(Error::Invalid(format!(
            "the image's digest is {}, not the {d} given",
            root.digest
        ))),
        _ => Ok(()),
    }
}

/// Pushes `image` to `dst` under `reference`; blobs missing there are mounted from one of
/// `mount_from` when possible. Returns the root manifest.
pub async fn push(
    ctx: &Context,
    image: &LocalImage,
    dst: &Repo,
    reference: &Reference,
    mount_from: &[RepoName],
) -> Result<Manifest> {
    let store = image.store.clone();
    let graph = walk(image.root.clone(), |d| {
        let store = store.clone();
        async move { store.manifest(&d) }
    })
    .await?;
    check_digest(Some(reference), graph.root())?;
    ctx.progress.start_total("push", graph.blob_bytes());
    let mount: Arc<Vec<RepoName>> = Arc::new(mount_from.to_vec());
    parallel(ctx.jobs, graph.blobs.clone(), |desc| {
        let (store, dst, c, mount) = (store.clone(), dst.clone(), ctx.clone(), mount.clone());
        async move {
            let source = BlobSource::Local(store.locate(&desc.digest()?)?);
            let mut bar = c.progress.blob(&desc.digest, desc.size);
            let out = upload(&dst, &desc, &source, &mount, &c.opts, &mut bar).await?;
            let (action, extra) = uploaded_fields(&out);
            bar.done(action, extra);
            Ok(())
        }
    })
    .await?;
    put_manifests(&ctx.progress, dst, &graph, Some(reference)).await?;
    ctx.progress.finish();
    Ok(graph.root().clone())
}

/// The child of index `root` for `platform` (`os/arch[/variant]`).
async fn select_platform(repo: &Repo, root: Manifest, platform: &str) -> Result<Manifest> {
    if !root.is_index() {
        return Err(Error::Invalid(format!(
            "{} is a single image, not an index: --platform does not apply",
            root.digest
        )));
    }
    let child = root
        .children()
        .iter()
        .find(|c| c.platform.as_ref().is_some_and(|p| p.matches(platform)))
        .ok_or_else(|| {
            let have: Vec<String> = root
                .children()
                .iter()
                .filter_map(|c| c.platform.as_ref().map(|p| p.display()))
                .collect();
            Error::Invalid(format!(
                "no {platform} image in the index (it has: {})",
                have.join(", ")
            ))
        })?;
    fetch_child(repo.clone(), child.clone()).await
}

/// Resolves `reference` in `repo`, narrowed to `platform` when given.
pub async fn resolve(
    repo: &Repo,
    reference: &Reference,
    platform: Option<&str>,
) -> Result<Manifest> {
    let root = repo.get_manifest(reference).await?;
    match platform {
        Some(p) => select_platform(repo, root, p).await,
        None => Ok(root),
    }
}

/// Pulls `reference` from `src` into the OCI layout at `dest`, naming it `ref_name` in its
/// `index.json`. With `platform`, only that image of an index is pulled. Returns the root.
pub async fn pull(
    ctx: &Context,
    src: &Repo,
    reference: &Reference,
    dest: &Path,
    ref_name: Option<&str>,
    platform: Option<&str>,
) -> Result<Manifest> {
    let root = resolve(src, reference, platform).await?;
    let graph = remote_graph(src, root).await?;
    let writer = Arc::new(LayoutWriter::create(dest)?);
    ctx.progress.start_total("pull", graph.blob_bytes());
    parallel(ctx.jobs, graph.blobs.clone(), |desc| {
        let (src, writer, c) = (src.clone(), writer.clone(), ctx.clone());
        async move {
            let digest = desc.digest()?;
            let mut bar = c.progress.blob(&desc.digest, desc.size);
            if writer.has_blob(&digest, desc.size) {
                bar.done("exists", json!({}));
                return Ok(());
            }
            let path = writer.blob_path(&digest)?;
            let resumes = download(&src, &desc, &path, &c.opts, &mut bar).await?;
            bar.done("downloaded", json!({ "resumes": resumes }));
            Ok(())
        }
    })
    .await?;
    for m in &graph.manifests {
        writer.write_manifest(m)?;
    }
    let root = graph.root().clone();
    writer.add_to_index(root.descriptor(), ref_name)?;
    ctx.progress.finish();
    Ok(root)
}

/// The graphs of every referrer of the manifests in `graph`, and of theirs, recursively.
async fn referrer_graphs<S: ImageSource>(src: &S, graph: &Graph) -> Result<Vec<Graph>> {
    let mut seen: HashSet<Digest> = graph.manifests.iter().map(|m| m.digest.clone()).collect();
    let mut subjects: Vec<Digest> = seen.iter().cloned().collect();
    let mut out = Vec::new();
    while let Some(subject) = subjects.pop() {
        for desc in src.referrers(&subject).await? {
            let d = desc.digest()?;
            if !seen.insert(d.clone()) {
                continue;
            }
            let m = fetch_child(src.clone(), desc).await?;
            let g = remote_graph(src, m).await?;
            for m in &g.manifests {
                seen.insert(m.digest.clone());
                subjects.push(m.digest.clone());
            }
            out.push(g);
        }
    }
    Ok(out)
}

/// Copies `src_ref` of `src` to `dst` under `dst_ref` (by digest when `None`): every platform
/// of an index, and with `referrers` every manifest whose subject is one of them. Blobs are
/// mounted when both repositories are on one registry, streamed through otherwise.
pub async fn copy<S: ImageSource>(
    ctx: &Context,
    src: &S,
    src_ref: &Reference,
    dst: &Repo,
    dst_ref: Option<&Reference>,
    referrers: bool,
) -> Result<Manifest> {
    let root = src.manifest(src_ref).await?;
    check_digest(dst_ref, &root)?;
    let graph = remote_graph(src, root).await?;
    let extra = if referrers {
        referrer_graphs(src, &graph).await?
    } else {
        Vec::new()
    };
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    for g in std::iter::once(&graph).chain(&extra) {
        for b in &g.blobs {
            if seen.insert(b.digest.clone()) {
                blobs.push(b.clone());
            }
        }
    }
    ctx.progress
        .start_total("copy", blobs.iter().map(|b| b.size).sum());
    let mount: Arc<Vec<RepoName>> = Arc::new(src.mount_from(dst));
    let source = src.blob_source();
    parallel(ctx.jobs, blobs, |desc| {
        let (source, dst, c, mount) = (source.clone(), dst.clone(), ctx.clone(), mount.clone());
        async move {
            let mut bar = c.progress.blob(&desc.digest, desc.size);
            let out = upload(&dst, &desc, &source, &mount, &c.opts, &mut bar).await?;
            let (action, extra) = uploaded_fields(&out);
            bar.done(action, extra);
            Ok(())
        }
    })
    .await?;
    put_manifests(&ctx.progress, dst, &graph, dst_ref).await?;
    for g in &extra {
        put_manifests(&ctx.progress, dst, g, None).await?;
    }
    ctx.progress.finish();
    Ok(graph.root().clone())
}
