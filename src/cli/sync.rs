//! `kura sync` (copy the `[[replication.pull]]` sources' tags now) and `kura replication
//! status`: through the server holding the store (`kura.addr`, `--url`), or on the store itself
//! with `--root` and the configuration file naming the sources.

use super::store_target::{StoreTarget, Target, get_json, post_json};
use crate::config::Config;
use crate::replication::{Replication, Report, SyncResult};

/// Arguments of `kura sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub target: StoreTarget,
    /// Only this `[[replication.pull]]` source (by name).
    #[arg(long)]
    pub source: Option<String>,
}

/// Arguments of `kura replication`.
#[derive(Debug, clap::Args)]
pub struct ReplicationArgs {
    #[command(subcommand)]
    pub command: ReplicationCommand,
}

/// `kura replication` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ReplicationCommand {
    /// Per push target and pull source: pending events, last success, last error.
    Status {
        #[command(flatten)]
        target: StoreTarget,
        /// Print the server's JSON as it is.
        #[arg(long)]
        json: bool,
    },
}

/// The configuration naming the sources, for a store opened directly.
fn local_config(target: &StoreTarget) -> Result<Config, super::CliError> {
    let file = target.config.as_deref().ok_or(
        "no server holds this store: pass --config (the file with [[replication.pull]]) to work on it directly",
    )?;
    Ok(Config::load(Some(file), serde_json::json!({}))?)
}

/// Runs `kura sync`; fails when a source failed.
pub fn run(args: SyncArgs) -> Result<(), super::CliError> {
    let results: Vec<SyncResult> = match args.target.resolve_or_create()? {
        Target::Remote(url) => {
            let path = match &args.source {
                Some(s) => format!(
                    "/admin/replication/sync?source={}",
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                ),
                None => "/admin/replication/sync".into(),
            };
            post_json(&args.target, &url, &path)?
        }
        Target::Local(registry) => {
            let cfg = local_config(&args.target)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async {
                let rep = Replication::new(registry, &cfg.replication)?;
                rep.sync(args.source.as_deref())
                    .await
                    .map_err(super::CliError::from)
            })?
        }
    };
    let mut failed = 0;
    for r in &results {
        let c = r.copied;
        match &r.error {
            None => println!(
                "{}: {} tags copied ({} manifests, {} blobs), {} up to date",
                r.name, c.tags, c.manifests, c.blobs, c.skipped
            ),
            Some(e) => {
                failed += 1;
                println!("{}: failed: {e}", r.name);
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} source(s) failed").into());
    }
    Ok(())
}

/// Runs `kura replication ...`.
pub fn replication(args: ReplicationArgs) -> Result<(), super::CliError> {
    let ReplicationCommand::Status { target, json } = args.command;
    let report: Report = match target.resolve()? {
        Target::Remote(url) => get_json(&target, &url, "/admin/replication")?,
        Target::Local(registry) => {
            // Offline, only the queue is known: what is pending per target.
            let cfg = local_config(&target)?;
            let mut report = Report::default();
            for t in &cfg.replication.push {
                report.push.push(crate::replication::status::TargetStatus {
                    name: t.name.clone(),
                    url: t.url.clone(),
                    pending: crate::replication::status::pending(&registry, &t.name)?,
                    ..Default::default()
                });
            }
            report
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let never = || "never".to_string();
    for t in &report.push {
        println!(
            "push {} -> {}: {} pending, {} replicated, {} dropped, last success {}",
            t.name,
            t.url,
            t.pending,
            t.replicated,
            t.dropped,
            t.last_success.clone().unwrap_or_else(never)
        );
        if let Some(e) = &t.last_error {
            println!("  last error at {}: {}", e.time, e.message);
        }
    }
    for s in &report.pull {
        println!(
            "pull {} <- {}: every {}s, last success {}",
            s.name,
            s.url,
            s.interval_secs,
            s.last_success.clone().unwrap_or_else(never)
        );
        if let Some(c) = s.last_copied {
            println!(
                "  last sync: {} tags ({} manifests, {} blobs), {} up to date",
                c.tags, c.manifests, c.blobs, c.skipped
            );
        }
        if let Some(e) = &s.last_error {
            println!("  last error at {}: {}", e.time, e.message);
        }
    }
    Ok(())
}
