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
//! `cargo bench --bench load` (`LOAD_BENCH_BLOB_MIB` changes the 1024 MiB blob size;
//! `LOAD_BENCH_ONLY=data` stops after the data path).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kura::digest::Digest;
use kura::meta::{ManifestRecord, blobs, manifests, repos, tags};
use kura::registry::Registry;

#[path = "load_support/curl.rs"]
mod curl;
#[path = "load_support/server.rs"]
mod server;

use server::Server;

const MIB: usize = 1024 * 1024;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// Machine limits: sha256 MB/s, write+fsync MB/s in `dir`, loopback TCP MB/s.
fn limits(dir: &Path, size: usize) -> (f64, f64, f64) {
    let data = pattern(256 * MIB, 1);
    let t = Instant::now();
    let _ = Digest::sha256_of(&data);
    let sha = mbps(data.len(), t.elapsed());

    let path = dir.join("limit-probe");
    let buf = pattern(4 * MIB, 2);
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..size / buf.len() {
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    let write = mbps(size, t.elapsed());
    drop(f);
    std::fs::remove_file(&path).unwrap();

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = vec![0u8; 4 * MIB];
        let mut n = 0usize;
        loop {
            let r = s.read(&mut b).unwrap();
            if r == 0 {
                return n;
            }
            n += r;
        }
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    for _ in 0..size / buf.len() {
        s.write_all(&buf).unwrap();
    }
    drop(s);
    let n = reader.join().unwrap();
    let tcp = mbps(n, t.elapsed());
    (sha, write, tcp)
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

/// What the data-path phases measured on one registry.
#[derive(Default)]
struct DataPath {
    mono: f64,
    chunked: f64,
    pull: f64,
    range: f64,
    parallel: f64,
    parallel_rss: f64,
    repos: f64,
    tags: f64,
}

/// The blob files curl sends: one of `size` bytes, the same again in 16 MiB chunk files, and
/// 32 of 8 MiB; each with its digest.
struct Files {
    mono: (PathBuf, String),
    chunks: (Vec<PathBuf>, String),
    parallel: Vec<(PathBuf, String)>,
}

impl Files {
    fn write(dir: &Path, size: usize) -> Files {
        std::fs::create_dir_all(dir).unwrap();
        let file = |name: &str, data: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let data = pattern(size, 7);
        let mono = (file("mono", &data), Digest::sha256_of(&data).to_string());
        let data = pattern(size, 8);
        let chunks = data
            .chunks(16 * MIB)
            .enumerate()
            .map(|(i, c)| file(&format!("chunk{i:04}"), c))
            .collect();
        let chunks = (chunks, Digest::sha256_of(&data).to_string());
        let parallel = (0..32u64)
            .map(|i| {
                let data = pattern(8 * MIB, 100 + i);
                (
                    file(&format!("par{i}"), &data),
                    Digest::sha256_of(&data).to_string(),
                )
            })
            .collect();
        Files {
            mono,
            chunks,
            parallel,
        }
    }
}

/// Times the data path of `server` with curl, then the creation rates with 16 clients.
fn data_path(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    files: &Files,
    size: usize,
) -> DataPath {
    let base = &server.base;
    let sink = std::path::PathBuf::from("/dev/null");
    let blob = format!("/v2/bench/blob/blobs/{}", files.mono.1);
    let mut f = DataPath {
        mono: mbps(
            size,
            curl::push_mono(base, "bench/blob", &files.mono.0, &files.mono.1),
        ),
        chunked: mbps(
            size,
            curl::push_chunks(base, "bench/blob", &files.chunks.0, &files.chunks.1),
        ),
        ..DataPath::default()
    };
    let (n, d) = curl::pull(base, &blob, None, &sink);
    assert_eq!(n as usize, size);
    f.pull = mbps(size, d);
    let half = size as u64 / 2;
    let (n, d) = curl::pull(base, &blob, Some((half, size as u64 - 1)), &sink);
    assert_eq!(n, size as u64 - half);
    f.range = mbps(n as usize, d);
    server.take_peak_rss();
    f.parallel = mbps(32 * 8 * MIB, curl::push_parallel(base, &files.parallel));
    f.parallel_rss = server.take_peak_rss();
    (f.repos, f.tags) = rt.block_on(creation_rates(base));
    f
}

/// Repositories created per second (a cross-repository mount of the config plus a manifest
/// PUT, the two requests an image push into a new repository makes when its layers exist) and
/// tags created per second (manifest PUTs under new tags), each with 16 clients for 5 s.
async fn creation_rates(base: &str) -> (f64, f64) {
    let cfg = Bytes::from_static(b"{}");
    let cd = Digest::sha256_of(&cfg);
    let body = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
    ));
    let c = reqwest::Client::new();
    // POST then PUT: Distribution 2.8 has no single-POST push.
    let r = c
        .post(format!("{base}/v2/create/base/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap();
    let loc = if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={cd}"))
        .body(cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut rates = Vec::new();
    for new_repo in [true, false] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (base, body, cd) = (base.to_string(), body.clone(), cd.clone());
            tasks.push(tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let repo = if new_repo {
                        format!("create/w{w}/r{n}")
                    } else {
                        format!("create/tags{w}")
                    };
                    if new_repo || n == 0 {
                        let r = c
                            .post(format!(
                                "{base}/v2/{repo}/blobs/uploads/?mount={cd}&from=create/base"
                            ))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 201, "mount");
                    }
                    let r = c
                        .put(format!("{base}/v2/{repo}/manifests/t{n}"))
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        rates.push(total as f64 / 5.0);
    }
    (rates[0], rates[1])
}

fn print_table(limits: &[(&str, f64); 3], kura: &DataPath, peer: Option<&DataPath>) {
    let [(_, push_limit), (_, tcp), (_, agg)] = *limits;
    let rows = [
        (
            "push, one PUT (MB/s)",
            push_limit,
            "min(sha256, write+fsync)",
            kura.mono,
            peer.map(|p| p.mono),
        ),
        (
            "push, 16 MiB PATCHes (MB/s)",
            push_limit,
            "min(sha256, write+fsync)",
            kura.chunked,
            peer.map(|p| p.chunked),
        ),
        (
            "pull (MB/s)",
            tcp,
            "iperf3 loopback",
            kura.pull,
            peer.map(|p| p.pull),
        ),
        (
            "pull, Range of half (MB/s)",
            tcp,
            "iperf3 loopback",
            kura.range,
            peer.map(|p| p.range),
        ),
        (
            "32 parallel 8 MiB pushes (MB/s)",
            agg,
            "32 writers' write+fsync",
            kura.parallel,
            peer.map(|p| p.parallel),
        ),
        (
            "  peak RSS during them (MiB)",
            48.0,
            "the issue's ceiling",
            kura.parallel_rss,
            peer.map(|p| p.parallel_rss),
        ),
        (
            "repositories created (/s)",
            1000.0,
            "the issue's floor",
            kura.repos,
            peer.map(|p| p.repos),
        ),
        (
            "tags created (/s)",
            f64::NAN,
            "",
            kura.tags,
            peer.map(|p| p.tags),
        ),
    ];
    println!("| figure | limit | kura | kura / limit | distribution | kura / distribution |");
    println!("|---|---|---|---|---|---|");
    for (what, limit, name, k, p) in rows {
        let limit_s = if limit.is_nan() {
            "-".to_string()
        } else {
            format!("{limit:.0} ({name})")
        };
        let ratio = if limit.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2}", k / limit)
        };
        let (ps, pr) = p.map_or(("-".into(), "-".into()), |p| {
            (format!("{p:.0}"), format!("{:.2}", k / p))
        });
        println!("| {what} | {limit_s} | {k:.0} | {ratio} | {ps} | {pr} |");
    }
}

