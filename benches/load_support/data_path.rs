//! The data-path phases: every registry is driven by curl with the same files, each push
//! figure `REPS` times with its limit measured again just before (the disk's write rate on this
//! machine moves by 4x from one minute to the next), and the table prints the medians.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kura::digest::Digest;

use super::server::Server;
use super::{MIB, curl, limits, mbps, pattern};

/// Measurements of each figure (and of each limit) in one run.
pub const REPS: usize = 3;

/// What the data-path phases measured on one registry.
#[derive(Default)]
pub struct Figures {
    mono: Vec<f64>,
    chunked: Vec<f64>,
    /// The first pull of a blob after its push (kura keeps no pushed blob in the page cache).
    pull_first: f64,
    pull: Vec<f64>,
    range: Vec<f64>,
    parallel: Vec<f64>,
    parallel_rss: f64,
    /// During each one-PUT push: the share of both cores busy, and the server's CPU seconds
    /// per GiB pushed (for the null server: none).
    mono_cpu: Vec<(f64, f64)>,
    repos: f64,
    tags: f64,
}

/// The limits, measured beside the figures: the issue's (sha256 on one core, a buffered
/// write+fsync, iperf3, 32 buffered writers) and the machine's tighter bounds: the disk's
/// streaming rate, and curl against a server that does nothing (`limits::sink`), which is
/// what the client and the loopback stack leave on the 2 cores they share with the server.
#[derive(Default)]
pub struct Limits {
    sha: f64,
    /// write+fsync of one blob, buffered, once per repetition.
    write: Vec<f64>,
    /// write+fsync of one blob, streamed as kura does, once per repetition.
    streaming: Vec<f64>,
    /// 32 writers' write+fsync of 8 MiB each, once per repetition.
    aggregate: Vec<f64>,
    /// Loopback TCP (iperf3 when installed).
    tcp: f64,
    /// curl against the sink: one PUT, PATCHes, pull, 32 parallel pushes (MB/s).
    sink: Figures,
}

type Blob = (PathBuf, String);

/// The files curl sends, per repetition: a blob of `size` bytes, another one cut into 16 MiB
/// chunk files, and 32 of 8 MiB; each with its digest.
pub struct Files {
    mono: Vec<Blob>,
    chunks: Vec<(Vec<PathBuf>, String)>,
    parallel: Vec<Vec<Blob>>,
}

impl Files {
    pub fn write(dir: &Path, size: usize) -> Files {
        std::fs::create_dir_all(dir).unwrap();
        let file = |name: &str, data: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let mut files = Files {
            mono: vec![],
            chunks: vec![],
            parallel: vec![],
        };
        for rep in 0..REPS as u64 {
            let data = pattern(size, 7 + 1000 * rep);
            files.mono.push((
                file(&format!("mono{rep}"), &data),
                Digest::sha256_of(&data).to_string(),
            ));
            let data = pattern(size, 8 + 1000 * rep);
            let chunks = data
                .chunks(16 * MIB)
                .enumerate()
                .map(|(i, c)| file(&format!("chunk{rep}-{i:04}"), c))
                .collect();
            files
                .chunks
                .push((chunks, Digest::sha256_of(&data).to_string()));
            let parallel = (0..32u64)
                .map(|i| {
                    let data = pattern(8 * MIB, 100 + i + 1000 * rep);
                    let d = Digest::sha256_of(&data).to_string();
                    (file(&format!("par{rep}-{i}"), &data), d)
                })
                .collect();
            files.parallel.push(parallel);
        }
        files
    }
}

