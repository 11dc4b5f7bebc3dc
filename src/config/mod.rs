//! Server configuration. Sources, later ones winning: built-in defaults, the config file
//! (`--config kura.toml`), `KURA_*` environment variables (`KURA_ADDR`, `KURA_GC__GRACE`: a
//! double underscore descends into a section), then command-line flags. Unknown keys and bad
//! values are errors at start. `README.md` shows a complete file.

mod flags;
mod metadata;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, TlsConfig};
use crate::gc::GcOptions;

pub use flags::ServeFlags;
pub use metadata::{MetadataConfig, MetadataKind};

/// Parses durations such as `0s`, `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s, 15m, 24h: {e}"))
}

/// Everything `kura serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub addr: String,
    /// Data directory: `blobs/`, `uploads/`, `meta.redb`.
    pub root: PathBuf,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Refuse every write (reads go on); can be changed at run time via `/admin/read-only`.
    pub read_only: bool,
    pub storage: StorageConfig,
    /// Where the metadata lives (`[metadata]`): redb under `root`, or PostgreSQL.
    pub metadata: MetadataConfig,
    pub gc: GcConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub notifications: NotificationsConfig,
    /// Replication to other registries (`[[replication.push]]`) and from them
    /// (`[[replication.pull]]`).
    pub replication: crate::replication::ReplicationConfig,
    /// Authentication and access rules (`[auth]`); off unless `htpasswd` or `[auth.token]`.
    pub auth: AuthConfig,
    /// TLS certificate and key (`[tls]`); plain HTTP without.
    pub tls: TlsConfig,
    /// Upstream registries served as a pull-through cache (`[[mirrors]]`).
    pub mirrors: Vec<crate::mirror::MirrorConfig>,
    /// The web interface at `/ui/` (`[ui]`).
    pub ui: UiConfig,
    /// Rate limits, quotas, retention, immutable tags, required signatures (`[policies]`).
    pub policies: crate::policy::PoliciesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:5000".into(),
            root: PathBuf::from("./kura-data"),
            workers: None,
            read_only: false,
            storage: StorageConfig::default(),
            metadata: MetadataConfig::default(),
            gc: GcConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            notifications: NotificationsConfig::default(),
            replication: Default::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            mirrors: Vec::new(),
            ui: UiConfig::default(),
            policies: Default::default(),
        }
    }
}

/// Where and how content is stored (`[storage]`). Metadata always stays in `root`'s redb
/// file; `kind` picks where blob bytes live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Whether clients may delete manifests, tags and blob links (`DELETE` on `/v2/`); when
    /// off they get 405 `UNSUPPORTED`, as Distribution's `storage.delete.enabled = false`.
    /// Upload cancels and the collector are unaffected.
    pub delete: bool,
    /// `filesystem` (blobs under `root`) or `s3` (an S3-compatible bucket).
    pub kind: StorageKind,
    /// The bucket (`s3`); it must exist.
    pub bucket: String,
    /// A key prefix inside the bucket, so several registries can share one (`s3`).
    pub prefix: String,
    /// The bucket's region (`s3`); `AWS_REGION` / `AWS_DEFAULT_REGION` when empty.
    pub region: String,
    /// The S3 endpoint URL for Ceph RGW, MinIO, R2...; AWS itself when empty
    /// (`AWS_ENDPOINT_URL` is read when this is empty).
    pub endpoint: String,
    /// Credentials; the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) variables are used when these are empty. Masked when printed.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`). Unset: on for a custom endpoint,
    /// virtual-hosted style for AWS.
    pub path_style: Option<bool>,
    /// Size of each multipart part an upload sends, in bytes (at least 5 MiB, S3's minimum
    /// for every part but the last); an upload buffers at most two parts in memory.
    pub part_size: u64,
    /// Answer blob GETs with a `307` to a presigned URL of the object, so the bytes go from
    /// the object store (or a CDN in front of it) straight to the client (`s3` only).
    pub redirect: bool,
    /// How long a presigned redirect URL stays valid.
    #[serde(with = "humantime_serde")]
    pub redirect_expiry: Duration,
}

