//! `kura push SOURCE REF`: push an OCI image layout (one image or an index) or a `docker save`
//! tarball to a registry.

use std::path::{Path, PathBuf};

use crate::client::api::Repo;
use crate::client::docker_archive::open_archive;
use crate::client::layout::open_layout;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::ImageRef;
use crate::client::transfer::push;
use crate::names::{Reference, RepoName};

/// Arguments of `kura push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// An OCI image layout directory (`DIR`, or `DIR:NAME` for the entry named NAME), or a
    /// `docker save` tarball (optionally gzipped).
    pub source: String,
    /// Where to push: `host[:port]/name[:tag][@digest]` (the tag defaults to `latest`).
    pub reference: String,
    /// Which image of the source: a ref name of the layout's `index.json`, or a `RepoTags`
    /// entry of a tarball. A layout with several entries and no name is pushed as an index.
    #[arg(long)]
    pub ref_name: Option<String>,
    /// A repository of the destination registry to mount blobs from instead of uploading
    /// them (repeatable).
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Vec<String>,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// `DIR:NAME` → (`DIR`, `NAME`) when `DIR` exists and the whole does not.
fn split_source(source: &str, ref_name: Option<String>) -> (PathBuf, Option<String>) {
    if !Path::new(source).exists()
        && let Some((dir, name)) = source.rsplit_once(':')
        && Path::new(dir).is_dir()
    {
        return (dir.into(), ref_name.or(Some(name.to_string())));
    }
    (source.into(), ref_name)
}

/// Pushes the image and prints its reference and digest.
pub fn run(args: PushArgs) -> Result<(), super::CliError> {
    let dst = ImageRef::parse(&args.reference)?;
    let (path, name) = split_source(&args.source, args.ref_name);
    let image = if path.is_dir() {
        open_layout(&path, name.as_deref())?
    } else {
        open_archive(&path, name.as_deref())?
    };
    if let Some(d) = &dst.digest
        && *d != image.root.digest
    {
        return Err(format!(
            "{} has digest {}, not the {d} given",
            path.display(),
            image.root.digest
        )
        .into());
    }
    let mount = args
        .mount_from
        .iter()
        .map(|m| RepoName::parse(m).map_err(|e| e.message))
        .collect::<Result<Vec<_>, _>>()?;
    let reference = match &dst.tag {
        Some(t) => Reference::Tag(t.clone()),
        None => dst.reference(),
    };
    let transport = args.client.transport()?;
    let repo = Repo::new(transport.registry(&dst.registry)?, dst.repository.clone()).for_push();
    let ctx = args.client.context();
    let root = block_on(push(&ctx, &image, &repo, &reference, &mount))??;
    let shown = format!("{}/{}:{reference}", dst.registry, dst.repository);
    let shown = match &reference {
        Reference::Tag(_) => shown,
        Reference::Digest(_) => format!("{}/{}", dst.registry, dst.repository),
    };
    ctx.progress.result("pushed", &shown, &root);
    Ok(())
}
