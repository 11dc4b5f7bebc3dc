//! Load soak: 200 concurrent clients, each with its own connection pool, mix pushes (blob
//! uploads, monolithic and chunked, and manifests) and pulls (manifests and blobs, whole and
//! ranged) against the real `kura` binary for 60 s. No request may fail, every pull must return
//! the right bytes, and the server must not leak: its RSS (from /proc/<pid>/status) at the end
//! stays within +50% of the RSS after warm-up, and its open file descriptors return to their
//! idle count once the load stops.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{image_manifest, spawn_kura};
use kura::digest::Digest;

const CLIENTS: u64 = 200;
const DURATION: Duration = Duration::from_secs(60);
const WARM_UP: Duration = Duration::from_secs(15);
/// Per client, whatever the time: the loop is bounded in count too.
const MAX_OPS_PER_CLIENT: u64 = 20_000;
/// Distinct images each client cycles through (so the store reaches a steady size)...
const CYCLE: u64 = 6;
/// ...plus one never-seen image every this many pushes (so it also grows a little).
const UNIQUE_EVERY: u64 = 10;

fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A transport error with its causes.
fn describe(e: reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        out.push_str(&format!(": {s}"));
        src = s.source();
    }
    out
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    pushes: AtomicU64,
    pulls: AtomicU64,
    bytes: AtomicU64,
}

fn content(client: u64, n: u64) -> Vec<u8> {
    let len = 512 + ((client * 131 + n * 977) % 24_000) as usize;
    (0..len)
        .map(|i| (i as u64 ^ (client << 3) ^ (n << 11)).wrapping_mul(2654435761) as u8)
        .collect()
}

/// Pushes image `n` of `client` as `load/c<client>:i<n % CYCLE>` (unique ones get their own
/// tag); returns the manifest bytes and the layer.
async fn push(
    c: &reqwest::Client,
    base: &str,
    client: u64,
    n: u64,
    stats: &Stats,
) -> Result<Image, String> {
    let repo = format!("load/c{client}");
    let layer = content(client, n);
    let ld = Digest::sha256_of(&layer);
    let config = format!("{{\"client\":{client},\"n\":{n}}}");
    let cd = Digest::sha256_of(config.as_bytes());
    let check = |what: &str, r: &reqwest::Response, want: u16| {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if r.status().as_u16() == want {
            Ok(())
        } else {
            Err(format!("{what}: {}", r.status()))
        }
    };
    let e = describe;
    if n.is_multiple_of(2) {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={ld}"))
            .body(layer.clone())
            .send()
            .await
            .map_err(e)?;
        check("monolithic upload", &r, 201)?;
    } else {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .map_err(e)?;
        check("start upload", &r, 202)?;
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let half = layer.len() / 2;
        let r = c
            .patch(&loc)
            .header("Content-Range", format!("0-{}", half - 1))
            .body(layer[..half].to_vec())
            .send()
            .await
            .map_err(e)?;
        check("patch", &r, 202)?;
        let r = c
            .put(format!("{loc}?digest={ld}"))
            .body(layer[half..].to_vec())
            .send()
            .await
            .map_err(e)?;
        check("closing put", &r, 201)?;
    }
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={cd}"))
        .body(config.clone())
        .send()
        .await
        .map_err(e)?;
    check("config upload", &r, 201)?;
    let manifest = image_manifest(
        &(cd, config.len()),
        &[(ld, layer.len())],
        serde_json::json!({}),
    );
    let tag = format!("i{n}");
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .map_err(e)?;
    check("manifest push", &r, 201)?;
    stats.pushes.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes
        .fetch_add((layer.len() + manifest.len()) as u64, Ordering::Relaxed);
    Ok(Image {
        tag,
        manifest,
        layer,
    })
}

/// An image a client pushed: its tag, manifest bytes and layer.
struct Image {
    tag: String,
    manifest: Vec<u8>,
    layer: Vec<u8>,
}

