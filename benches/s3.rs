//! S3 benchmark: kura on the `s3` blob driver against the S3 server's own throughput, measured
//! in the same run with the same bytes. Prints, for one client: the gateway's PUT and GET of
//! one object, then kura's monolithic push, chunked push (16 MiB PATCHes) and pull of a blob
//! of that size, and the pull again answered by a `307` to a presigned URL; then 32 parallel
//! 8 MiB pushes against 32 parallel 8 MiB PUTs. Each kura
//! figure is given as a ratio to the gateway's.
//!
//! `cargo bench --bench s3` uses the gateway named by `AWS_ENDPOINT_URL` (and the other `AWS_*`
//! variables), or starts Ceph's RADOS Gateway on loopback (`tests/tools/s3-ceph-up.sh`).
//! `S3_BENCH_MIB` sets the blob size (default 256).

#[path = "../tests/common/engines.rs"]
#[allow(dead_code)]
mod engines;
#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;
// The load benchmark's servers; this benchmark starts only kura.
#[allow(dead_code)]
#[path = "load_support/server.rs"]
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use kura::config::StorageConfig;
use kura::digest::Digest;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use server::Server;

const MIB: usize = 1024 * 1024;
const PARALLEL: usize = 32;
const SMALL: usize = 8 * MIB;

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn pattern(len: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; len];
    let mut x = seed | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(v)
}

/// The gateway's own figures: one PUT and one GET of `data`, and `PARALLEL` PUTs of `SMALL`.
async fn gateway(cfg: &StorageConfig, data: &Bytes, small: &[Bytes]) -> (f64, f64, f64) {
    let s3 = Arc::new(s3::raw());
    let key = Key::from(format!("{}/baseline/big", cfg.prefix));
    let t = Instant::now();
    s3.put(&key, PutPayload::from(data.clone())).await.unwrap();
    let put = mbps(data.len(), t.elapsed());
    let t = Instant::now();
    let mut n = 0;
    let mut body = s3.get(&key).await.unwrap().into_stream();
    while let Some(c) = body.next().await {
        n += c.unwrap().len();
    }
    assert_eq!(n, data.len());
    let get = mbps(n, t.elapsed());
    let t = Instant::now();
    let puts = small.iter().enumerate().map(|(i, b)| {
        let (s3, key) = (
            s3.clone(),
            Key::from(format!("{}/baseline/{i}", cfg.prefix)),
        );
        let b = b.clone();
        async move { s3.put(&key, PutPayload::from(b)).await.unwrap() }
    });
    futures_util::future::join_all(puts).await;
    let parallel = mbps(small.len() * SMALL, t.elapsed());
    (put, get, parallel)
}

/// kura on the bucket (`KURA_STORAGE__*`), its metadata in `root`.
fn start(cfg: &StorageConfig, root: &std::path::Path, redirect: bool) -> Server {
    let env = [
        ("KURA_STORAGE__KIND", "s3".to_string()),
        ("KURA_STORAGE__BUCKET", cfg.bucket.clone()),
        ("KURA_STORAGE__PREFIX", format!("{}/kura", cfg.prefix)),
        ("KURA_STORAGE__REGION", cfg.region.clone()),
        ("KURA_STORAGE__ENDPOINT", cfg.endpoint.clone()),
        ("KURA_STORAGE__ACCESS_KEY_ID", cfg.access_key_id.clone()),
        (
            "KURA_STORAGE__SECRET_ACCESS_KEY",
            cfg.secret_access_key.clone(),
        ),
        ("KURA_STORAGE__REDIRECT", redirect.to_string()),
        ("KURA_LOG", "warn".to_string()),
    ];
    Server::kura_with(root, &env)
}

async fn push_put(c: &reqwest::Client, base: &str, repo: &str, data: Bytes) -> Duration {
    let d = Digest::sha256_of(&data);
    let t = Instant::now();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    t.elapsed()
}

async fn push_chunks(c: &reqwest::Client, base: &str, repo: &str, data: &Bytes) -> Duration {
    let chunk = 16 * MIB;
    let d = Digest::sha256_of(data);
    let t = Instant::now();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    for start in (0..data.len()).step_by(chunk) {
        let end = (start + chunk).min(data.len());
        let r = c
            .patch(&loc)
            .header("Content-Range", format!("{start}-{}", end - 1))
            .body(data.slice(start..end))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        loc = r.headers()["location"].to_str().unwrap().to_string();
    }
    let r = c.put(format!("{loc}?digest={d}")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    t.elapsed()
}

async fn pull(c: &reqwest::Client, base: &str, repo: &str, data: &Bytes) -> Duration {
    let d = Digest::sha256_of(data);
    let t = Instant::now();
    let mut body = c
        .get(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut n = 0;
    while let Some(c) = body.next().await {
        n += c.unwrap().len();
    }
    assert_eq!(n, data.len());
    t.elapsed()
}

fn main() {
    let mib: usize = std::env::var("S3_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let cfg = s3::s3_config("bench");
    let big = pattern(mib * MIB, 1);
    let small: Vec<Bytes> = (0..PARALLEL as u64)
        .map(|i| pattern(SMALL, 100 + i))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (g_put, g_get, g_par) = gateway(&cfg, &big, &small).await;
        let dir = tempfile::tempdir().unwrap();
        let server = start(&cfg, dir.path(), false);
        let base = server.base.clone();
        let c = reqwest::Client::new();
        let mono = mbps(
            big.len(),
            push_put(&c, &base, "bench/mono", big.clone()).await,
        );
        // Another blob (a different digest) for the chunked push.
        let big2 = pattern(mib * MIB, 2);
        let chunked = mbps(
            big2.len(),
            push_chunks(&c, &base, "bench/chunked", &big2).await,
        );
        let pulled = mbps(big.len(), pull(&c, &base, "bench/mono", &big).await);
        let t = Instant::now();
        let pushes = small.iter().enumerate().map(|(i, b)| {
            let (c, base) = (c.clone(), base.clone());
            let b = pattern(b.len(), 1000 + i as u64);
            async move { push_put(&c, &base, &format!("bench/par{i}"), b).await }
        });
        futures_util::future::join_all(pushes).await;
        let par = mbps(PARALLEL * SMALL, t.elapsed());
        // The same pull answered with a 307 to a presigned URL (the client follows it).
        drop(server);
        let server = start(&cfg, dir.path(), true);
        let follows = reqwest::Client::new();
        let redirected = mbps(
            big.len(),
            pull(&follows, &server.base, "bench/mono", &big).await,
        );
        println!(
            "S3 driver against the gateway at {} ({mib} MiB blob, one client)",
            cfg.endpoint
        );
        println!(
            "{:<34} {:>10} {:>14} {:>7}",
            "figure", "kura MB/s", "gateway MB/s", "ratio"
        );
        for (what, k, g) in [
            ("push, one PUT (monolithic)", mono, g_put),
            ("push, 16 MiB PATCHes", chunked, g_put),
            ("pull (GET through kura)", pulled, g_get),
            ("pull (307 to a presigned URL)", redirected, g_get),
            ("32 parallel 8 MiB pushes", par, g_par),
        ] {
            println!("{what:<34} {k:>10.1} {g:>14.1} {:>7.2}", k / g);
        }
    });
}
