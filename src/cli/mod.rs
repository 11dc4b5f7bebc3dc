//! The `kura` command line: one module per subcommand.

mod fsck;
mod gc;
mod serve;
mod store_target;

use clap::{Parser, Subcommand};

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
    Serve(serve::ServeArgs),
    /// Collect garbage now: unreferenced blobs, dead manifests, stale uploads.
    Gc(gc::GcArgs),
    /// Verify every blob file against its digest and the metadata tables against each other.
    Fsck(fsck::FsckArgs),
}

/// The error a subcommand ends with; printed as `kura: <error>` with exit status 1.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Fsck(args) => fsck::run(args),
    }
}
