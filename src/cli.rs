//! The `kura` command line.

use clap::{Parser, Subcommand};

use crate::config::ServeConfig;

/// kura: an OCI Distribution v1.1 container registry with redb metadata and flat blob files.
#[derive(Debug, Parser)]
#[command(name = "kura", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// kura's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server (defaults: 127.0.0.1:5000, data under ./kura-data).
    Serve(ServeConfig),
}
