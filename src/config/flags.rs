//! `kura serve` flags: each one, when given, overrides the file and the environment.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::parse_duration;

/// Flags of `kura serve` (every setting also has a config key and a `KURA_*` variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeFlags {
    /// Config file (TOML); see README for every key.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000] (KURA_ADDR).
    #[arg(long)]
    pub addr: Option<String>,
    /// Data directory [default: ./kura-data] (KURA_ROOT).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// HTTP worker threads [default: one per core] (KURA_WORKERS).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Refuse writes, serve reads (KURA_READ_ONLY).
    #[arg(long)]
    pub read_only: bool,
    /// Log as JSON lines (KURA_LOG__FORMAT=json).
    #[arg(long)]
    pub log_json: bool,
    /// Serve /metrics on this separate address (KURA_METRICS__ADDR).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Background GC interval, `0s` = off [default: 1h] (KURA_GC__INTERVAL).
    #[arg(long, value_parser = parse_duration)]
    pub gc_interval: Option<Duration>,
    /// GC grace period [default: 24h] (KURA_GC__GRACE).
    #[arg(long, value_parser = parse_duration)]
    pub gc_grace: Option<Duration>,
    /// Shortest grace an online collection may use [default: 10m] (KURA_GC__MIN_ONLINE_GRACE).
    #[arg(long, value_parser = parse_duration)]
    pub gc_min_online_grace: Option<Duration>,
    /// GC also collects untagged manifests (KURA_GC__DELETE_UNTAGGED).
    #[arg(long)]
    pub gc_delete_untagged: bool,
    /// Purge uploads idle longer than this [default: 168h] (KURA_GC__UPLOAD_MAX_AGE).
    #[arg(long, value_parser = parse_duration)]
    pub upload_max_age: Option<Duration>,
    /// htpasswd file (bcrypt, `htpasswd -B`): turns on authentication (KURA_AUTH__HTPASSWD).
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// TOML file with the `[auth]` settings (token, rules), merged over the config file.
    #[arg(long)]
    pub auth_config: Option<PathBuf>,
    /// TLS certificate chain, PEM (KURA_TLS__CERT); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (KURA_TLS__KEY); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn set(map: &mut Map<String, Value>, path: &[&str], v: Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut m = map;
    for p in parents {
        m = m
            .entry(p.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("section is an object");
    }
    m.insert(last.to_string(), v);
}

fn dur(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

impl ServeFlags {
    /// The settings these flags override, as a nested map of config keys.
    pub fn overrides(&self) -> Value {
        let mut m = Map::new();
        if let Some(a) = &self.addr {
            set(&mut m, &["addr"], json!(a));
        }
        if let Some(r) = &self.root {
            set(&mut m, &["root"], json!(r));
        }
        if let Some(w) = self.workers {
            set(&mut m, &["workers"], json!(w));
        }
        if self.read_only {
            set(&mut m, &["read_only"], json!(true));
        }
        if self.log_json {
            set(&mut m, &["log", "format"], json!("json"));
        }
        if let Some(a) = &self.metrics_addr {
            set(&mut m, &["metrics", "addr"], json!(a));
        }
        if let Some(d) = self.gc_interval {
            set(&mut m, &["gc", "interval"], dur(d));
        }
        if let Some(d) = self.gc_grace {
            set(&mut m, &["gc", "grace"], dur(d));
        }
        if let Some(d) = self.gc_min_online_grace {
            set(&mut m, &["gc", "min_online_grace"], dur(d));
        }
        if self.gc_delete_untagged {
            set(&mut m, &["gc", "delete_untagged"], json!(true));
        }
        if let Some(d) = self.upload_max_age {
            set(&mut m, &["gc", "upload_max_age"], dur(d));
        }
        if let Some(p) = &self.htpasswd {
            set(&mut m, &["auth", "htpasswd"], json!(p));
        }
        if let Some(p) = &self.tls_cert {
            set(&mut m, &["tls", "cert"], json!(p));
        }
        if let Some(p) = &self.tls_key {
            set(&mut m, &["tls", "key"], json!(p));
        }
        Value::Object(m)
    }
}
