//! `kura backup` and `kura restore`.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::store_target::{StoreTarget, Target, post_json};
use crate::backup::{BackupReport, Event, backup, restore};

/// Arguments of `kura backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub target: StoreTarget,
    /// The backup directory (created if needed). A backup already there is reused: only
    /// blobs it lacks are copied. With a server holding the store, the server writes it, so
    /// the path is on the server's machine.
    pub dest: PathBuf,
    /// Print one JSON object per line (events, then the report) instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `kura restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup directory (holding backup.json).
    pub src: PathBuf,
    /// The data directory to restore into: empty or new. No server may run on it.
    #[arg(long, env = "KURA_ROOT")]
    pub root: PathBuf,
    /// Print one JSON object per line (events, then the report) instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Backs the store up, in this process or through the server holding it.
pub fn run_backup(args: BackupArgs) -> Result<(), super::CliError> {
    let dest = std::path::absolute(&args.dest)?;
    let report: BackupReport = match args.target.resolve()? {
        Target::Local(registry) => {
            let out = Output::new(args.json, args.quiet);
            backup(&registry, &dest, &|e| out.event(e))?
        }
        Target::Remote(url) => {
            let q: String = percent_encoding::utf8_percent_encode(
                &dest.to_string_lossy(),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            post_json(&args.target, &url, &format!("/admin/backup?dest={q}"))?
        }
    };
    print_done(args.json, &report)
}

/// Restores a backup into an empty data directory.
pub fn run_restore(args: RestoreArgs) -> Result<(), super::CliError> {
    let out = Output::new(args.json, args.quiet);
    let report = restore(&args.src, &args.root, &|e| out.event(e))?;
    print_done(args.json, &report)
}

fn print_done<T: serde::Serialize + std::fmt::Display>(
    json: bool,
    report: &T,
) -> Result<(), super::CliError> {
    if json {
        let mut v = serde_json::to_value(report)?;
        v["event"] = "done".into();
        println!("{v}");
    } else {
        println!("{report}");
    }
    Ok(())
}

/// Where events go: JSON lines, a progress bar, or nowhere.
struct Output {
    json: bool,
    bar: ProgressBar,
}

impl Output {
    fn new(json: bool, quiet: bool) -> Output {
        let bar = if json || quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template"),
        );
        Output { json, bar }
    }

    fn event(&self, e: &Event) {
        if self.json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        match e {
            Event::Start { id, bytes, .. } => {
                self.bar.set_message(id.clone());
                self.bar.set_length(*bytes);
            }
            Event::Blob { size, .. } => self.bar.inc(*size),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
