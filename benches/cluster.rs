//! Cluster scaling on this machine: 1, 2 and 3 `kura serve` nodes on one PostgreSQL database
//! and one bucket (Ceph RGW), the clients spread round-robin over the nodes. For each size:
//! manifest GETs by tag per second (32 concurrent clients for a fixed time), the MB/s of 8
//! parallel 8 MiB pushes (monolithic PUTs) and of 8 parallel pulls of a 32 MiB blob.
//!
//! The gateway's own figures for the same transfers (8 parallel 8 MiB PUTs, 8 parallel GETs
//! of one 32 MiB object, straight to the bucket with the same S3 client crate kura uses) are
//! measured in the same run, and kura's push/pull are printed as ratios to them.
//!
//! Every node, PostgreSQL, the gateway and the client share this machine's 2 cores, so adding a
//! node cannot add CPU: the curve shows what a node costs and whether anything serialises
//! across nodes (it should stay flat, not fall). On real machines each node brings its own
//! cores and NIC.
//!
//! `cargo bench --bench cluster`; PostgreSQL and the gateway as for the `meta` and `s3` benches
//! (`KURA_TEST_PG_URL`, `AWS_*`, else started here). `CLUSTER_BENCH_SECS` sets the GET phase
//! (default 5).

#[path = "../tests/common/engines.rs"]
#[allow(dead_code)]
mod engines;
#[path = "load_support/pg.rs"]
mod pg;
#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;
#[allow(dead_code)]
#[path = "load_support/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kura::digest::Digest;
use serde_json::json;
use server::Server;

const MIB: usize = 1024 * 1024;
const CLIENTS: usize = 32;
const PARALLEL: usize = 8;

/// `len` deterministic bytes of `seed` (the S3 tests' generator).
fn pattern(len: usize, seed: u64) -> Bytes {
    Bytes::from(s3::data(len, seed))
}

/// Pushes `data` as one blob into `repo` with POST + monolithic PUT; returns its digest.
async fn push_blob(c: &reqwest::Client, base: &str, repo: &str, data: Bytes) -> Digest {
    let d = Digest::sha256_of(&data);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let url = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{url}{sep}digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    d
}

/// A manifest naming `config` and `layer`, pushed to `repo:tag`.
async fn push_manifest(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    config: &Digest,
    layer: (&Digest, usize),
) {
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.0.to_string(), "size": layer.1}]
    }))
    .unwrap();
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/latest"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

struct Figures {
    gets_per_s: f64,
    push_mbps: f64,
    pull_mbps: f64,
}