/// The blob backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Filesystem,
    S3,
}

/// S3's smallest part (every part of a multipart upload but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            delete: true,
            kind: StorageKind::Filesystem,
            bucket: String::new(),
            prefix: String::new(),
            region: String::new(),
            endpoint: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: None,
            part_size: 8 * 1024 * 1024,
            redirect: false,
            redirect_expiry: Duration::from_secs(15 * 60),
        }
    }
}

impl StorageConfig {
    fn validate(&self) -> Result<(), String> {
        if self.kind == StorageKind::Filesystem {
            return Ok(());
        }
        if self.bucket.is_empty() {
            return Err("storage.bucket is needed for kind = \"s3\"".into());
        }
        if self.part_size < MIN_PART_SIZE || self.part_size > 5 * 1024 * 1024 * 1024 {
            return Err(format!(
                "storage.part_size ({}) must be between 5 MiB and 5 GiB (S3's part limits)",
                self.part_size
            ));
        }
        if self.access_key_id.is_empty() != self.secret_access_key.is_empty() {
            return Err("storage.access_key_id and storage.secret_access_key go together".into());
        }
        if self.redirect_expiry.is_zero() || self.redirect_expiry > Duration::from_secs(7 * 86400) {
            return Err(
                "storage.redirect_expiry must be between 1s and 7 days (SigV4's limit)".into(),
            );
        }
        Ok(())
    }
}

/// Online garbage collection (`[gc]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// How often the background collector runs; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Unreferenced blobs and manifests younger than this are kept.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Also collect untagged manifests no tagged index or live subject keeps alive.
    pub delete_untagged: bool,
    /// Upload sessions idle longer than this are purged.
    #[serde(with = "humantime_serde")]
    pub upload_max_age: Duration,
    /// The shortest grace a collection on the live store may use (the background task,
    /// `POST /admin/gc?grace=`, `kura gc` asking the server): a push in flight relies on its
    /// blobs for that long. A shorter grace only with the server stopped (`kura gc --root`).
    #[serde(with = "humantime_serde")]
    pub min_online_grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: Duration::from_secs(3600),
            grace: Duration::from_secs(24 * 3600),
            delete_untagged: false,
            upload_max_age: Duration::from_secs(168 * 3600),
            min_online_grace: Duration::from_secs(600),
        }
    }
}

impl GcConfig {
    /// The collection options these settings give.
    pub fn options(&self) -> GcOptions {
        GcOptions {
            grace: self.grace,
            delete_untagged: self.delete_untagged,
            upload_max_age: self.upload_max_age,
            min_grace: self.min_online_grace,
            ..GcOptions::default()
        }
    }
}

/// Request limits (`[limits]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest manifest accepted, in bytes (413 beyond).
    pub max_manifest_size: usize,
    /// Time a client has to send its request headers.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest pause allowed between two chunks of a request body (slow clients are cut off).
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Blob uploads streaming at once; more get 429 `TOOMANYREQUESTS`.
    pub max_concurrent_uploads: usize,
    /// Upload sessions open at once (started, not yet finished, cancelled or purged); more
    /// get 429 `TOOMANYREQUESTS`.
    pub max_upload_sessions: usize,
    /// Upload sessions one client (authenticated user, else peer IP address) may hold open.
    pub max_upload_sessions_per_client: usize,
    /// How long shutdown waits for requests in flight.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// `/readyz` fails (503) while the data directory's file system has fewer free bytes than
    /// this (0: no floor), so a load balancer stops sending pushes before writes fail with 507.
    pub min_free_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_manifest_size: crate::manifest::MAX_MANIFEST_SIZE,
            request_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_concurrent_uploads: 256,
            max_upload_sessions: 10_000,
            max_upload_sessions_per_client: 1_000,
            shutdown_timeout: Duration::from_secs(30),
            min_free_bytes: 0,
        }
    }
}

