//! What the policies cost (`cargo bench --bench policies`): two `kura serve` processes on
//! loopback, one without `[policies]` and one with every policy on — rate limits (high enough
//! never to refuse, so every request still pays for its buckets), a repository and a namespace
//! quota, an immutable-tag rule, a retention rule (which records every pull by tag) and required
//! cosign signatures (the image is signed, so every GET by tag is verified, then served from
//! the verdict cache) — and the same workload against each, in `ROUNDS` rounds alternating
//! between the two:
//! - manifest GET by tag, `CONNS` concurrent connections for `SECONDS` seconds: requests/s
//!   (the median of the rounds) and p50/p99;
//! - push latency: `PUSHES` sequential pushes in all of a small image (config, one layer,
//!   manifest by a new `v<i>` tag): p50/p99 of the whole push.
//!
//! Prints each figure and its ratio with policies on to off (the issue asks for a ratio close
//! to 1). The client runs on the same cores as the server, so the absolute figures are the
//! machine's, shared; the ratio is what this benchmark is for.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use kura::digest::Digest;
use serde_json::json;

#[path = "load_support/server.rs"]
#[allow(dead_code)]
mod server;

use server::Server;

const CONNS: usize = 32;
const SECONDS: u64 = 3;
const PUSHES: usize = 200;
const ROUNDS: u64 = 5;

/// A setting, or a smaller figure from `POLICY_BENCH_<NAME>` (for a smoke run).
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(format!("POLICY_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn put_blob(c: &reqwest::Client, base: &str, repo: &str, body: Vec<u8>) -> (String, usize) {
    let d = Digest::sha256_of(&body).to_string();
    let len = body.len();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "blob push: {}", r.text().await.unwrap());
    (d, len)
}

async fn put_manifest(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    body: &[u8],
) -> String {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "manifest push: {}",
        r.text().await.unwrap()
    );
    Digest::sha256_of(body).to_string()
}

/// Pushes an image (config, one 4 KiB layer unique to `seed`) as `repo:tag`; returns its
/// manifest digest.
async fn push_image(c: &reqwest::Client, base: &str, repo: &str, tag: &str, seed: u64) -> String {
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed}))
    .unwrap();
    let mut layer = vec![0u8; 4096];
    layer[..8].copy_from_slice(&seed.to_le_bytes());
    let (cd, cl) = put_blob(c, base, repo, config).await;
    let (ld, ll) = put_blob(c, base, repo, layer).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ll}]}))
    .unwrap();
    put_manifest(c, base, repo, tag, &manifest).await
}

