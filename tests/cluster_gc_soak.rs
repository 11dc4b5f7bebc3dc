//! A GC soak across three nodes on one PostgreSQL database and one bucket: pushers on node A
//! (re-uploading layers that deleted images left unreferenced), deleters on node B, the
//! collector on node C with a short grace, all at once. Every push must succeed, every tag
//! left must pull whole from every node, and fsck must be clean. Bounded in rounds and time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pg::TestDb;
use common::s3::{Scratch, s3_config};
use kura::config::{MetadataConfig, MetadataKind, StorageConfig};
use kura::digest::Digest;
use kura::names::{Reference, RepoName};
use kura::registry::Registry;
use serde_json::json;

const ROUNDS: usize = 60;
const LIMIT: Duration = Duration::from_secs(60);
/// Layers the pushers draw from, round-robin: a layer is unreferenced from 2 rounds after its
/// images until it comes round again, long enough (with `PAUSE`) for the collector to take it
/// under its 1 s grace; then it is uploaded again, racing the collector.
const LAYERS: u64 = 16;
const PAUSE: Duration = Duration::from_millis(80);

fn node(storage: &StorageConfig, url: &str) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let metadata = MetadataConfig {
        kind: MetadataKind::Postgres,
        url: url.to_string(),
        ..MetadataConfig::default()
    };
    let reg = Registry::open_configured(dir.path(), storage, &metadata).unwrap();
    (reg, dir)
}

fn layer(i: u64) -> Bytes {
    Bytes::from(format!("shared layer {i} ").repeat(200))
}

fn one(b: Bytes) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter([Ok(b)])
}

/// Pushes an image of config `round` and layers `round % LAYERS`, `(round + 1) % LAYERS`.
async fn push(reg: &Registry, repo: &RepoName, round: u64) -> Result<(), String> {
    let config = Bytes::from(format!("{{\"round\":{round}}}"));
    let mut layers = Vec::new();
    for i in [round % LAYERS, (round + 1) % LAYERS] {
        let b = layer(i);
        let d = Digest::sha256_of(&b);
        reg.put_blob(repo, &d, one(b.clone()))
            .await
            .map_err(|e| format!("layer {i}: {e}"))?;
        layers.push(
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": d.to_string(), "size": b.len()}),
        );
    }
    let cd = Digest::sha256_of(&config);
    reg.put_blob(repo, &cd, one(config.clone()))
        .await
        .map_err(|e| format!("config: {e}"))?;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd.to_string(), "size": config.len()},
        "layers": layers
    }))
    .unwrap();
    let tag = Reference::parse(&format!("r{round}")).unwrap();
    reg.put_manifest(repo, &tag, None, Bytes::from(body))
        .await
        .map(|_| ())
        .map_err(|e| format!("manifest r{round}: {e}"))
}

#[test]
fn pushes_deletes_and_collection_on_three_nodes_lose_nothing_referenced() {
    // The database's guard uses a synchronous client: made and dropped outside the runtime.
    let db = TestDb::new();
    let storage = s3_config("cluster-soak");
    let _scratch = Scratch(storage.prefix.clone());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(soak(&storage, &db.url));
}

async fn soak(storage: &StorageConfig, url: &str) {
    let (a, _da) = node(storage, url);
    let (b, _db) = node(storage, url);
    let (c, _dc) = node(storage, url);
    let repo = RepoName::parse("soak/app").unwrap();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));

    // Node B deletes every image but the newest two, as the pushers go.
    let deleter = {
        let (b, repo, stop, pushed) = (b.clone(), repo.clone(), stop.clone(), pushed.clone());
        tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Acquire) {
                let done = pushed.load(Ordering::Acquire);
                while next + 2 < done {
                    let tag = Reference::parse(&format!("r{next}")).unwrap();
                    b.delete_manifest(&repo, &tag).await.unwrap();
                    next += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Node C collects with a short grace, as often as it can.
    let collector = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let (mut runs, mut removed) = (0u64, 0u64);
            let opts = kura::gc::GcOptions {
                grace: Duration::from_secs(1),
                min_grace: Duration::ZERO,
                delete_untagged: true,
                ..kura::gc::GcOptions::default()
            };
            while !stop.load(Ordering::Acquire) {
                removed += kura::gc::collect(&c, &opts).unwrap().blobs_removed;
                runs += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (runs, removed)
        })
    };
    // Node A pushes; a failed push is a failure of the test.
    for round in 0..ROUNDS as u64 {
        if start.elapsed() > LIMIT {
            break;
        }
        push(&a, &repo, round).await.unwrap();
        pushed.store(round + 1, Ordering::Release);
        // Layers come back after their images went: let the collector see them unreferenced.
        tokio::time::sleep(PAUSE).await;
    }
    stop.store(true, Ordering::Release);
    deleter.await.unwrap();
    let (runs, removed) = collector.await.unwrap();
    // Layers were collected and came back: the race the soak is for happened.
    assert!(
        removed >= LAYERS,
        "the collector ran {runs} times and removed only {removed} blobs"
    );

    // Every tag left pulls whole, from every node.
    let tags = a.list_tags(&repo, None, 1000).unwrap().items;
    assert!(!tags.is_empty());
    for reg in [&a, &b, &c] {
        for tag in &tags {
            let r = Reference::parse(tag).unwrap();
            let m = reg.get_manifest(&repo, &r, true).await.unwrap();
            let body: serde_json::Value =
                serde_json::from_slice(m.body.as_deref().expect("GET has a body")).unwrap();
            let layers = body["layers"].as_array().unwrap();
            for l in layers.iter().chain([&body["config"]]) {
                let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
                let size = reg.stat_blob(&repo, &d).await.unwrap();
                assert_eq!(size, l["size"].as_u64().unwrap(), "{tag}: {d}");
            }
        }
    }
    let report = tokio::task::spawn_blocking(move || kura::fsck::fsck(&b, false, false))
        .await
        .unwrap()
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}
