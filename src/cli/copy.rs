//! `kura copy SRC DST`: copy an image between repositories, on one registry or two.

use crate::client::api::Repo;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::ImageRef;
use crate::client::transfer::copy;
use crate::names::Reference;

/// Arguments of `kura copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The image to copy: `host[:port]/name[:tag][@digest]`.
    pub source: String,
    /// Where to: `host[:port]/name[:tag]` (without a tag, the source's tag, else by digest).
    pub destination: String,
    /// Also copy the referrers (signatures, SBOMs...) of the image and of its children.
    #[arg(long)]
    pub referrers: bool,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Copies the image and prints the destination and digest.
pub fn run(args: CopyArgs) -> Result<(), super::CliError> {
    let src = ImageRef::parse(&args.source)?;
    let dst = ImageRef::parse(&args.destination)?;
    let dst_ref = match (&dst.tag, &dst.digest, &src.tag) {
        (Some(t), _, _) => Some(Reference::Tag(t.clone())),
        (None, Some(d), _) => Some(Reference::Digest(d.clone())),
        (None, None, Some(t)) => Some(Reference::Tag(t.clone())),
        (None, None, None) => None,
    };
    let transport = args.client.transport()?;
    let src_repo = Repo::new(transport.registry(&src.registry)?, src.repository.clone());
    let dst_repo = Repo::new(transport.registry(&dst.registry)?, dst.repository.clone()).for_push();
    let ctx = args.client.context();
    let root = block_on(copy(
        &ctx,
        &src_repo,
        &src.reference(),
        &dst_repo,
        dst_ref.as_ref(),
        args.referrers,
    ))??;
    let shown = match &dst_ref {
        Some(Reference::Tag(t)) => format!("{}/{}:{t}", dst.registry, dst.repository),
        _ => format!("{}/{}", dst.registry, dst.repository),
    };
    ctx.progress.result("copied", &shown, &root);
    Ok(())
}
