//! A cluster of real `kura serve` children for the end-to-end and fault tests: each node with
//! a data directory of its own, all on one PostgreSQL database and one bucket prefix.

use std::path::{Path, PathBuf};

use super::{KillOnDrop, short_online_grace_env, spawn_kura_guarded_env, storage_env};
use kura::config::StorageConfig;

/// One node: its child process (killed on drop), base URL and data directory.
pub struct Node {
    pub proc: KillOnDrop,
    pub base: String,
    pub root: tempfile::TempDir,
}

impl Node {
    /// `<base><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// The environment that makes a `kura serve` child a node of the cluster on `pg_url` and
/// `storage` (with online collection allowed a zero grace, for tests).
pub fn node_env(storage: &StorageConfig, pg_url: &str) -> Vec<(String, String)> {
    let mut env = storage_env(storage);
    env.push(("KURA_METADATA__KIND".into(), "postgres".into()));
    env.push(("KURA_METADATA__URL".into(), pg_url.into()));
    env.push(("KURA_METADATA__POOL_SIZE".into(), "4".into()));
    for (k, v) in short_online_grace_env() {
        env.push((k.into(), v.into()));
    }
    env
}

/// Starts one node over a data directory of its own.
pub fn start_node(storage: &StorageConfig, pg_url: &str) -> Node {
    let root = tempfile::tempdir().expect("temp dir");
    let env = node_env(storage, pg_url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (proc, base) = spawn_kura_guarded_env(root.path(), &[], &env);
    Node { proc, base, root }
}

/// Starts `n` nodes.
pub fn start(n: usize, storage: &StorageConfig, pg_url: &str) -> Vec<Node> {
    (0..n).map(|_| start_node(storage, pg_url)).collect()
}

/// Writes a configuration file for `kura gc|fsck --config` acting on the cluster (its own
/// data directory `root`); returns its path.
pub fn config_file(dir: &Path, storage: &StorageConfig, pg_url: &str) -> PathBuf {
    let mut doc = toml::Table::new();
    doc.insert(
        "root".into(),
        toml::Value::String(dir.join("cli-root").display().to_string()),
    );
    doc.insert(
        "storage".into(),
        toml::Value::try_from(storage).expect("storage as TOML"),
    );
    let mut meta = toml::Table::new();
    meta.insert("kind".into(), toml::Value::String("postgres".into()));
    meta.insert("url".into(), toml::Value::String(pg_url.into()));
    doc.insert("metadata".into(), toml::Value::Table(meta));
    let path = dir.join("cluster.toml");
    std::fs::write(&path, toml::to_string(&doc).expect("config TOML")).expect("write config");
    path
}

/// Runs `kura fsck --config <cfg>`; asserts it succeeds and returns its output.
pub fn fsck_clean(cfg: &Path) -> String {
    let (ok, out, err) = super::kura_cmd(&["fsck", "--config", &cfg.display().to_string()]);
    assert!(ok, "kura fsck --config failed:\n{out}\n{err}");
    out
}

/// Starts one node with `extra` flags and environment variables beside the cluster's.
pub fn start_node_with(
    storage: &StorageConfig,
    pg_url: &str,
    extra: &[&str],
    extra_env: &[(&str, &str)],
) -> Node {
    let root = tempfile::tempdir().expect("temp dir");
    let mut env = node_env(storage, pg_url);
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (proc, base) = spawn_kura_guarded_env(root.path(), extra, &env);
    Node { proc, base, root }
}

/// Whether `n` reports `kura_cluster_leader{role}` at 1 on `/metrics` (false if it does not
/// answer, e.g. killed).
pub async fn leads(n: &Node, role: &str) -> bool {
    let Ok(r) = super::client().get(n.url("/metrics")).send().await else {
        return false;
    };
    let text = r.text().await.unwrap_or_default();
    let line = format!("kura_cluster_leader{{role=\"{role}\"}} 1");
    text.lines().any(|l| l.trim() == line)
}

/// Waits (at most `within`) until exactly one of `nodes` leads `role`; returns its index.
pub async fn wait_leader(nodes: &[&Node], role: &str, within: std::time::Duration) -> usize {
    let until = std::time::Instant::now() + within;
    loop {
        let mut leading = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if leads(n, role).await {
                leading.push(i);
            }
        }
        if let [one] = leading[..] {
            return one;
        }
        assert!(
            std::time::Instant::now() < until,
            "no single leader of {role} within {within:?} (leading: {leading:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
