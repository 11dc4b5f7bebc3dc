//! Server configuration: flags, with `KURA_*` environment variables as fallbacks.

use std::path::PathBuf;

/// Where and how `kura serve` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "KURA_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: String,
    /// Data directory: blob files under `blobs/`, uploads under `uploads/`, metadata in `meta.redb`.
    #[arg(long, env = "KURA_ROOT", default_value = "./kura-data")]
    pub root: PathBuf,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "KURA_WORKERS")]
    pub workers: Option<usize>,
}
