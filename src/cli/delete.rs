//! `kura delete REF`: delete a tag, or a manifest by digest.

use serde_json::json;

use crate::client::api::Repo;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::ImageRef;
use crate::names::Reference;

/// Arguments of `kura delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// `host[:port]/name:tag` deletes the tag; `host[:port]/name@digest` the manifest.
    pub reference: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Deletes and says what.
pub fn run(args: DeleteArgs) -> Result<(), super::CliError> {
    let r = ImageRef::parse(&args.reference)?;
    if r.tag.is_none() && r.digest.is_none() {
        return Err("name a tag (`name:tag`) or a manifest (`name@digest`) to delete".into());
    }
    let reference = r.reference();
    let transport = args.client.transport()?;
    let repo = Repo::new(transport.registry(&r.registry)?, r.repository.clone());
    block_on(repo.delete_manifest(&reference))??;
    let what = match reference {
        Reference::Tag(_) => "tag",
        Reference::Digest(_) => "manifest",
    };
    if args.client.json {
        println!(
            "{}",
            json!({"event": "done", "action": "deleted", "reference": r.to_string(), "kind": what})
        );
    } else if !args.client.quiet {
        println!("deleted {what} {r}");
    }
    Ok(())
}
