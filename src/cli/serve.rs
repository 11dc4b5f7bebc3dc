//! `kura serve`: run the registry.

use crate::config::ServeConfig;
use crate::registry::Registry;
use crate::server::ServerOptions;

/// Arguments of `kura serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ServeConfig,
}

/// The file in the data directory naming the URL of the server holding it, so that
/// `kura gc --root` and `kura fsck --root` can ask that server instead.
pub const ADDR_FILE: &str = "kura.addr";

/// Opens the store and serves until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), super::CliError> {
    let cfg = args.config;
    let registry = Registry::open(&cfg.root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let opts = ServerOptions {
        workers: cfg.workers,
        gc: cfg.gc.options(),
    };
    let addr_file = cfg.root.join(ADDR_FILE);
    rt.block_on(async {
        let (server, addr) = crate::server::bind_with(registry.clone(), &cfg.addr, &opts)?;
        std::fs::write(&addr_file, format!("http://{addr}\n"))?;
        if !cfg.gc.interval.is_zero() {
            crate::gc::spawn_periodic(registry, cfg.gc.interval, opts.gc.clone());
        }
        tracing::info!(%addr, root = %cfg.root.display(), gc_interval = ?cfg.gc.interval, "kura registry listening");
        println!("kura listening on http://{addr}");
        server.await
    })?;
    let _ = std::fs::remove_file(&addr_file);
    Ok(())
}
