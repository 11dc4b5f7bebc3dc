//! `kura inspect REF`: show a manifest and its config, pretty-printed.

use serde_json::{Value, json};

use crate::client::api::Repo;
use crate::client::image::Manifest;
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::ImageRef;
use crate::client::transfer::resolve;

/// Largest config shown.
const MAX_CONFIG: usize = 16 << 20;

/// Arguments of `kura inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The image: `host[:port]/name[:tag][@digest]`.
    pub reference: String,
    /// Of an index, show this platform's image (`os/arch[/variant]`).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub client: ClientOptions,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON value")
}

/// Prints the manifest and config (or with `--json` one object with both; with `--quiet`
/// the digest only).
pub fn run(args: InspectArgs) -> Result<(), super::CliError> {
    let r = ImageRef::parse(&args.reference)?;
    let transport = args.client.transport()?;
    let repo = Repo::new(transport.registry(&r.registry)?, r.repository.clone());
    let (m, config): (Manifest, Option<Value>) = block_on(async {
        let m = resolve(&repo, &r.reference(), args.platform.as_deref()).await?;
        let config = match m.config() {
            Some(c) => {
                let bytes = repo.get_small_blob(&c.digest()?, MAX_CONFIG).await?;
                Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }))
            }
            None => None,
        };
        Ok::<_, crate::client::Error>((m, config))
    })??;
    let manifest: Value = serde_json::from_slice(&m.bytes)?;
    if args.client.json {
        println!(
            "{}",
            json!({
                "reference": r.to_string(), "digest": m.digest.to_string(),
                "mediaType": m.media_type, "size": m.bytes.len(),
                "manifest": manifest, "config": config,
            })
        );
        return Ok(());
    }
    if args.client.quiet {
        println!("{}", m.digest);
        return Ok(());
    }
    println!("Reference:  {r}");
    println!("Digest:     {}", m.digest);
    println!("Media type: {}", m.media_type);
    println!("Size:       {} bytes", m.bytes.len());
    if m.is_index() {
        println!("Platforms:");
        for c in m.children() {
            let p = c
                .platform
                .as_ref()
                .map_or_else(|| "-".to_string(), |p| p.display());
            println!("  {p:<20} {}", c.digest);
        }
    }
    println!("\nManifest:\n{}", pretty(&manifest));
    if let Some(c) = config {
        println!("\nConfig:\n{}", pretty(&c));
    }
    Ok(())
}
