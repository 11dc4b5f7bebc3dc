//! The web interface's first pages on a big store, over HTTP (`cargo bench --bench ui`):
//! the repositories page with 100k repositories (plain, and with a substring that matches
//! nothing, which reads its bounded scan budget), and a repository page with 10k tags (first
//! page and a page from the middle). Prints p50/p99 of sequential requests; O(page) means
//! these stay flat whatever the store holds.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kura::digest::Digest;
use kura::meta::records::ManifestRecord;
use kura::meta::{manifests, repos, tags};
use kura::names::{Reference, RepoName};
use kura::registry::Registry;
use serde_json::json;

const REPOS: usize = 100_000;
const TAGS: usize = 10_000;
const WARMUP: usize = 20;
const SAMPLES: usize = 300;

/// `REPOS`, `TAGS`, `SAMPLES`, or a smaller figure from `UI_BENCH_<NAME>` (for a smoke run).
fn setting(name: &str, default: usize) -> usize {
    std::env::var(format!("UI_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stream(b: Bytes) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter(vec![Ok(b)])
}

/// Stores an image (config, two layers) in `repo` under `tag`; returns its digest and record.
async fn seed_image(reg: &Registry, repo: &RepoName) -> (String, ManifestRecord) {
    let config = Bytes::from(
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]}, "rootfs": {"type": "layers", "diff_ids": []}}))
        .unwrap(),
    );
    let layers = [Bytes::from(vec![1u8; 4096]), Bytes::from(vec![2u8; 8192])];
    let mut descs = Vec::new();
    for (mt, b) in [("application/vnd.oci.image.config.v1+json", &config)]
        .into_iter()
        .chain(
            layers
                .iter()
                .map(|l| ("application/vnd.oci.image.layer.v1.tar", l)),
        )
    {
        let d = Digest::sha256_of(b);
        reg.put_blob(repo, &d, stream(b.clone())).await.unwrap();
        descs.push(json!({"mediaType": mt, "digest": d.to_string(), "size": b.len()}));
    }
    let body = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descs[0], "layers": [descs[1], descs[2]]}))
        .unwrap(),
    );
    let digest = Digest::sha256_of(&body).to_string();
    reg.put_manifest(repo, &Reference::parse("seed").unwrap(), None, body)
        .await
        .unwrap();
    let rec = reg
        .meta()
        .read(|t| manifests::get(t, repo.as_str(), &digest))
        .unwrap()
        .unwrap();
    (digest, rec)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(client: &reqwest::Client, url: &str, label: &str) {
    let samples = setting("SAMPLES", SAMPLES);
    let mut times = Vec::with_capacity(samples);
    for i in 0..WARMUP + samples {
        let start = Instant::now();
        let r = client.get(url).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty());
        if i >= WARMUP {
            times.push(start.elapsed());
        }
    }
    times.sort();
    println!(
        "{label:<48} p50 {:>8.2} ms   p99 {:>8.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (repos_n, tags_n) = (setting("REPOS", REPOS), setting("TAGS", TAGS));
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let big = RepoName::parse("bench/big").unwrap();
        let (digest, rec) = seed_image(&reg, &big).await;
        reg.meta()
            .write(|t| {
                for i in 0..tags_n {
                    tags::set(t, big.as_str(), &format!("t{i:05}"), &digest)?;
                }
                Ok(())
            })
            .unwrap();
        // 100k repositories, each with one tagged revision of the same content.
        for chunk in (0..repos_n).collect::<Vec<_>>().chunks(20_000) {
            reg.meta()
                .write(|t| {
                    for i in chunk {
                        let name = format!("bench/r{i:06}");
                        repos::ensure(t, &name)?;
                        manifests::insert(t, &name, &digest, &rec)?;
                        tags::set(t, &name, "latest", &digest)?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let (server, addr) = kura::server::bind(reg.clone(), "127.0.0.1:0", Some(2)).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        println!(
            "web UI pages, {repos_n} repositories, {tags_n} tags in bench/big, {} sequential requests each:",
            setting("SAMPLES", SAMPLES)
        );
        measure(&client, &format!("{base}/ui/"), "repositories, first page").await;
        measure(&client, &format!("{base}/ui/?q=zzz"), "repositories, substring matching none").await;
        measure(&client, &format!("{base}/ui/repo?name=bench/big"), "tags, first page").await;
        measure(
            &client,
            &format!("{base}/ui/repo?name=bench/big&last=t05000"),
            "tags, page after t05000",
        )
        .await;
        handle.stop(true).await;
    });
}
