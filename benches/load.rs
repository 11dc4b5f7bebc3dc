//! Load benchmark: prints, for one run, the machine's limits measured just before and what
//! kura achieves against them.
//! - The data path with **curl** as the client (one HTTP/1.1 stream into or out of a file, as
//!   real clients read and write): blob push (one PUT; 16 MiB PATCHes), pull, a Range pull,
//!   32 concurrent pushes with the server's peak RSS, and repository and tag creation rates;
//!   against sha256 and write+fsync, iperf3 on loopback, and 32 writers' write+fsync. CNCF
//!   Distribution (`docker-registry`) is measured beside kura when it is installed.
//! - Then, on a store of 100k repositories: the built-in clients' pushes and pulls, Range GET
//!   latency, manifest HEAD/GET at 64 connections, catalog and tag listings, start-up time.
//!
//! `cargo bench --bench load` (`LOAD_BENCH_BLOB_MIB` changes the 512 MiB blob size;
//! `LOAD_BENCH_ONLY=data` stops after the data path).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kura::digest::Digest;
use kura::meta::{ManifestRecord, blobs, manifests, repos, tags};
use kura::registry::Registry;

#[path = "load_support/curl.rs"]
mod curl;
#[path = "load_support/data_path.rs"]
mod data_path;
#[path = "load_support/limits.rs"]
mod limits;
#[path = "load_support/server.rs"]
mod server;

use data_path::Files;
use server::Server;

const MIB: usize = 1024 * 1024;

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

/// GETs `path` over a plain socket, reading like the loopback probe does (4 MiB reads, no
/// HTTP library copying the body); returns the body length and the time taken.
fn raw_get(base: &str, path: &str) -> (usize, Duration) {
    let addr = base.trim_start_matches("http://");
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut b = vec![0u8; 4 * MIB];
    let (mut total, mut header_len) = (0usize, None);
    loop {
        let r = s.read(&mut b).unwrap();
        if r == 0 {
            break;
        }
        if header_len.is_none() {
            let end = b[..r]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("headers in the first read");
            assert!(b.starts_with(b"HTTP/1.1 200"), "pull failed");
            header_len = Some(total + end + 4);
        }
        total += r;
    }
    (total - header_len.unwrap_or(0), t.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn fmt_lat(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "p50 {:.3} ms, p99 {:.3} ms",
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3
    )
}

/// Runs `conns` concurrent request loops for `dur`; returns requests/s and latencies.
async fn hammer(
    conns: usize,
    dur: Duration,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
) -> (f64, Vec<Duration>) {
    let deadline = Instant::now() + dur;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = make(&c).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
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
    (all.len() as f64 / dur.as_secs_f64(), all)
}

/// Runs `wrk` (GET) or `hey` (HEAD, which wrk cannot time) with 64 connections for 5 s when
/// installed; returns a summary line.
fn external_load(tool: &str, url: &str) -> Option<String> {
    let out = match tool {
        "wrk" => Command::new("wrk")
            .args(["-t2", "-c64", "-d5s", "--latency", url])
            .output()
            .ok()?,
        _ => Command::new("hey")
            .args(["-m", "HEAD", "-c", "64", "-z", "5s", url])
            .output()
            .ok()?,
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| {
                l.trim_start_matches(prefix)
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
    };
    let rps = find("Requests/sec:")?;
    let (p50, p99) = if tool == "wrk" {
        (find("50%")?, find("99%")?)
    } else {
        let secs = |p: &str| {
            find(p)
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| format!("{:.3}ms", v * 1e3))
        };
        (secs("50% in")?, secs("99% in")?)
    };
    Some(format!(
        "{rps} req/s, p50 {p50}, p99 {p99} ({tool}, 64 connections)"
    ))
}

/// Fills the store offline: `n_repos` repositories (one tagged manifest each) and `n_tags`
/// tags in `bench/tags`.
fn populate(root: &Path, n_repos: usize, n_tags: usize) {
    let reg = Registry::open(root).unwrap();
    let cfg = b"{}";
    let cd = Digest::sha256_of(cfg).to_string();
    std::fs::write(
        reg.store().fs().unwrap().blob_path(&Digest::sha256_of(cfg)),
        cfg,
    )
    .unwrap();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
    );
    let md = Digest::sha256_of(body.as_bytes());
    std::fs::write(reg.store().fs().unwrap().blob_path(&md), &body).unwrap();
    let rec = ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: body.len() as u64,
        artifact_type: None,
        annotations: None,
        subject: None,
        blobs: vec![cd.clone()],
        manifests: vec![],
        created: 0,
        touched: 0,
    };
    let ms = md.to_string();
    let names: Vec<String> = (0..n_repos)
        .map(|i| format!("bench/repo{i:06}"))
        .chain(["bench/tags".to_string()])
        .collect();
    for chunk in names.chunks(10_000) {
        reg.meta()
            .write(|t| {
                blobs::touch(t, &cd, 2)?;
                blobs::touch(t, &ms, body.len() as u64)?;
                for r in chunk {
                    repos::ensure(t, r)?;
                    blobs::link(t, r, &cd)?;
                    blobs::add_ref(t, &cd, 1)?;
                    blobs::add_ref(t, &ms, 1)?;
                    manifests::insert(t, r, &ms, &rec)?;
                    tags::set(t, r, "latest", &ms)?;
                }
                Ok(())
            })
            .unwrap();
    }
    reg.meta()
        .write(|t| {
            for i in 0..n_tags {
                tags::set(t, "bench/tags", &format!("t{i:05}"), &ms)?;
            }
            Ok(())
        })
        .unwrap();
}

