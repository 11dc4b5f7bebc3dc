//! The `kura` command line: one module per subcommand.

mod backup;
mod catalog;
mod config_cmd;
mod copy;
mod delete;
mod fsck;
mod gc;
mod import;
mod inspect;
mod login;
mod migrate;
mod pull;
mod push;
mod serve;
mod store_target;
mod sync;
mod tags;
mod usage;

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
    /// Validate a config file and print the effective configuration.
    Config(config_cmd::ConfigArgs),
    /// Back the store up into a directory (consistent, verified, incremental), in this process
    /// or through the server holding it.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data directory, verifying every digest (offline).
    Restore(backup::RestoreArgs),
    /// Collect garbage now: unreferenced blobs, dead manifests, stale uploads.
    Gc(gc::GcArgs),
    /// Apply the retention rules (`[[policies.retention]]`) now: remove the tags they select;
    /// `--dry-run` lists them.
    Retention(gc::RetentionArgs),
    /// Verify every blob file against its digest and the metadata tables against each other.
    Fsck(fsck::FsckArgs),
    /// Show the unique bytes each repository and quota namespace holds, with the quotas.
    Usage(usage::UsageArgs),
    /// Copy a stopped registry's blobs to another blob store (e.g. a bucket), verified and
    /// resumable, then switch its configuration to it.
    MigrateStorage(migrate::MigrateArgs),
    /// Import a CNCF Distribution store (its rootdirectory, or a bucket), verified and
    /// resumable, offline; `--dry-run` reports what would be imported and what is broken.
    Import(import::ImportArgs),
    /// Copy the tags of the `[[replication.pull]]` sources into the store now (resumable).
    Sync(sync::SyncArgs),
    /// Replication status: pending events, last success and last error per target and source.
    Replication(sync::ReplicationArgs),
    /// Push an OCI image layout or a `docker save` tarball to a registry.
    Push(push::PushArgs),
    /// Pull an image into an OCI image layout directory.
    Pull(pull::PullArgs),
    /// Copy an image between repositories or registries (every platform; referrers optionally).
    Copy(copy::CopyArgs),
    /// List a repository's tags.
    Tags(tags::TagsArgs),
    /// List a registry's repositories.
    Catalog(catalog::CatalogArgs),
    /// Show a manifest and its config.
    Inspect(inspect::InspectArgs),
    /// Delete a tag, or a manifest by digest.
    Delete(delete::DeleteArgs),
    /// Check credentials for a registry and store them in ~/.docker/config.json.
    Login(login::LoginArgs),
    /// Remove a registry's credentials from ~/.docker/config.json.
    Logout(login::LogoutArgs),
}

/// The error a subcommand ends with; printed as `kura: <error>` with exit status 1.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let _log = if matches!(cli.command, Command::Serve(_)) {
        None
    } else {
        crate::ops::logging::init(&crate::config::LogConfig {
            level: "warn".into(),
            ..Default::default()
        })
    };
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config(args) => config_cmd::run(args),
        Command::Backup(args) => backup::run_backup(args),
        Command::Restore(args) => backup::run_restore(args),
        Command::Gc(args) => gc::run(args),
        Command::Retention(args) => gc::retention(args),
        Command::Fsck(args) => fsck::run(args),
        Command::Usage(args) => usage::run(args),
        Command::MigrateStorage(args) => migrate::run(args),
        Command::Import(args) => import::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Replication(args) => sync::replication(args),
        Command::Push(args) => push::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Copy(args) => copy::run(args),
        Command::Tags(args) => tags::run(args),
        Command::Catalog(args) => catalog::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Delete(args) => delete::run(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
    }
}
