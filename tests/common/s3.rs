//! A real S3 server for the storage tests: Ceph's RADOS Gateway on loopback.
//!
//! `s3_config` uses the gateway named by the environment (`AWS_ENDPOINT_URL` and the other
//! `AWS_*` variables `.ci/run` exports), or else starts one itself with
//! `tests/tools/s3-ceph-up.sh` under `target/ceph-test` (reused while it runs; test processes
//! serialise on a file lock). Bucket `kura-test` is created if missing; every test gets its
//! own key prefix, so tests share the bucket without seeing each other's objects.

use std::process::Command;
use std::sync::OnceLock;

use kura::config::{MIN_PART_SIZE, StorageConfig, StorageKind};

pub const BUCKET: &str = "kura-test";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How to reach the gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

/// A config for `S3Store::open` on the test gateway with prefix `<test>-<uuid>` and the
/// smallest part size S3 allows (5 MiB), so multipart tests need little data.
pub fn s3_config(test: &str) -> StorageConfig {
    let g = gateway();
    StorageConfig {
        kind: StorageKind::S3,
        bucket: BUCKET.to_string(),
        prefix: format!("{test}-{}", uuid::Uuid::new_v4()),
        region: g.region.clone(),
        endpoint: g.endpoint.clone(),
        access_key_id: g.access_key.clone(),
        secret_access_key: g.secret_key.clone(),
        part_size: MIN_PART_SIZE,
        ..StorageConfig::default()
    }
}

/// The gateway (started on first use in this process if the environment names none), with
/// the test bucket in place.
pub fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| {
        let g = from_env().unwrap_or_else(start_own);
        ensure_bucket(&g);
        g
    })
}

fn from_env() -> Option<Gateway> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Gateway {
        endpoint: var("AWS_ENDPOINT_URL")?,
        access_key: var("AWS_ACCESS_KEY_ID")?,
        secret_key: var("AWS_SECRET_ACCESS_KEY")?,
        region: var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into()),
    })
}

/// Starts (or finds running) the cluster under `target/ceph-test`.
fn start_own() -> Gateway {
    std::fs::create_dir_all(super::engines::repo_path("target/ceph-test"))
        .expect("create target/ceph-test");
    let out = super::engines::start_shared(
        "ceph-test",
        "s3-ceph-up.sh",
        "install Ceph with `tests/tools/s3-ceph-up.sh install` or set S3_CEPH_INSTALL=1",
    );
    let var = |k: &str| super::engines::exported(&out, k);
    Gateway {
        endpoint: var("AWS_ENDPOINT_URL"),
        access_key: var("AWS_ACCESS_KEY_ID"),
        secret_key: var("AWS_SECRET_ACCESS_KEY"),
        region: var("AWS_REGION"),
    }
}

/// Creates the test bucket unless it exists (a SigV4-signed PUT, as the script's own check).
fn ensure_bucket(g: &Gateway) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-X", "PUT", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", g.region))
        .arg("-H")
        .arg(format!("x-amz-content-sha256: {EMPTY_SHA256}"))
        .arg("--user")
        .arg(format!("{}:{}", g.access_key, g.secret_key))
        .arg(format!("{}/{BUCKET}", g.endpoint.trim_end_matches('/')))
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    // 200: created; 409: it exists (BucketAlreadyOwnedByYou / BucketAlreadyExists).
    assert!(
        code == "200" || code == "409",
        "creating bucket {BUCKET} at {}: HTTP {code} {}",
        g.endpoint,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test's key prefix. Everything under it is deleted when it is dropped, so repeated runs do
/// not fill the gateway (its memstore keeps objects in RAM).
pub struct Scratch(pub String);

impl std::ops::Deref for Scratch {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        delete_prefix(&self.0);
    }
}

/// Deletes every object under `prefix` (best effort). Blocking; works inside or outside a
/// runtime (it runs on a thread and runtime of its own).
pub fn delete_prefix(prefix: &str) {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let (g, prefix) = (gateway().clone(), prefix.to_string());
    let cleanup = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let Ok(s3) = raw_client(&g) else {
                return;
            };
            let root = object_store::path::Path::from(prefix);
            let keys = s3.list(Some(&root)).filter_map(|m| async move { m.ok() });
            let keys = keys.map(|m| Ok(m.location)).boxed();
            s3.delete_stream(keys).for_each(|_| async {}).await;
        });
    });
    let _ = cleanup.join();
}

/// A client of our own on the test bucket, for looking behind kura's back.
pub fn raw() -> object_store::aws::AmazonS3 {
    raw_client(gateway()).expect("S3 client for the test bucket")
}

fn raw_client(g: &Gateway) -> object_store::Result<object_store::aws::AmazonS3> {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&g.endpoint)
        .with_allow_http(true)
        .with_region(&g.region)
        .with_access_key_id(&g.access_key)
        .with_secret_access_key(&g.secret_key)
        .build()
}

/// Deterministic bytes that differ with `seed` (and from part to part).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A TCP relay in front of the gateway, on its own thread, that can hold what clients send:
/// while held, requests stall mid-flight, so a test can drop an S3 call while it is
/// certainly still in progress (however slowly the test itself is scheduled).
pub struct HeldRelay {
    pub endpoint: String,
    held: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl HeldRelay {
    pub fn start() -> HeldRelay {
        let upstream = gateway()
            .endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let held = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let h = held.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(copy_unless_held(cr, sw, h.subscribe()));
                    tokio::spawn(copy_unless_held(sr, cw, h.subscribe()));
                }
            });
        });
        HeldRelay { endpoint, held }
    }

    /// Holds (`true`) or lets through (`false`) every byte from now on.
    pub fn hold(&self, on: bool) {
        self.held.send_replace(on);
    }
}

async fn copy_unless_held(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if held.wait_for(|h| !*h).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a hold wait for its release too.
        if held.wait_for(|h| !*h).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
