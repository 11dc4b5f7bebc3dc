//! `kura import`: bring a Distribution filesystem store into a kura store, offline.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::config::Config;
use crate::import::{ImportReport, Source, dry_run, import};
use crate::meta::OpenError;
use crate::registry::{Registry, RegistryOpenError};

/// Arguments of `kura import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The Distribution store's `rootdirectory` (the directory holding `docker/registry/v2`).
    #[arg(
        required_unless_present = "from_bucket",
        conflicts_with = "from_bucket"
    )]
    pub path: Option<PathBuf>,
    /// Import from a bucket instead: a TOML file whose `[storage]` section names it as kura's
    /// config does (`kind = "s3"`, `bucket`, `endpoint`, `region`, credentials), with `prefix`
    /// = the `rootdirectory` of Distribution's s3 driver. Blobs are then always copied.
    #[arg(long, value_name = "FILE")]
    pub from_bucket: Option<PathBuf>,
    /// kura's data directory (created if missing); default: the config file's `root`, else
    /// ./kura-data. No server may be running on it.
    #[arg(long, env = "KURA_ROOT")]
    pub root: Option<PathBuf>,
    /// kura's configuration file: where blobs go (`[storage]`, e.g. a bucket) and the default
    /// data directory.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print what would be imported and what is broken in the source; write nothing (the
    /// destination is not opened: the counts are those of an import into an empty store).
    #[arg(long)]
    pub dry_run: bool,
    /// Copy every blob, even where a hard link to the source's file would do.
    #[arg(long)]
    pub copy: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Imports (or plays the import of) the source; fails when something the source could serve
/// was skipped (after importing everything else); links to nothing are only warned about.
pub fn run(args: ImportArgs) -> Result<(), super::CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let source = match (&args.path, &args.from_bucket) {
        (Some(path), _) => Source::dir(path)?,
        (None, Some(file)) => {
            let cfg = Config::load(Some(file), serde_json::json!({}))?;
            Source::bucket(&cfg.storage)?
        }
        (None, None) => return Err("name the source: PATH or --from-bucket FILE".into()),
    };
    // One line per repository on a terminal; nothing in logs and pipes.
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize, name: &str| {
        if tty {
            eprintln!("[{}/{total}] {name}", done + 1);
        }
    };
    let report = if args.dry_run {
        rt.block_on(dry_run(&source, &progress))?
    } else {
        let registry = open(&args)?;
        rt.block_on(import(&source, &registry, args.copy, &progress))?
    };
    print(&report, args.json)?;
    let (all, losses) = (report.problems.len(), report.losses());
    if all > losses {
        eprintln!(
            "kura: warning: {} link(s) or tag(s) in the source name nothing; skipped",
            all - losses
        );
    }
    if losses == 0 {
        return Ok(());
    }
    let done = if report.dry_run {
        "would be skipped"
    } else {
        "were skipped; everything else is imported"
    };
    Err(format!("{losses} item(s) the source could serve {done} (listed above)").into())
}

fn print(report: &ImportReport, json: bool) -> Result<(), super::CliError> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

/// Opens the destination store alone (refusing one a server holds).
fn open(args: &ImportArgs) -> Result<Registry, super::CliError> {
    let cfg = match &args.config {
        Some(file) => Some(Config::load(Some(file), serde_json::json!({}))?),
        None => None,
    };
    let root = match (&args.root, &cfg) {
        (Some(r), _) => r.clone(),
        (None, Some(c)) => c.root.clone(),
        (None, None) => PathBuf::from("./kura-data"),
    };
    let opened = match &cfg {
        Some(c) => Registry::open_with(&root, &c.storage),
        None if root.join("meta.redb").exists() => Registry::open_recorded(&root),
        None => Registry::open(&root),
    };
    match opened {
        Ok(r) => {
            // The destination's policies (immutable tags) hold for what is imported.
            if let Some(c) = &cfg {
                r.set_policies(crate::policy::Policies::compile(&c.policies)?);
            }
            Ok(r)
        }
        Err(RegistryOpenError::Meta(OpenError::InUse { .. })) => Err(format!(
            "the store {} is in use (is a kura server running on it?); stop it first: \
             an import runs offline",
            root.display()
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}