async fn push_blob_put(base: &str, repo: &str, data: Bytes) -> Duration {
    let d = Digest::sha256_of(&data);
    let c = reqwest::Client::new();
    let t = Instant::now();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    t.elapsed()
}

async fn push_blob_chunks(base: &str, repo: &str, data: &Bytes, chunk: usize) -> Duration {
    let d = Digest::sha256_of(data);
    let c = reqwest::Client::new();
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

fn main() {
    // criterion-style arguments (`--bench`) are ignored.
    let blob_mib: usize = std::env::var("LOAD_BENCH_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    // `LOAD_BENCH_ONLY=data` skips the metadata phases (manifests, listings).
    let only_data = std::env::var("LOAD_BENCH_ONLY").is_ok_and(|v| v == "data");
    let size = blob_mib * MIB;
    let dir =
        tempfile::tempdir_in(std::env::var("LOAD_BENCH_DIR").unwrap_or_else(|_| "target".into()))
            .unwrap();
    let root = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    std::fs::create_dir_all(&root).unwrap();
    println!("== data path with curl as the client ({blob_mib} MiB blobs) ==");
    let files = Files::write(&dir.path().join("files"), size);
    let kura = Server::kura(&root);
    let peer = Server::distribution(&dir.path().join("distribution"));
    let servers: Vec<&Server> = std::iter::once(&kura).chain(peer.as_ref()).collect();
    let (lim, figs) = data_path::run(&rt, &servers, &files, &root, size);
    let names: Vec<&str> = servers.iter().map(|s| s.name).collect();
    data_path::print(&lim, &names, &figs);
    drop((kura, peer, files));
    if only_data {
        return;
    }
    let push_limit = limits::sha256().min(limits::write_fsync(&root, size));
    let tcp = limits::tcp_probe(size);
    println!(
        "limits now: min(sha256, write+fsync) {push_limit:.0} MB/s; loopback TCP (4 MiB writes) {tcp:.0} MB/s"
    );

    println!("== populating 100k repositories and 10k tags offline ==");
    let root = dir.path().join("meta");
    let t = Instant::now();
    populate(&root, 100_000, 10_000);
    println!("populated in {:.1} s", t.elapsed().as_secs_f64());

    let server = Server::kura(&root);
    println!(
        "start-up with 100k repositories: {:.1} ms",
        server.started_in.as_secs_f64() * 1e3
    );
    let base = server.base.clone();
    println!("RSS after start-up: {:.1} MiB", server.take_peak_rss());

    rt.block_on(async {
        println!("== blobs with the built-in clients ({blob_mib} MiB) ==");
        let data = Bytes::from(pattern(size, 7));
        let d = push_blob_put(&base, "bench/blob", data.clone()).await;
        let v = mbps(size, d);
        println!(
            "push, one PUT: {v:.0} MB/s = {:.2} of min(sha256, write+fsync); peak RSS {:.1} MiB",
            v / push_limit,
            server.take_peak_rss()
        );
        let data2 = Bytes::from(pattern(size, 8));
        let d = push_blob_chunks(&base, "bench/blob", &data2, 16 * MIB).await;
        let v = mbps(size, d);
        println!(
            "push, 16 MiB PATCHes: {v:.0} MB/s = {:.2} of the limit; peak RSS {:.1} MiB",
            v / push_limit,
            server.take_peak_rss()
        );
        let digest = Digest::sha256_of(&data);
        let c = reqwest::Client::new();
        let t = Instant::now();
        let mut r = c
            .get(format!("{base}/v2/bench/blob/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        let mut n = 0usize;
        while let Some(chunk) = r.chunk().await.unwrap() {
            n += chunk.len();
        }
        assert_eq!(n, size);
        let v = mbps(n, t.elapsed());
        println!(
            "pull (reqwest client): {v:.0} MB/s = {:.2} of loopback",
            v / tcp
        );
        let (b, p) = (base.clone(), format!("/v2/bench/blob/blobs/{digest}"));
        let (n, d) = tokio::task::spawn_blocking(move || raw_get(&b, &p))
            .await
            .unwrap();
        assert_eq!(n, size);
        let v = mbps(n, d);
        println!(
            "pull (plain socket reader): {v:.0} MB/s = {:.2} of loopback; peak RSS {:.1} MiB",
            v / tcp,
            server.take_peak_rss()
        );
        let mut lat = Vec::new();
        for i in 0..50u64 {
            let start = (i as usize * 7 * MIB) % (size - MIB);
            let t = Instant::now();
            let r = c
                .get(format!("{base}/v2/bench/blob/blobs/{digest}"))
                .header("Range", format!("bytes={start}-{}", start + MIB - 1))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 206);
            assert_eq!(r.bytes().await.unwrap().len(), MIB);
            lat.push(t.elapsed());
        }
        println!("1 MiB Range GET: {}", fmt_lat(lat));
        drop(data);
        drop(data2);

        println!("== manifests, 64 connections, 5 s each ==");
        let url = format!("{base}/v2/bench/repo000042/manifests/latest");
        let u = url.clone();
        let (rps, lat) = hammer(
            64,
            Duration::from_secs(5),
            Arc::new(move |c: &reqwest::Client| c.head(&u)),
        )
        .await;
        println!(
            "HEAD by tag: {rps:.0} req/s, {} (built-in client); peak RSS {:.1} MiB",
            fmt_lat(lat),
            server.take_peak_rss()
        );
        if let Some(line) = external_load("hey", &url) {
            println!("HEAD by tag: {line}");
        }
        let u = url.clone();
        let (rps, lat) = hammer(
            64,
            Duration::from_secs(5),
            Arc::new(move |c: &reqwest::Client| c.get(&u)),
        )
        .await;
        println!(
            "GET by tag: {rps:.0} req/s, {} (built-in client); peak RSS {:.1} MiB",
            fmt_lat(lat),
            server.take_peak_rss()
        );
        if let Some(line) = external_load("wrk", &url) {
            println!("GET by tag: {line}");
        }

        println!("== listings ==");
        let mut lat = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            let r = c
                .get(format!(
                    "{base}/v2/_catalog?n=100&last=bench/repo{:06}",
                    i * 400
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            lat.push(t.elapsed());
        }
        println!("_catalog?n=100 (100k repositories): {}", fmt_lat(lat));
        let t = Instant::now();
        let mut next = Some(format!("{base}/v2/_catalog?n=1000"));
        let mut count = 0;
        while let Some(u) = next.take() {
            let r = c.get(&u).send().await.unwrap();
            next = r.headers().get("link").map(|l| {
                let l = l.to_str().unwrap();
                format!("{base}{}", &l[1..l.find('>').unwrap()])
            });
            let v: serde_json::Value = r.json().await.unwrap();
            count += v["repositories"].as_array().unwrap().len();
        }
        println!(
            "full catalog walk ({count} repositories, pages of 1000): {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let mut lat = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let r = c
                .get(format!("{base}/v2/bench/tags/tags/list"))
                .send()
                .await
                .unwrap();
            r.bytes().await.unwrap();
            lat.push(t.elapsed());
        }
        println!(
            "tags/list with 10k tags: {}; peak RSS {:.1} MiB",
            fmt_lat(lat),
            server.take_peak_rss()
        );
    });
}
