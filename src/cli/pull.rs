//! `kura pull REF DEST`: pull an image (every platform of an index, or one) into an OCI image
//! layout directory.

use std::path::PathBuf;

use crate::client::api::Repo;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::ImageRef;
use crate::client::transfer::pull;

/// Arguments of `kura pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// What to pull: `host[:port]/name[:tag][@digest]`.
    pub reference: String,
    /// The OCI layout directory to write (created if needed; other images in it are kept).
    pub dest: PathBuf,
    /// Pull only this platform's image of an index (`os/arch[/variant]`).
    #[arg(long)]
    pub platform: Option<String>,
    /// The image's name in the layout's `index.json` (default: the reference's tag).
    #[arg(long)]
    pub ref_name: Option<String>,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Pulls the image and prints its reference and digest.
pub fn run(args: PullArgs) -> Result<(), super::CliError> {
    let src = ImageRef::parse(&args.reference)?;
    let ref_name = args.ref_name.clone().or_else(|| src.tag.clone());
    let transport = args.client.transport()?;
    let repo = Repo::new(transport.registry(&src.registry)?, src.repository.clone());
    let ctx = args.client.context();
    let root = block_on(pull(
        &ctx,
        &repo,
        &src.reference(),
        &args.dest,
        ref_name.as_deref(),
        args.platform.as_deref(),
    ))??;
    ctx.progress.result("pulled", &src.to_string(), &root);
    Ok(())
}
