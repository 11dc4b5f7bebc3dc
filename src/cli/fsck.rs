//! `kura fsck`: verify every blob against its digest and every table against the others.

use std::io::IsTerminal;

use super::store_target::{StoreTarget, Target, post_json};
use crate::fsck::{FsckReport, fsck};

/// Arguments of `kura fsck`.
#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub target: StoreTarget,
    /// Fix what can be fixed safely (needs the store to itself: stop the server first).
    #[arg(long)]
    pub repair: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Verifies the store and prints the findings; fails when errors remain.
pub fn run(args: FsckArgs) -> Result<(), super::CliError> {
    let report: FsckReport = match args.target.resolve()? {
        Target::Local(registry) => {
            let progress = !args.quiet && std::io::stderr().is_terminal();
            fsck(&registry, args.repair, progress)?
        }
        Target::Remote(url) => {
            if args.repair {
                return Err(
                    format!("a server ({url}) holds the store; stop it to --repair").into(),
                );
            }
            post_json(&args.target, &url, "/admin/fsck")?
        }
    };
    println!("{report}");
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("{} error(s) found", report.errors.len()).into())
    }
}