/// Runs every phase on every server, interleaved repetition by repetition.
pub fn run(
    rt: &tokio::runtime::Runtime,
    servers: &[&Server],
    files: &Files,
    dir: &Path,
    size: usize,
) -> (Limits, Vec<Figures>) {
    let mut lim = Limits {
        sha: limits::sha256(),
        ..Limits::default()
    };
    let sink = limits::sink();
    let mut figs: Vec<Figures> = servers.iter().map(|_| Figures::default()).collect();
    for rep in 0..REPS {
        lim.write.push(limits::write_fsync(dir, size));
        lim.streaming.push(limits::write_fsync_streaming(dir, size));
        let (file, digest) = &files.mono[rep];
        let (chunks, chunks_digest) = &files.chunks[rep];
        let before = limits::Cpu::now(None);
        let d = curl::push_mono(&sink, "sink", file, digest);
        lim.sink.mono.push(mbps(size, d));
        lim.sink.mono_cpu.push(cpu_per_gib(&before, None, size));
        let d = curl::push_chunks(&sink, "sink", chunks, chunks_digest);
        lim.sink.chunked.push(mbps(size, d));
        for (s, f) in servers.iter().zip(&mut figs) {
            let before = limits::Cpu::now(Some(s.pid()));
            let d = curl::push_mono(&s.base, "bench/blob", file, digest);
            f.mono.push(mbps(size, d));
            f.mono_cpu.push(cpu_per_gib(&before, Some(s.pid()), size));
            let d = curl::push_chunks(&s.base, "bench/blob", chunks, chunks_digest);
            f.chunked.push(mbps(size, d));
        }
    }
    for rep in 0..REPS {
        lim.aggregate
            .push(limits::fsync_aggregate(dir, 32, 8 * MIB));
        let d = curl::push_parallel(&sink, "sink", &files.parallel[rep]);
        lim.sink.parallel.push(mbps(32 * 8 * MIB, d));
        for (s, f) in servers.iter().zip(&mut figs) {
            s.take_peak_rss();
            let d = curl::push_parallel(&s.base, &format!("bench/par{rep}"), &files.parallel[rep]);
            f.parallel.push(mbps(32 * 8 * MIB, d));
            f.parallel_rss = f.parallel_rss.max(s.take_peak_rss());
        }
    }
    lim.tcp = limits::iperf3().unwrap_or_else(|| limits::tcp_probe(size));
    let blob = format!("/v2/bench/blob/blobs/{}", files.mono[0].1);
    let sink_path = PathBuf::from("/dev/null");
    let half = size as u64 / 2;
    for _ in 0..REPS {
        let (n, d) = curl::pull(&sink, &format!("/bytes/{size}"), None, &sink_path);
        assert_eq!(n as usize, size);
        lim.sink.pull.push(mbps(size, d));
    }
    for (s, f) in servers.iter().zip(&mut figs) {
        let (n, d) = curl::pull(&s.base, &blob, None, &sink_path);
        assert_eq!(n as usize, size);
        f.pull_first = mbps(size, d);
        for _ in 0..REPS {
            let (n, d) = curl::pull(&s.base, &blob, None, &sink_path);
            assert_eq!(n as usize, size);
            f.pull.push(mbps(size, d));
            let (n, d) = curl::pull(&s.base, &blob, Some((half, size as u64 - 1)), &sink_path);
            assert_eq!(n, size as u64 - half);
            f.range.push(mbps(n as usize, d));
        }
        (f.repos, f.tags) = rt.block_on(creation_rates(&s.base));
    }
    (lim, figs)
}

/// CPU use since `before` for one push of `size` bytes: (share of both cores busy, process
/// CPU seconds per GiB).
fn cpu_per_gib(before: &limits::Cpu, pid: Option<u32>, size: usize) -> (f64, f64) {
    let (busy, cpu) = limits::Cpu::now(pid).since(before);
    (busy, cpu * (1024 * MIB) as f64 / size as f64)
}

/// The means of the pairs in `v`.
fn means(v: &[(f64, f64)]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let (a, b) = v.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    (a / n, b / n)
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
    let loc = curl::absolute(base, r.headers()["location"].to_str().unwrap());
    let r = c
        .put(curl::with_digest(&loc, &cd.to_string()))
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

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
    s.join(", ")
}

