//! `kura tags REPO`: list a repository's tags.

use serde_json::json;

use crate::client::api::Repo;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::RepoRef;

/// Arguments of `kura tags`.
#[derive(Debug, clap::Args)]
pub struct TagsArgs {
    /// The repository: `host[:port]/name`.
    pub repository: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Prints one tag per line (or `{"name":..,"tags":[..]}` with `--json`).
pub fn run(args: TagsArgs) -> Result<(), super::CliError> {
    let r = RepoRef::parse(&args.repository)?;
    let transport = args.client.transport()?;
    let repo = Repo::new(transport.registry(&r.registry)?, r.repository.clone());
    let tags = block_on(repo.tags())??;
    if args.client.json {
        println!("{}", json!({ "name": r.repository.as_str(), "tags": tags }));
    } else {
        for t in tags {
            println!("{t}");
        }
    }
    Ok(())
}
