//! Mirror benchmark: kura as a pull-through cache of another kura on loopback, driven by curl
//! (one HTTP/1.1 client, as in the load benchmark). For each of `REPS` fresh blobs it measures:
//! - **direct**: the blob pulled from the upstream itself (a plain kura pull, page cache warm)
//!   — the engine underneath, and the figure the others are divided by;
//! - **cold**: the first pull through the mirror (fetched upstream, streamed to the client while
//!   it is written, hashed and fsynced);
//! - **warm**: the next pulls through the mirror, the first reading the mirror's disk (a fetched
//!   blob is kept out of the page cache, as a push is) and the second its page cache;
//! - **ingest**: the same size pushed into the mirror's own repository (hash, write, fsync: what
//!   a cold pull must do besides relaying), the bound a cold pull is compared with;
//! - **fan-in**: 20 concurrent first pulls of one new blob (one upstream fetch; the upstream's
//!   own request counter is read to show it).
//!
//! Prints medians of `REPS` runs and the ratios. `MIRROR_BENCH_MIB` sets the blob size
//! (default 256).

#[path = "load_support/curl.rs"]
#[allow(dead_code)]
mod curl;
#[path = "../tests/common/engines.rs"]
#[allow(dead_code)]
mod engines;
#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;
#[path = "load_support/server.rs"]
#[allow(dead_code)]
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use kura::digest::Digest;
use server::Server;

const REPS: usize = 3;
const FAN_IN: usize = 20;
const MIB: f64 = 1024.0 * 1024.0;

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Writes a fresh blob of `size` bytes and pushes it to the upstream; returns its digest.
fn push_blob(upstream: &Server, dir: &Path, size: usize, seed: u64) -> String {
    let file = dir.join(format!("blob-{seed}"));
    let data = s3::data(size, seed);
    let digest = Digest::sha256_of(&data).to_string();
    std::fs::write(&file, data).unwrap();
    curl::push_mono(&upstream.base, "library/bench", &file, &digest);
    std::fs::remove_file(&file).unwrap();
    digest
}

/// The upstream's count of blob GETs answered so far (from its `/metrics`).
fn upstream_blob_gets(upstream: &Server) -> u64 {
    let out = std::process::Command::new("curl")
        .args(["-sS", &format!("{}/metrics", upstream.base)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("kura_http_requests_total")
                && l.contains("method=\"GET\"")
                && l.contains("/v2/<name>/blobs/<digest>")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn main() {
    let mib: usize = std::env::var("MIRROR_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let dir = tempfile::tempdir_in(std::env::var("TMPDIR").unwrap_or("/var/tmp".into())).unwrap();
    let upstream = Server::kura(&dir.path().join("up"));
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirrors]]\nname = \"up\"\nprefix = \"up/\"\nupstream = \"{}\"\n",
            upstream.base
        ),
    )
    .unwrap();
    let mirror = Server::kura_full(
        &dir.path().join("mirror"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let null = Path::new("/dev/null");
    let (mut direct, mut cold, mut warm_disk, mut warm_cache) = (vec![], vec![], vec![], vec![]);
    let mut ingest = vec![];
    for rep in 0..REPS {
        // What a cold pull must do besides relaying: take in a blob (hash, write, fsync). The
        // same bytes pushed to the mirror's own (not mirrored) repository, timed.
        let file = dir.path().join("ingest");
        let data = s3::data(size, 1000 + rep as u64);
        let digest = Digest::sha256_of(&data).to_string();
        std::fs::write(&file, data).unwrap();
        let t = curl::push_mono(&mirror.base, "local/ingest", &file, &digest);
        ingest.push(mbps(size as u64, t));
        std::fs::remove_file(&file).unwrap();
        let d = push_blob(&upstream, dir.path(), size, rep as u64 + 1);
        let up_path = format!("/v2/library/bench/blobs/{d}");
        let mirror_path = format!("/v2/up/library/bench/blobs/{d}");
        // The upstream's first pull reads its disk; the measured one its page cache.
        curl::pull(&upstream.base, &up_path, None, null);
        let (n, t) = curl::pull(&upstream.base, &up_path, None, null);
        direct.push(mbps(n, t));
        let (n, t) = curl::pull(&mirror.base, &mirror_path, None, null);
        assert_eq!(n as usize, size);
        cold.push(mbps(n, t));
        let (n, t) = curl::pull(&mirror.base, &mirror_path, None, null);
        warm_disk.push(mbps(n, t));
        let (n, t) = curl::pull(&mirror.base, &mirror_path, None, null);
        warm_cache.push(mbps(n, t));
    }
    // Fan-in: FAN_IN clients ask for one new blob at once.
    let fan_size = size.min(64 << 20);
    let d = push_blob(&upstream, dir.path(), fan_size, 99);
    let before = upstream_blob_gets(&upstream);
    let path = format!("/v2/up/library/bench/blobs/{d}");
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..FAN_IN {
            s.spawn(|| {
                let (n, _) = curl::pull(&mirror.base, &path, None, null);
                assert_eq!(n as usize, fan_size);
            });
        }
    });
    let fan_wall = t.elapsed();
    let fan_gets = upstream_blob_gets(&upstream) - before;

    let (direct, cold) = (median(direct), median(cold));
    let (warm_disk, warm_cache) = (median(warm_disk), median(warm_cache));
    let ingest = median(ingest);
    println!("mirror benchmark: {mib} MiB blobs, curl over loopback, medians of {REPS}");
    println!("  {:<44} {:>9}  {:>8}", "", "MB/s", "ratio");
    println!(
        "  {:<44} {:>9.0}  {:>8}",
        "direct pull from the upstream (plain kura)", direct, "1.00"
    );
    println!(
        "  {:<44} {:>9.0}  {:>8.2}",
        "cold pull through the mirror",
        cold,
        cold / direct
    );
    println!(
        "  {:<44} {:>9.0}  {:>8.2}",
        "warm pull through the mirror (its disk)",
        warm_disk,
        warm_disk / direct
    );
    println!(
        "  {:<44} {:>9.0}  {:>8.2}",
        "warm pull through the mirror (page cache)",
        warm_cache,
        warm_cache / direct
    );
    println!(
        "  {:<44} {:>9.0}  {:>8.2}",
        "push into the mirror (its ingest bound)",
        ingest,
        ingest / direct
    );
    println!(
        "  cold pull / push into the mirror: {:.2} (a cold pull relays what it ingests)",
        cold / ingest
    );
    println!(
        "  fan-in: {FAN_IN} concurrent cold pulls of one {} MiB blob: {:.2} s wall, {fan_gets} upstream blob GET(s), {:.0} MB/s delivered",
        fan_size >> 20,
        fan_wall.as_secs_f64(),
        mbps((fan_size * FAN_IN) as u64, fan_wall)
    );
}