/// Prints every measurement, then one row per figure: the issue's limit and kura (the first
/// server) against it, the machine's tighter bound and kura against that, and the peer
/// beside kura when there is one. Throughputs are medians of the repetitions.
pub fn print(lim: &Limits, names: &[&str], figs: &[Figures]) {
    println!(
        "limits (MB/s): sha256 {:.0}; write+fsync {}; streamed write+fsync {}; 32 writers' write+fsync {}; iperf3 {:.0}",
        lim.sha,
        list(&lim.write),
        list(&lim.streaming),
        list(&lim.aggregate),
        lim.tcp
    );
    let all = std::iter::once(("curl against a null server", &lim.sink))
        .chain(names.iter().copied().zip(figs));
    for (name, f) in all {
        // The null server holds no blob: it has no first pull and no Range pull.
        let first = if f.pull_first > 0.0 {
            format!("{:.0}, then ", f.pull_first)
        } else {
            String::new()
        };
        println!(
            "{name} (MB/s): one PUT {}; PATCHes {}; pull {first}{}; Range pull {}; 32 parallel {}",
            list(&f.mono),
            list(&f.chunked),
            list(&f.pull),
            list(&f.range),
            list(&f.parallel)
        );
    }
    let cpu: Vec<String> = names
        .iter()
        .zip(figs)
        .map(|(n, f)| {
            let (busy, cpu) = means(&f.mono_cpu);
            format!(
                "{n} {cpu:.2} CPU-s per GiB, both cores {:.0}% busy",
                busy * 100.0
            )
        })
        .collect();
    println!(
        "CPU during the one-PUT pushes (means): {}; curl with the null server: both cores {:.0}% busy; sha256 alone: {:.2} CPU-s per GiB",
        cpu.join("; "),
        means(&lim.sink.mono_cpu).0 * 100.0,
        1024.0 / lim.sha
    );
    let issue_push = lim.sha.min(median(&lim.write));
    let disk = lim.sha.min(median(&lim.streaming));
    let sink = &lim.sink;
    // (figure, issue's limit and its name, tighter bound and its name, the figure of a server)
    type Row<'a> = (&'a str, f64, &'a str, f64, String, fn(&Figures) -> f64);
    let rows: [Row; 9] = [
        (
            "push, one PUT (MB/s)",
            issue_push,
            "min(sha256, write+fsync)",
            disk.min(median(&sink.mono)),
            "min(sha256, streamed disk, curl to null server)".into(),
            |f| median(&f.mono),
        ),
        (
            "push, 16 MiB PATCHes (MB/s)",
            issue_push,
            "min(sha256, write+fsync)",
            disk.min(median(&sink.chunked)),
            "min(sha256, streamed disk, curl to null server)".into(),
            |f| median(&f.chunked),
        ),
        (
            "pull, first after the push (MB/s)",
            lim.tcp,
            "iperf3",
            median(&sink.pull),
            "curl from null server".into(),
            |f| f.pull_first,
        ),
        (
            "pull, again (MB/s)",
            lim.tcp,
            "iperf3",
            median(&sink.pull),
            "curl from null server".into(),
            |f| median(&f.pull),
        ),
        (
            "pull, Range of half (MB/s)",
            lim.tcp,
            "iperf3",
            median(&sink.pull),
            "curl from null server".into(),
            |f| median(&f.range),
        ),
        (
            "32 parallel 8 MiB pushes (MB/s)",
            median(&lim.aggregate),
            "32 writers' write+fsync",
            median(&sink.parallel),
            "32 curls to null server".into(),
            |f| median(&f.parallel),
        ),
        (
            "  peak RSS during them (MiB)",
            48.0,
            "the issue's ceiling",
            f64::NAN,
            String::new(),
            |f| f.parallel_rss,
        ),
        (
            "repositories created (/s)",
            1000.0,
            "the issue's floor",
            f64::NAN,
            String::new(),
            |f| f.repos,
        ),
        (
            "tags created (/s)",
            f64::NAN,
            "",
            f64::NAN,
            String::new(),
            |f| f.tags,
        ),
    ];
    let peer = names.get(1).copied().unwrap_or("peer");
    println!(
        "| figure | issue's limit | kura | kura / limit | machine bound | kura / bound | {peer} | kura / {peer} |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cell = |limit: f64, name: &str, k: f64| {
        if limit.is_nan() {
            ("-".to_string(), "-".to_string())
        } else {
            (format!("{limit:.0} ({name})"), format!("{:.2}", k / limit))
        }
    };
    for (what, limit, name, bound, bound_name, get) in rows {
        let k = get(&figs[0]);
        let (l, lr) = cell(limit, name, k);
        let (b, br) = cell(bound, &bound_name, k);
        let (ps, pr) = figs.get(1).map_or(("-".into(), "-".into()), |p| {
            (format!("{:.0}", get(p)), format!("{:.2}", k / get(p)))
        });
        println!("| {what} | {l} | {k:.0} | {lr} | {b} | {br} | {ps} | {pr} |");
    }
}
