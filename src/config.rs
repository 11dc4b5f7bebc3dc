//! Server configuration: flags, with `KURA_*` environment variables as fallbacks.

use std::path::PathBuf;
use std::time::Duration;

use crate::gc::GcOptions;

/// Parses durations such as `0s`, `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s, 15m, 24h: {e}"))
}

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
    #[command(flatten)]
    pub gc: GcConfig,
}

/// Online garbage collection settings.
#[derive(Debug, Clone, clap::Args)]
pub struct GcConfig {
    /// How often the background collector runs (`0s` turns it off; `POST /admin/gc` still works).
    #[arg(long = "gc-interval", env = "KURA_GC_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub interval: Duration,
    /// Unreferenced blobs and manifests younger than this are kept.
    #[arg(long = "gc-grace", env = "KURA_GC_GRACE", default_value = "24h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Also collect untagged manifests that no tagged index or live subject keeps alive.
    #[arg(long = "gc-delete-untagged", env = "KURA_GC_DELETE_UNTAGGED")]
    pub delete_untagged: bool,
    /// Upload sessions idle longer than this are purged.
    #[arg(long = "upload-max-age", env = "KURA_UPLOAD_MAX_AGE", default_value = "168h", value_parser = parse_duration)]
    pub upload_max_age: Duration,
}

impl GcConfig {
    /// The collection options these settings give.
    pub fn options(&self) -> GcOptions {
        GcOptions {
            grace: self.grace,
            delete_untagged: self.delete_untagged,
            upload_max_age: self.upload_max_age,
            ..GcOptions::default()
        }
    }
}
