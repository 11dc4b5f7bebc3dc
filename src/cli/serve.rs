//! `kura serve`: run the registry.

use crate::config::ServeConfig;
use crate::registry::Registry;

/// Arguments of `kura serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ServeConfig,
}

/// Opens the store and serves until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), super::CliError> {
    let cfg = args.config;
    let registry = Registry::open(&cfg.root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (server, addr) = crate::server::bind(registry, &cfg.addr, cfg.workers)?;
        tracing::info!(%addr, root = %cfg.root.display(), "kura registry listening");
        println!("kura listening on http://{addr}");
        server.await
    })?;
    Ok(())
}
