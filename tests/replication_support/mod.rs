//! Support for the replication tests: kura processes on fixed or ephemeral loopback ports with
//! a config file, image pushes over HTTP, and bounded polling.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kura::digest::Digest;
use serde_json::{Value, json};

use crate::common::KillOnDrop;

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A loopback port free now (for a server that must come back on the same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `toml` as `<dir>/kura.toml` and returns its path.
pub fn config_file(dir: &Path, toml: &str) -> String {
    let p = dir.join("kura.toml");
    std::fs::write(&p, toml).unwrap();
    p.display().to_string()
}

/// Starts `kura serve` on `addr` over `root` with `config`; returns once it listens.
pub fn spawn_at(root: &Path, addr: &str, config: Option<&str>) -> (KillOnDrop, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kura"));
    cmd.args(["serve", "--addr", addr, "--workers", "2", "--root"])
        .arg(root)
        .env("KURA_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(c) = config {
        cmd.args(["--config", c]);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("spawn kura"));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap_or("").to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "kura did not start: {line:?}"
    );
    (child, url)
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `secs` seconds.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Uploads `data` to `repo` at `base` in one request.
pub async fn push_blob(base: &str, repo: &str, data: &[u8]) -> (Digest, usize) {
    let d = Digest::sha256_of(data);
    let r = http()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "blob push to {base}/{repo}");
    (d, data.len())
}

/// PUTs manifest `body` as `reference`; returns its digest and size.
pub async fn put_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> (Digest, usize) {
    let r = http()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "manifest push {base}/{repo}:{reference}: {:?}",
        r.text().await
    );
    (Digest::sha256_of(body), body.len())
}

fn descriptor(media_type: &str, d: &(Digest, usize)) -> Value {
    json!({"mediaType": media_type, "digest": d.0.to_string(), "size": d.1})
}

/// Pushes a one-layer image (contents unique to `seed`) by digest; returns its descriptor.
pub async fn push_image(
    base: &str,
    repo: &str,
    seed: &str,
    reference: Option<&str>,
) -> (Digest, usize) {
    let config = push_blob(base, repo, format!("{{\"seed\":\"{seed}\"}}").as_bytes()).await;
    let layer = push_blob(
        base,
        repo,
        format!("layer of {seed}").repeat(200).as_bytes(),
    )
    .await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": IMAGE,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    let d = Digest::sha256_of(&body).to_string();
    put_manifest(base, repo, reference.unwrap_or(&d), IMAGE, &body).await
}

/// Pushes an index of two platform images tagged `tag`; returns (index, children).
pub async fn push_index(
    base: &str,
    repo: &str,
    tag: &str,
) -> ((Digest, usize), Vec<(Digest, usize)>) {
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let c = push_image(base, repo, &format!("{repo}:{tag}/{arch}"), None).await;
        let mut e = descriptor(IMAGE, &c);
        e["platform"] = json!({"os": "linux", "architecture": arch});
        entries.push(e);
        children.push(c);
    }
    let body =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}))
            .unwrap();
    (put_manifest(base, repo, tag, INDEX, &body).await, children)
}

/// Pushes a signature-like artifact whose subject is `subject` (of `subject_type`); returns it.
pub async fn push_referrer(
    base: &str,
    repo: &str,
    subject_type: &str,
    subject: &(Digest, usize),
) -> (Digest, usize) {
    let empty = push_blob(base, repo, b"{}").await;
    let sig = push_blob(base, repo, b"signature bytes").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": IMAGE,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", &empty),
        "layers": [descriptor("application/vnd.example.signature", &sig)],
        "subject": descriptor(subject_type, subject),
    }))
    .unwrap();
    let d = Digest::sha256_of(&body).to_string();
    put_manifest(base, repo, &d, IMAGE, &body).await
}

/// The digest `reference` of `repo` resolves to at `base`, if it does.
pub async fn manifest_digest(base: &str, repo: &str, reference: &str) -> Option<String> {
    let r = http()
        .head(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Accept", format!("{INDEX}, {IMAGE}"))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The status of `GET /admin/replication` at `base`.
pub async fn status(base: &str) -> Value {
    http()
        .get(format!("{base}/admin/replication"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The tags of `repo` at `base` (empty when unknown).
pub async fn tags(base: &str, repo: &str) -> Vec<String> {
    let r = http()
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    t.sort();
    t
}

/// Starts Distribution (`docker-registry`, Debian) with deletes enabled on a free loopback
/// port over `dir`; returns once `/v2/` answers.
pub async fn spawn_distribution(dir: &Path) -> (KillOnDrop, String) {
    let port = free_port();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian package docker-registry) must be installed");
    let child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(10, "Distribution to answer /v2/", || {
        let url = format!("{base}/v2/");
        async move {
            let r = http().get(url).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    (child, base)
}

/// The digests of the referrers of `subject` in `repo` at `base`.
pub async fn referrers(base: &str, repo: &str, subject: &str) -> Vec<String> {
    let v: Value = http()
        .get(format!("{base}/v2/{repo}/referrers/{subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(str::to_string))
        .collect()
}
