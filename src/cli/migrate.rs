//! `kura migrate-storage`: copy a stopped registry's blobs to another blob store (e.g. from the
//! data directory into a bucket), verified and resumable, then point its config file there.

use std::path::{Path, PathBuf};

use crate::config::{Config, StorageConfig};
use crate::meta::OpenError;
use crate::meta::settings::{self, StoreIdentity};
use crate::registry::{Registry, RegistryOpenError};
use crate::store::BlobStore;
use crate::store::migrate::{copy_blobs, end_upload_sessions};

/// Arguments of `kura migrate-storage`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The registry's configuration file: its `root` and `[storage]` are the source. Once every
    /// blob is copied and verified, upload sessions in progress are ended (their bytes stay
    /// behind) and its `[storage]` section is rewritten to the destination (the previous file
    /// is kept as FILE.bak).
    #[arg(long)]
    pub config: PathBuf,
    /// A TOML file whose `[storage]` section is the destination, e.g.
    /// `kind = "s3"`, `bucket`, `prefix`, `endpoint`, `region`.
    #[arg(long)]
    pub to: PathBuf,
    /// Copy and verify only; leave the configuration file as it is.
    #[arg(long)]
    pub no_switch: bool,
}

/// Copies the blobs, then switches the configuration unless told not to.
pub fn run(args: MigrateArgs) -> Result<(), super::CliError> {
    let cfg = Config::load(Some(&args.config), serde_json::json!({}))?;
    let dest_cfg = destination(&args.to)?;
    if same_place(&dest_cfg, &cfg.storage) {
        return Err("the destination is the store the configuration already uses".into());
    }
    let registry = match Registry::open_for_migration(&cfg.root, &cfg.storage) {
        Ok(r) => r,
        Err(RegistryOpenError::Meta(OpenError::InUse { .. })) => {
            return Err(
                "the store is in use: stop the server first (blobs pushed during a migration would be missed)"
                    .into(),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let dest = BlobStore::open(&cfg.root, &dest_cfg)
        .map_err(|e| format!("cannot open the destination: {e}"))?;
    eprintln!(
        "copying blobs from {} to {}",
        registry.store().describe(),
        dest.describe()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(copy_blobs(&registry, &dest, &|_| {}))?;
    println!(
        "{} blobs: {} copied ({} bytes), {} already there, {} failed",
        report.blobs,
        report.copied,
        report.bytes_copied,
        report.already_there,
        report.failed.len()
    );
    for f in &report.failed {
        println!("failed: {f}");
    }
    if !report.failed.is_empty() {
        return Err(
            "some blobs were not copied; the configuration is unchanged (run again to resume)"
                .into(),
        );
    }
    if args.no_switch {
        return Ok(());
    }
    let ended = end_upload_sessions(&registry)?;
    if ended > 0 {
        println!("{ended} upload session(s) in progress ended (their clients start over)");
    }
    // The metadata names its new store first: a crash before the config file is rewritten
    // leaves a server that refuses to start and says so; running this again finishes the job.
    let id = StoreIdentity::of(&dest_cfg);
    registry
        .meta()
        .write(|t| settings::set_blob_store(t, &id))?;
    switch_config(&args.config, &args.to)?;
    println!(
        "{} now uses {} (previous file: {}.bak)",
        args.config.display(),
        dest.describe(),
        args.config.display()
    );
    Ok(())
}

/// Whether two `[storage]` sections name the same blobs, whatever their other keys
/// (`delete`, `redirect`, `part_size`, credentials): the store identity the metadata records,
/// and here also the endpoint (one bucket name may exist on two services).
fn same_place(a: &StorageConfig, b: &StorageConfig) -> bool {
    let (a, b) = (StoreIdentity::of(a), StoreIdentity::of(b));
    a.same_store(&b) && a.endpoint.trim_end_matches('/') == b.endpoint.trim_end_matches('/')
}

/// The destination's `[storage]` section, validated as the server would.
fn destination(file: &Path) -> Result<StorageConfig, super::CliError> {
    let cfg = Config::load(Some(file), serde_json::json!({}))?;
    Ok(cfg.storage)
}

/// Replaces the `[storage]` keys of `config` with those of `to` (keeping `delete` and the
/// rest of the file, comments included), atomically, with a backup.
fn switch_config(config: &Path, to: &Path) -> Result<(), super::CliError> {
    let text = std::fs::read_to_string(config)?;
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    let dest: toml_edit::DocumentMut = std::fs::read_to_string(to)?.parse()?;
    let Some(new) = dest.get("storage").and_then(|s| s.as_table()) else {
        return Err(format!("{} has no [storage] section", to.display()).into());
    };
    let storage = doc
        .entry("storage")
        .or_insert(toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .ok_or("[storage] in the configuration is not a table")?;
    let keep_delete = storage.get("delete").cloned();
    storage.clear();
    for (k, v) in new.iter() {
        storage.insert(k, v.clone());
    }
    if let Some(d) = keep_delete
        && !storage.contains_key("delete")
    {
        storage.insert("delete", d);
    }
    let backup = PathBuf::from(format!("{}.bak", config.display()));
    std::fs::copy(config, &backup)?;
    let tmp = PathBuf::from(format!("{}.tmp", config.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = private_file(&tmp, config, to)?;
    std::io::Write::write_all(&mut file, doc.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, config)?;
    Ok(())
}

/// Creates `path` no more readable than either file its content comes from: the new
/// configuration holds `to`'s keys (credentials, maybe) and the rest of `config`.
fn private_file(path: &Path, config: &Path, to: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode(config)? & mode(to)?)
        .open(path)
}