/// Signs `digest` the way cosign does: a simple-signing payload, its ECDSA P-256 signature in
/// the layer's annotation, the signature manifest under the `sha256-<hex>.sig` tag.
async fn cosign_sign(c: &reqwest::Client, base: &str, repo: &str, digest: &str, pkcs8: &[u8]) {
    let payload = serde_json::to_vec(&json!({"critical": {
        "identity": {"docker-reference": format!("bench/{repo}")},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature"}, "optional": null}))
    .unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8).unwrap();
    let sig = key.sign(&SystemRandom::new(), &payload).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
    let (pd, pl) = put_blob(c, base, repo, payload).await;
    let (cd, cl) = put_blob(c, base, repo, b"{}".to_vec()).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": pd, "size": pl,
            "annotations": {"dev.cosignproject.cosign/signature": sig}}]}))
    .unwrap();
    let tag = format!("{}.sig", digest.replace(':', "-"));
    put_manifest(c, base, repo, &tag, &manifest).await;
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// `CONNS` loops of GET `url` for `SECONDS`; returns (requests/s, sorted latencies).
async fn hammer(url: String) -> (f64, Vec<Duration>) {
    let dur = Duration::from_secs(setting("SECONDS", SECONDS));
    let deadline = Instant::now() + dur;
    let url = Arc::new(url);
    let mut tasks = Vec::new();
    for _ in 0..setting("CONNS", CONNS as u64) {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = c
                    .get(url.as_str())
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                let _ = r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    (all.len() as f64 / dur.as_secs_f64(), all)
}

#[derive(Default)]
struct Figures {
    /// Requests/s of each GET round.
    get_rps: Vec<f64>,
    get_lat: Vec<Duration>,
    push_lat: Vec<Duration>,
}

impl Figures {
    fn median_rps(&self) -> f64 {
        let mut v = self.get_rps.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
}

/// Pushes the image the GETs read (`prod/app:v1`); with `signer`, first checks that the
/// unsigned tag is refused (the policies are in force), then signs it.
async fn seed(server: &Server, signer: Option<&[u8]>) {
    let c = reqwest::Client::new();
    let base = &server.base;
    let digest = push_image(&c, base, "prod/app", "v1", u64::MAX).await;
    if let Some(key) = signer {
        let r = c
            .get(format!("{base}/v2/prod/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "an unsigned tag must be refused");
        cosign_sign(&c, base, "prod/app", &digest, key).await;
    }
    // Warm up (the verdict cache, the connection pool, the page cache).
    let _ = hammer_for(&format!("{base}/v2/prod/app/manifests/v1"), 1).await;
}

/// One round against `server`: a GET run, then `pushes` pushes of new tags numbered from `first`.
async fn round(server: &Server, f: &mut Figures, first: u64, pushes: u64) {
    let base = &server.base;
    let (rps, lat) = hammer(format!("{base}/v2/prod/app/manifests/v1")).await;
    f.get_rps.push(rps);
    f.get_lat.extend(lat);
    let c = reqwest::Client::new();
    for i in first..first + pushes {
        let t = Instant::now();
        push_image(&c, base, "prod/app", &format!("v2.{i}"), i).await;
        f.push_lat.push(t.elapsed());
    }
}

async fn hammer_for(url: &str, seconds: u64) -> usize {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0;
    while Instant::now() < deadline {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        n += 1;
    }
    n
}

fn policies_config(dir: &Path, public_pem: &str) -> std::path::PathBuf {
    let key = dir.join("cosign.pub");
    std::fs::write(&key, public_pem).unwrap();
    let config = dir.join("policies.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[policies.rate_limit]
pull = {{ per_ip = "1000000/s", per_user = "1000000/s", burst = 1000000 }}
push = {{ per_ip = "1000000/s", per_user = "1000000/s", burst = 1000000 }}
token = {{ per_ip = "1000/s" }}

[[policies.quota]]
namespace = "prod/"
max_bytes = 1099511627776

[[policies.quota]]
repository = "prod/app"
max_bytes = 1099511627776

[[policies.immutable]]
repositories = ["prod/**"]
tags = ["v*"]

[[policies.retention]]
repositories = ["prod/**"]
keep_last = 100000
not_pulled_for = "3650d"
protect = ["latest"]

[[policies.signatures]]
repositories = ["prod/**"]
cosign_keys = [{key:?}]
"#
        ),
    )
    .unwrap();
    config
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let config = policies_config(dir.path(), &key.public_key_pem());
    // No access-log line per request: the figures are the policies', not the log's.
    let quiet = [("KURA_LOG", "warn".to_string())];
    let off = Server::kura_with(&dir.path().join("off"), &quiet);
    let on = Server::kura_full(
        &dir.path().join("on"),
        &["--config", config.to_str().unwrap()],
        &quiet,
    );
    rt.block_on(seed(&off, None));
    rt.block_on(seed(&on, Some(&key.serialize_der())));
    // Rounds alternate between the two servers, so a change in the machine's speed (other
    // load, frequency) falls on both alike; medians of the rounds are compared.
    let rounds = setting("ROUNDS", ROUNDS);
    let per_round = setting("PUSHES", PUSHES as u64) / rounds;
    let (mut f_off, mut f_on) = (Figures::default(), Figures::default());
    for r in 0..rounds {
        rt.block_on(round(&off, &mut f_off, r * per_round, per_round));
        rt.block_on(round(&on, &mut f_on, r * per_round, per_round));
    }
    for f in [&mut f_off, &mut f_on] {
        f.get_lat.sort();
        f.push_lat.sort();
    }
    let (off, on) = (f_off, f_on);
    println!(
        "policies bench: {rounds} alternating rounds of {} connections x {} s of manifest GET by tag and {per_round} sequential pushes",
        setting("CONNS", CONNS as u64),
        setting("SECONDS", SECONDS),
    );
    let line = |label: &str, f: &Figures| {
        println!(
            "{label:>13}: GET {:>8.0} req/s median of rounds (p50 {:.3} ms, p99 {:.3} ms); push p50 {:.3} ms, p99 {:.3} ms",
            f.median_rps(),
            percentile(&f.get_lat, 0.5),
            percentile(&f.get_lat, 0.99),
            percentile(&f.push_lat, 0.5),
            percentile(&f.push_lat, 0.99)
        )
    };
    line("policies off", &off);
    line("every policy", &on);
    println!(
        "ratio on/off: GET req/s {:.2}, GET p50 {:.2}, push p50 {:.2}, push p99 {:.2}",
        on.median_rps() / off.median_rps(),
        percentile(&on.get_lat, 0.5) / percentile(&off.get_lat, 0.5),
        percentile(&on.push_lat, 0.5) / percentile(&off.push_lat, 0.5),
        percentile(&on.push_lat, 0.99) / percentile(&off.push_lat, 0.99)
    );
}
