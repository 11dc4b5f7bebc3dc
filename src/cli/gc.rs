//! `kura gc`: collect garbage now, in this process or through the server holding the store.

use std::time::Duration;

use super::store_target::{StoreTarget, Target, post_json};
use crate::config::parse_duration;
use crate::gc::{GcOptions, GcReport, collect};

/// Arguments of `kura gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub target: StoreTarget,
    /// Keep unreferenced items younger than this. A running server refuses a grace below its
    /// `gc.min_online_grace` (10m); `0s` (everything unreferenced) only with the server stopped.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Also collect untagged manifests no tagged index or live subject keeps alive.
    #[arg(long)]
    pub delete_untagged: bool,
    /// Purge upload sessions idle longer than this.
    #[arg(long, default_value = "168h", value_parser = parse_duration)]
    pub upload_max_age: Duration,
    /// List what would be removed and the bytes it would free; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `kura retention`.
#[derive(Debug, clap::Args)]
pub struct RetentionArgs {
    /// Where the store is; opened directly, its rules come from `--config`.
    #[command(flatten)]
    pub target: StoreTarget,
    /// List the tags that would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Applies the retention rules once and prints the report as `kura gc` does.
pub fn retention(args: RetentionArgs) -> Result<(), super::CliError> {
    let report: GcReport = match args.target.resolve()? {
        Target::Local(registry) => crate::gc::retention::run(&registry, args.dry_run)?,
        Target::Remote(url) => post_json(
            &args.target,
            &url,
            &format!("/admin/retention?dry_run={}", args.dry_run),
        )?,
    };
    print(&report);
    Ok(())
}

fn print(report: &GcReport) {
    if report.dry_run {
        for item in &report.items {
            println!("{item}");
        }
    }
    println!("{report}");
}

/// Runs one collection and prints its summary (and, for a dry run, every item).
pub fn run(args: GcArgs) -> Result<(), super::CliError> {
    let report: GcReport = match args.target.resolve()? {
        Target::Local(registry) => {
            let opts = GcOptions {
                grace: args.grace,
                delete_untagged: args.delete_untagged,
                upload_max_age: args.upload_max_age,
                dry_run: args.dry_run,
                ..GcOptions::default()
            };
            collect(&registry, &opts)?
        }
        Target::Remote(url) => {
            let path = format!(
                "/admin/gc?grace={}s&upload_max_age={}s&delete_untagged={}&dry_run={}",
                args.grace.as_secs(),
                args.upload_max_age.as_secs(),
                args.delete_untagged,
                args.dry_run
            );
            post_json(&args.target, &url, &path)?
        }
    };
    print(&report);
    Ok(())
}
