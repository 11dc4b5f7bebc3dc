//! Shared test support: an in-process kura on an ephemeral loopback port, and push helpers.
#![allow(dead_code)]

pub mod backup;
pub mod cluster;
pub mod engines;
pub mod layout;
pub mod mirror;
pub mod pg;
pub mod pg_private;
pub mod s3;
pub mod s3_ops;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use kura::digest::Digest;
use kura::registry::Registry;
use serde_json::json;

/// A kura server on 127.0.0.1:<ephemeral> over a temporary data directory; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Starts a server; call from inside a multi-threaded tokio runtime.
    pub async fn start() -> TestServer {
        Self::start_with(tempfile::tempdir().expect("temp dir"), None).await
    }

    /// Starts a server over an existing directory (left in place when the server stops).
    pub async fn start_in(path: &Path) -> TestServer {
        let holder = tempfile::tempdir().expect("temp dir");
        Self::start_with(holder, Some(path)).await
    }

    /// Starts a server with `opts` (two workers unless `opts` says otherwise); `root` as in
    /// `start_in`, or a temporary directory.
    pub async fn start_with_options(
        root: Option<&Path>,
        opts: kura::server::ServerOptions,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::open(root.unwrap_or(dir.path())).expect("open registry");
        let opts = kura::server::ServerOptions {
            workers: opts.workers.or(Some(2)),
            ..opts
        };
        let (server, addr) =
            kura::server::bind_with(registry.clone(), "127.0.0.1:0", &opts).expect("bind");
        let handle = server.handle();
        tokio::spawn(server);
        TestServer {
            addr,
            base: format!("http://{addr}"),
            registry,
            dir,
            handle,
        }
    }

    /// Starts a server whose blobs live where `storage` says (e.g. a bucket), its metadata in
    /// a temporary directory.
    pub async fn start_on(storage: &kura::config::StorageConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::open_with(dir.path(), storage).expect("open registry");
        Self::serve(dir, registry)
    }

    /// Starts an in-process cluster node: blobs where `storage` says, metadata in the
    /// PostgreSQL database `pg_url` (shared with the other nodes), local files in a temporary
    /// directory of its own.
    pub async fn start_node(storage: &kura::config::StorageConfig, pg_url: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let metadata = kura::config::MetadataConfig {
            kind: kura::config::MetadataKind::Postgres,
            url: pg_url.to_string(),
            pool_size: 4,
        };
        let registry =
            Registry::open_configured(dir.path(), storage, &metadata).expect("open cluster node");
        Self::serve(dir, registry)
    }

    async fn start_with(dir: tempfile::TempDir, root: Option<&Path>) -> TestServer {
        let registry = Registry::open(root.unwrap_or(dir.path())).expect("open registry");
        Self::serve(dir, registry)
    }

    fn serve(dir: tempfile::TempDir, registry: Registry) -> TestServer {
        let (server, addr) =
            kura::server::bind(registry.clone(), "127.0.0.1:0", Some(2)).expect("bind");
        let handle = server.handle();
        tokio::spawn(server);
        TestServer {
            addr,
            base: format!("http://{addr}"),
            registry,
            dir,
            handle,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let h = self.handle.clone();
        // Stop without waiting: the runtime may already be shutting down.
        std::mem::drop(h.stop(false));
    }
}

/// The `KURA_STORAGE__*` variables that make a `kura serve` child use `storage`.
pub fn storage_env(storage: &kura::config::StorageConfig) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "KURA_STORAGE__KIND",
            format!("{:?}", storage.kind).to_lowercase(),
        ),
        ("KURA_STORAGE__BUCKET", storage.bucket.clone()),
        ("KURA_STORAGE__PREFIX", storage.prefix.clone()),
        ("KURA_STORAGE__REGION", storage.region.clone()),
        ("KURA_STORAGE__ENDPOINT", storage.endpoint.clone()),
        ("KURA_STORAGE__ACCESS_KEY_ID", storage.access_key_id.clone()),
        (
            "KURA_STORAGE__SECRET_ACCESS_KEY",
            storage.secret_access_key.clone(),
        ),
        ("KURA_STORAGE__PART_SIZE", storage.part_size.to_string()),
        ("KURA_STORAGE__REDIRECT", storage.redirect.to_string()),
    ];
    env.retain(|(_, v)| !v.is_empty());
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// An HTTP client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Uploads `data` to `repo` in one `POST ?digest=`; returns its digest.
pub async fn push_blob(s: &TestServer, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let r = client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "push_blob {repo}");
    d
}