fn main() {
    // criterion-style arguments (`--bench`) are ignored.
    let blob_mib: usize = std::env::var("LOAD_BENCH_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
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

    println!("== machine limits (measured now) ==");
    std::fs::create_dir_all(&root).unwrap();
    let (sha, write, tcp_probe) = limits(&root, size);
    let push_limit = sha.min(write);
    let tcp = curl::iperf3().unwrap_or(tcp_probe);
    let agg = curl::fsync_aggregate(&root, 32, 8 * MIB);
    println!(
        "sha256: {sha:.0} MB/s; {blob_mib} MiB write+fsync: {write:.0} MB/s; 32 writers of 8 MiB, write+fsync: {agg:.0} MB/s"
    );
    println!(
        "loopback TCP: {tcp:.0} MB/s (iperf3 when installed), {tcp_probe:.0} MB/s (4 MiB socket writes)"
    );
    let files = Files::write(&dir.path().join("files"), size);

    println!("== data path with curl as the client ({blob_mib} MiB blob) ==");
    let peer = Server::distribution(&dir.path().join("distribution")).map(|s| {
        let f = data_path(&rt, &s, &files, size);
        println!(
            "{}: measured (started in {:.0} ms)",
            s.name,
            s.started_in.as_secs_f64() * 1e3
        );
        f
    });
    let server = Server::kura(&root);
    let kura = data_path(&rt, &server, &files, size);
    print_table(
        &[("", push_limit), ("", tcp), ("", agg)],
        &kura,
        peer.as_ref(),
    );
    drop(server);
    if only_data {
        return;
    }

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