/// Pulls `img` from `client`'s repository and checks every byte (the layer whole or a range).
async fn pull(
    c: &reqwest::Client,
    base: &str,
    client: u64,
    img: &Image,
    ranged: bool,
    stats: &Stats,
) -> Result<(), String> {
    let (tag, manifest, layer) = (&img.tag, img.manifest.as_slice(), img.layer.as_slice());
    let repo = format!("load/c{client}");
    let e = describe;
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .map_err(e)?;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if r.status() != 200 {
        return Err(format!("manifest pull {}", r.status()));
    }
    if r.bytes().await.map_err(e)?.as_ref() != manifest {
        return Err("manifest bytes differ".into());
    }
    let ld = Digest::sha256_of(layer);
    let mut req = c.get(format!("{base}/v2/{repo}/blobs/{ld}"));
    let (from, to) = (layer.len() as u64 / 3, layer.len() as u64 / 2);
    if ranged {
        req = req.header("Range", format!("bytes={from}-{to}"));
    }
    let r = req.send().await.map_err(e)?;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let want = if ranged { 206 } else { 200 };
    if r.status().as_u16() != want {
        return Err(format!("blob pull {}", r.status()));
    }
    let got = r.bytes().await.map_err(e)?;
    let expect = if ranged {
        &layer[from as usize..=to as usize]
    } else {
        layer
    };
    if got.as_ref() != expect {
        return Err("blob bytes differ".into());
    }
    stats.pulls.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn client_loop(
    base: String,
    client: u64,
    deadline: Instant,
    stats: Arc<Stats>,
) -> Vec<String> {
    // Idle connections are dropped before the server's 5 s keep-alive would close them, as a
    // well-behaved client does (else a reuse can race the server's close).
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut errors = Vec::new();
    let mut pushed: Vec<Image> = Vec::new();
    let mut rng = client.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut unique = 1_000;
    for op in 0..MAX_OPS_PER_CLIENT {
        if Instant::now() >= deadline {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // One push in four (and always first), else a pull of something pushed already.
        let out = if pushed.is_empty() || rng.is_multiple_of(4) {
            let n = if op % UNIQUE_EVERY == UNIQUE_EVERY - 1 {
                unique += 1;
                unique
            } else {
                rng % CYCLE
            };
            push(&c, &base, client, n, &stats).await.map(|p| {
                if n < CYCLE && !pushed.iter().any(|i| i.tag == p.tag) {
                    pushed.push(p);
                }
            })
        } else {
            let img = &pushed[(rng >> 8) as usize % pushed.len()];
            pull(&c, &base, client, img, rng.is_multiple_of(3), &stats).await
        };
        if let Err(e) = out {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            if errors.len() < 5 {
                let left = deadline.saturating_duration_since(Instant::now());
                errors.push(format!(
                    "client {client}, op {op}, {left:?} before the end: {e}"
                ));
            }
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_soak_200_clients_for_60s_without_errors_or_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_kura(dir.path(), &[]);
    let pid = child.id();
    // One client's push and pull first, so the server's runtimes are all up when the idle
    // figures are taken.
    let stats = Arc::new(Stats::default());
    let errors = client_loop(
        base.clone(),
        CLIENTS,
        Instant::now() + Duration::from_millis(500),
        stats.clone(),
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = status_kb(pid, "VmRSS:");
    let idle_fds = open_fds(pid);
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let deadline = started + DURATION;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client_loop(base.clone(), i, deadline, stats.clone())))
        .collect();
    // Sample the server's RSS every second while the load runs.
    let mut samples: Vec<(u64, u64, u64)> = Vec::new(); // (second, RSS KiB, requests so far)
    let mut warm = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = started.elapsed();
        let rss = status_kb(pid, "VmRSS:");
        samples.push((t.as_secs(), rss, stats.requests.load(Ordering::Relaxed)));
        if warm.is_none() && t >= WARM_UP {
            warm = Some(rss);
        }
    }
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(
            tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .expect("client ends after the deadline")
                .unwrap(),
        );
    }
    let elapsed = started.elapsed();
    let end_rss = status_kb(pid, "VmRSS:");
    let peak_rss = status_kb(pid, "VmHWM:");
    // Idle again: connections closed, so descriptors should fall back.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut end_fds = open_fds(pid);
    while end_fds > idle_fds + 8 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
        end_fds = open_fds(pid);
    }
    let alive = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();

    let requests = stats.requests.load(Ordering::Relaxed);
    let warm = warm.expect("warm-up sample");
    let trace: Vec<String> = samples
        .iter()
        .step_by(5)
        .map(|(t, rss, n)| format!("{t}s:{}MiB/{n}req", rss / 1024))
        .collect();
    println!(
        "load soak: {CLIENTS} clients for {:.1}s: {requests} requests ({:.0}/s), {} pushes, {} \
         pulls, {} MiB moved, {} errors; server RSS idle {} MiB, after {}s warm-up {} MiB, end \
         {} MiB (peak {} MiB); fds idle {idle_fds}, end {end_fds}; samples {}",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        stats.pushes.load(Ordering::Relaxed),
        stats.pulls.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed) >> 20,
        stats.errors.load(Ordering::Relaxed),
        idle_rss / 1024,
        WARM_UP.as_secs(),
        warm / 1024,
        end_rss / 1024,
        peak_rss / 1024,
        trace.join(" ")
    );
    assert!(alive, "the server died under load");
    assert!(errors.is_empty(), "errors under load: {errors:#?}");
    assert!(
        requests > CLIENTS * 10,
        "the load barely ran: {requests} requests"
    );
    assert!(
        end_rss <= warm + warm / 2,
        "RSS grew from {warm} KiB after warm-up to {end_rss} KiB at the end"
    );
    assert!(
        end_fds <= idle_fds + 8,
        "file descriptors: {idle_fds} idle before, {end_fds} after the load"
    );
}