/// An OCI image manifest over a config and layers, as bytes.
pub fn image_manifest(
    config: &(Digest, usize),
    layers: &[(Digest, usize)],
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.to_string(), "size": config.1},
        "layers": layers.iter().map(|(d, n)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": n
        })).collect::<Vec<_>>(),
    });
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            m[k] = v;
        }
    }
    serde_json::to_vec(&m).unwrap()
}

/// Pushes a small image (config + `layers` given as contents) tagged `tag`; returns the
/// manifest bytes and digest.
pub async fn push_image(
    s: &TestServer,
    repo: &str,
    tag: &str,
    layers: &[&[u8]],
) -> (Vec<u8>, Digest) {
    let config = format!("{{\"tag\":\"{tag}\",\"repo\":\"{repo}\"}}");
    let cd = push_blob(s, repo, config.as_bytes()).await;
    let mut ls = Vec::new();
    for l in layers {
        ls.push((push_blob(s, repo, l).await, l.len()));
    }
    let body = image_manifest(&(cd, config.len()), &ls, json!({}));
    let r = put_manifest(
        s,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &body,
    )
    .await;
    assert_eq!(
        r.status(),
        201,
        "push_image {repo}:{tag}: {:?}",
        r.text().await
    );
    let d = Digest::sha256_of(&body);
    (body, d)
}

/// PUTs a manifest and returns the raw response.
pub async fn put_manifest(
    s: &TestServer,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> reqwest::Response {
    client()
        .put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Content-Type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// The first error code of an OCI error body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_string()
}

/// Starts the real `kura serve` binary on an ephemeral port over `root` with `extra` flags;
/// returns the child and its base URL (read from its first stdout line).
pub fn spawn_kura(root: &Path, extra: &[&str]) -> (Child, String) {
    spawn_kura_env(root, extra, &[])
}

/// `spawn_kura` with extra environment variables.
pub fn spawn_kura_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "2", "--root"])
        .arg(root)
        .args(extra)
        .env("KURA_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kura");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("listening line")
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
        "unexpected first line {line:?}"
    );
    (child, url)
}

/// Runs the `kura` binary with `args`; returns (success, stdout, stderr).
pub fn kura_cmd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(args)
        .env("KURA_LOG", "warn")
        .output()
        .expect("run kura");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed (SIGKILL) and reaped when dropped, so a test that panics leaves no
/// orphan `kura serve` behind.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Kills the process now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `spawn_kura`, with the child killed on every exit path.
pub fn spawn_kura_guarded(root: &Path, extra: &[&str]) -> (KillOnDrop, String) {
    spawn_kura_guarded_env(root, extra, &[])
}

/// `spawn_kura_env`, with the child killed on every exit path.
pub fn spawn_kura_guarded_env(
    root: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (KillOnDrop, String) {
    let (child, base) = spawn_kura_env(root, extra, env);
    (KillOnDrop(child), base)
}

/// The environment that lets a test server collect online with a grace shorter than the
/// production floor `gc.min_online_grace` (10 minutes).
pub fn short_online_grace_env() -> Vec<(&'static str, &'static str)> {
    vec![("KURA_GC__MIN_ONLINE_GRACE", "0s")]
}

/// Collection options with `grace_secs` of grace (and a one-hour upload age), for GC tests.
pub fn opts(grace_secs: u64) -> kura::gc::GcOptions {
    kura::gc::GcOptions {
        grace: std::time::Duration::from_secs(grace_secs),
        upload_max_age: std::time::Duration::from_secs(3600),
        ..kura::gc::GcOptions::default()
    }
}

/// Runs one collection over `s`'s registry on the blocking pool.
pub async fn gc(s: &TestServer, o: kura::gc::GcOptions) -> kura::gc::GcReport {
    let reg = s.registry.clone();
    tokio::task::spawn_blocking(move || kura::gc::collect(&reg, &o))
        .await
        .unwrap()
        .unwrap()
}

/// A two-thread runtime for tests that drive spawned nodes (their databases are made and
/// dropped with the synchronous client, outside it).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
