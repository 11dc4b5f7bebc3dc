//! `kura catalog REGISTRY`: list a registry's repositories.

use serde_json::json;

use crate::client::api::catalog;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::parse_registry;

/// Arguments of `kura catalog`.
#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// The registry: `host[:port]`.
    pub registry: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Prints one repository per line (or `{"repositories":[..]}` with `--json`).
pub fn run(args: CatalogArgs) -> Result<(), super::CliError> {
    let host = parse_registry(&args.registry)?;
    let transport = args.client.transport()?;
    let registry = transport.registry(&host)?;
    let repos = block_on(catalog(&registry))??;
    if args.client.json {
        println!("{}", json!({ "repositories": repos }));
    } else {
        for r in repos {
            println!("{r}");
        }
    }
    Ok(())
}