async fn measure(bases: &[String], secs: u64) -> Figures {
    let c = reqwest::Client::new();
    let cfg = push_blob(&c, &bases[0], "bench/app", Bytes::from_static(b"{}")).await;
    let big = pattern(32 * MIB, 7);
    let layer = push_blob(&c, &bases[0], "bench/app", big.clone()).await;
    push_manifest(&c, &bases[0], "bench/app", &cfg, (&layer, big.len())).await;
    // Manifest GETs by tag, each client on the next node.
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let t = Instant::now();
    let getters = (0..CLIENTS).map(|i| {
        let (c, base, done) = (c.clone(), bases[i % bases.len()].clone(), done.clone());
        async move {
            while Instant::now() < until {
                let r = c
                    .get(format!("{base}/v2/bench/app/manifests/latest"))
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures_util::future::join_all(getters).await;
    let gets_per_s = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    // Parallel pushes of distinct 8 MiB blobs, spread over the nodes.
    let blobs: Vec<Bytes> = (0..PARALLEL as u64)
        .map(|i| pattern(8 * MIB, 100 + i + secs * 1000 + bases.len() as u64 * 10_000))
        .collect();
    let t = Instant::now();
    let pushes = blobs.iter().enumerate().map(|(i, b)| {
        let (c, base, b) = (c.clone(), bases[i % bases.len()].clone(), b.clone());
        async move { push_blob(&c, &base, &format!("bench/p{i}"), b).await }
    });
    futures_util::future::join_all(pushes).await;
    let push_mbps = (PARALLEL * 8 * MIB) as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    // Parallel pulls of the 32 MiB layer, spread over the nodes.
    let t = Instant::now();
    let pulls = (0..PARALLEL).map(|i| {
        let (c, base, layer) = (c.clone(), bases[i % bases.len()].clone(), layer.clone());
        async move {
            let r = c
                .get(format!("{base}/v2/bench/app/blobs/{layer}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        }
    });
    let pulled: usize = futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .sum();
    assert_eq!(pulled, PARALLEL * big.len());
    let pull_mbps = pulled as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    Figures {
        gets_per_s,
        push_mbps,
        pull_mbps,
    }
}

/// The gateway's own MB/s for `PARALLEL` PUTs of 8 MiB and `PARALLEL` GETs of one 32 MiB
/// object, under `prefix`.
async fn gateway(prefix: &str) -> (f64, f64) {
    use futures_util::StreamExt;
    use object_store::path::Path as Key;
    use object_store::{ObjectStoreExt, PutPayload};
    let s3 = Arc::new(s3::raw());
    let blobs: Vec<Bytes> = (0..PARALLEL as u64)
        .map(|i| pattern(8 * MIB, 500 + i))
        .collect();
    let t = Instant::now();
    let puts = blobs.iter().enumerate().map(|(i, b)| {
        let (s3, key, b) = (
            s3.clone(),
            Key::from(format!("{prefix}/put/{i}")),
            b.clone(),
        );
        async move { s3.put(&key, PutPayload::from(b)).await.unwrap() }
    });
    futures_util::future::join_all(puts).await;
    let put = (PARALLEL * 8 * MIB) as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    let big = Key::from(format!("{prefix}/big"));
    s3.put(&big, PutPayload::from(pattern(32 * MIB, 7)))
        .await
        .unwrap();
    let t = Instant::now();
    let gets = (0..PARALLEL).map(|_| {
        let (s3, big) = (s3.clone(), big.clone());
        async move {
            let mut n = 0;
            let mut body = s3.get(&big).await.unwrap().into_stream();
            while let Some(c) = body.next().await {
                n += c.unwrap().len();
            }
            n
        }
    });
    let got: usize = futures_util::future::join_all(gets).await.into_iter().sum();
    assert_eq!(got, PARALLEL * 32 * MIB);
    let get = got as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    (put, get)
}

fn main() {
    let secs: u64 = std::env::var("CLUSTER_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let pg = pg::Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for nodes in 1..=3usize {
        let storage = s3::s3_config(&format!("cluster-bench-{nodes}"));
        let _scratch = s3::Scratch(storage.prefix.clone());
        let url = pg.database();
        let mut env: Vec<(&str, String)> = vec![
            ("KURA_METADATA__KIND", "postgres".into()),
            ("KURA_METADATA__URL", url),
            ("KURA_STORAGE__KIND", "s3".into()),
            ("KURA_STORAGE__BUCKET", storage.bucket.clone()),
            ("KURA_STORAGE__PREFIX", storage.prefix.clone()),
            ("KURA_STORAGE__REGION", storage.region.clone()),
            ("KURA_STORAGE__ENDPOINT", storage.endpoint.clone()),
            ("KURA_STORAGE__ACCESS_KEY_ID", storage.access_key_id.clone()),
            (
                "KURA_STORAGE__SECRET_ACCESS_KEY",
                storage.secret_access_key.clone(),
            ),
            ("KURA_LOG", "warn".into()),
        ];
        env.retain(|(_, v)| !v.is_empty());
        let dirs: Vec<_> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
        let servers: Vec<Server> = dirs
            .iter()
            .map(|d| Server::kura_full(d.path(), &["--workers", "1"], &env))
            .collect();
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        let f = rt.block_on(measure(&bases, secs));
        rows.push((nodes, f));
        drop(servers);
    }
    let baseline = s3::s3_config("cluster-bench-gateway");
    let _scratch = s3::Scratch(baseline.prefix.clone());
    let (gw_put, gw_get) = rt.block_on(gateway(&baseline.prefix));
    let one = &rows[0].1;
    println!(
        "\ncluster scaling (one PostgreSQL, one Ceph RGW bucket, all on this machine's 2 cores)"
    );
    println!(
        "the gateway alone: {gw_put:.1} MB/s for 8 parallel 8 MiB PUTs, {gw_get:.1} MB/s for 8 parallel 32 MiB GETs"
    );
    println!(
        "{:>5}  {:>14}  {:>6}  {:>16}  {:>6}  {:>6}  {:>17}  {:>6}  {:>6}",
        "nodes",
        "manifest GET/s",
        "x1",
        "push MB/s (8×8M)",
        "x1",
        "of S3",
        "pull MB/s (8×32M)",
        "x1",
        "of S3"
    );
    for (n, f) in &rows {
        println!(
            "{n:>5}  {:>14.0}  {:>6.2}  {:>16.1}  {:>6.2}  {:>6.2}  {:>17.1}  {:>6.2}  {:>6.2}",
            f.gets_per_s,
            f.gets_per_s / one.gets_per_s,
            f.push_mbps,
            f.push_mbps / one.push_mbps,
            f.push_mbps / gw_put,
            f.pull_mbps,
            f.pull_mbps / one.pull_mbps,
            f.pull_mbps / gw_get
        );
    }
}