/// Log output (`[log]`); `KURA_LOG` (an env-filter such as `debug`) overrides the level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable) or `json`.
    pub format: LogFormat,
    /// Default level filter, e.g. `info` or `kura=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The web interface (`[ui]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the web interface at `/ui/`.
    pub enabled: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig { enabled: true }
    }
}

/// Prometheus metrics (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// Serve `/metrics` on this separate address instead of the registry's.
    pub addr: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            addr: None,
        }
    }
}

/// Webhook notifications (`[[notifications.endpoints]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    pub endpoints: Vec<EndpointConfig>,
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointConfig {
    /// A unique name (pending events are kept per endpoint under it).
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`); values are masked when printed.
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First retry delay after a failed delivery; doubles up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Events sent: any of `push`, `pull`, `mount`, `delete` (all when empty).
    pub actions: Vec<String>,
    /// Only repositories starting with one of these prefixes (all when empty).
    pub repositories: Vec<String>,
    /// Events per delivery request.
    pub batch_size: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            name: String::new(),
            url: String::new(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            actions: Vec::new(),
            repositories: Vec::new(),
            batch_size: 100,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The `KURA_*` variables that map to a configuration key. Others (`KURA_JOBS` of the client,
/// the `KURA_PORT`, `KURA_SERVICE_HOST`, ... Kubernetes injects beside a Service named `kura`)
/// are left out; `ignored_env_vars` names them. `KURA_LOG` is the log filter, not a key.
fn server_env() -> Env {
    let defaults = default_keys();
    Env::prefixed("KURA_")
        .ignore(&["LOG"])
        .filter(move |k| maps_to_key(&defaults, k.as_str()))
}

fn default_keys() -> serde_json::Value {
    serde_json::to_value(Config::default()).unwrap_or_default()
}

/// Whether `key` (a variable's name without `KURA_`; `__` descends into a section) names a
/// key of `defaults`. Below a key whose default is empty (an optional section, a map such as
/// `headers`, a list such as `rules`) any name is taken: serde judges those.
fn maps_to_key(defaults: &serde_json::Value, key: &str) -> bool {
    let mut cur = defaults;
    for seg in key.split("__") {
        match cur {
            serde_json::Value::Object(m) if !m.is_empty() => {
                match m.iter().find(|(k, _)| k.eq_ignore_ascii_case(seg)) {
                    Some((_, v)) => cur = v,
                    None => return false,
                }
            }
            serde_json::Value::Object(_)
            | serde_json::Value::Null
            | serde_json::Value::Array(_) => return true,
            _ => return false,
        }
    }
    true
}

/// The names of the `KURA_*` variables set in this process that map to no configuration key
/// and are therefore ignored (the server logs them once at start).
pub fn ignored_env_vars() -> Vec<String> {
    let defaults = default_keys();
    let mut out: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.strip_prefix("KURA_")
                .is_some_and(|rest| rest != "LOG" && !maps_to_key(&defaults, rest))
        })
        .collect();
    out.sort();
    out
}

impl Config {
    /// Loads defaults, then `file`, then `KURA_*` variables, then `overrides` (from flags).
    pub fn load(file: Option<&Path>, overrides: serde_json::Value) -> Result<Config, ConfigError> {
        Self::load_with_auth(file, None, overrides)
    }

    /// Like `load`, with an `--auth-config` file (the `[auth]` keys) merged after `file`.
    pub fn load_with_auth(
        file: Option<&Path>,
        auth_file: Option<&Path>,
        overrides: serde_json::Value,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::Missing(f.display().to_string()));
            }
            fig = fig.merge(Toml::file(f));
        }
        if let Some(f) = auth_file {
            let section = crate::auth::config::read_auth_file(f).map_err(ConfigError::Invalid)?;
            fig = fig.merge(Serialized::defaults(section));
        }
        fig = fig
            .merge(server_env().split("__"))
            .merge(Serialized::defaults(overrides));
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.addr.parse::<std::net::SocketAddr>().is_err() && !self.addr.contains(':') {
            return bad(format!("addr {:?} is not host:port", self.addr));
        }
        if self.workers == Some(0) {
            return bad("workers must be at least 1".into());
        }
        if let Err(m) = self.metadata.validate() {
            return bad(m);
        }
        if self.limits.max_concurrent_uploads == 0
            || self.limits.max_manifest_size == 0
            || self.limits.max_upload_sessions == 0
            || self.limits.max_upload_sessions_per_client == 0
        {
            return bad("limits must be positive".into());
        }
        if self.gc.grace < self.gc.min_online_grace {
            return bad(format!(
                "gc.grace ({}) is below gc.min_online_grace ({}): the server's collector would delete pushes in flight",
                humantime::format_duration(self.gc.grace),
                humantime::format_duration(self.gc.min_online_grace)
            ));
        }
        self.storage.validate().map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        self.tls.validate().map_err(ConfigError::Invalid)?;
        self.policies.validate().map_err(ConfigError::Invalid)?;
        self.replication
            .validate(&self.notifications.endpoints, &self.mirrors)
            .map_err(ConfigError::Invalid)?;
        crate::mirror::config::validate_all(&self.mirrors).map_err(ConfigError::Invalid)?;
        let mut names = std::collections::BTreeSet::new();
        for e in &self.notifications.endpoints {
            if e.name.is_empty() || !names.insert(e.name.as_str()) {
                return bad(format!(
                    "notification endpoint names must be unique and non-empty ({:?})",
                    e.name
                ));
            }
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return bad(format!(
                    "notification endpoint {} needs an http(s) url",
                    e.name
                ));
            }
            if let Some(a) = e
                .actions
                .iter()
                .find(|a| !["push", "pull", "mount", "delete"].contains(&a.as_str()))
            {
                return bad(format!(
                    "notification endpoint {}: unknown action {a:?}",
                    e.name
                ));
            }
            if e.batch_size == 0 {
                return bad(format!(
                    "notification endpoint {}: batch_size must be positive",
                    e.name
                ));
            }
        }
        Ok(())
    }

    /// The configuration as TOML with secrets (header values, credentials) masked.
    pub fn to_masked_toml(&self) -> String {
        let mut c = self.clone();
        c.metadata.url = c.metadata.masked_url();
        if !c.storage.secret_access_key.is_empty() {
            c.storage.secret_access_key = "********".into();
        }
        for e in &mut c.notifications.endpoints {
            for v in e.headers.values_mut() {
                *v = "********".into();
            }
            if let (Some(at), Some(scheme)) = (e.url.find('@'), e.url.find("://"))
                && at > scheme
            {
                e.url.replace_range(scheme + 3..at, "********");
            }
        }
        c.replication.mask();
        c.mirrors = c.mirrors.iter().map(|m| m.masked()).collect();
        // Passwords, token signing keys and TLS keys are only referenced by file path; a
        // realm URL with user info is the one inline place a credential could be.
        if let Some(realm) = c.auth.token.as_mut().and_then(|t| t.realm.as_mut())
            && let (Some(scheme), Some(at)) = (realm.find("://"), realm.find('@'))
            && at > scheme
        {
            realm.replace_range(scheme + 3..at, "********");
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

#[cfg(test)]
mod env_tests {
    use super::{default_keys, maps_to_key};

    #[test]
    fn variables_map_to_keys_sections_and_open_subtrees_only() {
        let d = default_keys();
        for known in [
            "ADDR",
            "root",
            "GC__GRACE",
            "LIMITS__MAX_CONCURRENT_UPLOADS",
            "AUTH__TOKEN__SERVICE",
            "NOTIFICATIONS__ENDPOINTS",
        ] {
            assert!(maps_to_key(&d, known), "{known}");
        }
        for foreign in [
            "JOBS",
            "PORT",
            "SERVICE_HOST",
            "PORT_5000_TCP_ADDR",
            "GC__GRACE__X",
            "ADDR__PORT",
            "GC__NOPE",
        ] {
            assert!(!maps_to_key(&d, foreign), "{foreign}");
        }
    }
}
