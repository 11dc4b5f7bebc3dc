use clap::Parser;
use tracing_subscriber::EnvFilter;

use kura::cli::{Cli, Command};
use kura::registry::Registry;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("KURA_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(cfg) => serve(cfg),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(cfg: kura::config::ServeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::open(&cfg.root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (server, addr) = kura::server::bind(registry, &cfg.addr, cfg.workers)?;
        tracing::info!(%addr, root = %cfg.root.display(), "kura registry listening");
        println!("kura listening on http://{addr}");
        server.await
    })?;
    Ok(())
}
