//! The machine's limits the data path is measured against, measured in the same run: sha256
//! on one core, the disk's write+fsync rate with one and with 32 writers, and loopback TCP
//! (iperf3, and a probe writing 4 MiB at a time).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kura::digest::Digest;

use super::{MIB, mbps, pattern};

/// sha256 on one core over a 256 MiB buffer, in MiB/s.
pub fn sha256() -> f64 {
    let data = pattern(256 * MIB, 1);
    let t = Instant::now();
    let _ = Digest::sha256_of(&data);
    mbps(data.len(), t.elapsed())
}

/// Writing `size` bytes into a new file in `dir` (4 MiB writes) and fsyncing it, in MiB/s.
pub fn write_fsync(dir: &Path, size: usize) -> f64 {
    let path = dir.join("limit-probe");
    let buf = pattern(4 * MIB, 2);
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..size / buf.len() {
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    let v = mbps(size, t.elapsed());
    drop(f);
    std::fs::remove_file(&path).unwrap();
    v
}

/// Loopback TCP with 4 MiB socket writes and reads, in MiB/s.
pub fn tcp_probe(size: usize) -> f64 {
    let buf = pattern(4 * MIB, 2);
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
    mbps(n, t.elapsed())
}

/// Loopback TCP throughput measured by iperf3 (one stream, 5 s), in MiB/s; `None` when
/// iperf3 is not installed.
pub fn iperf3() -> Option<f64> {
    let port = super::server::free_port();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let o = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "5", "-J"])
            .output()
            .ok()?;
        if o.status.success() {
            out = Some(o.stdout);
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out?).ok()?;
    let bits = v["end"]["sum_received"]["bits_per_second"].as_f64()?;
    Some(bits / 8.0 / (1024.0 * 1024.0))
}

/// The disk's aggregate write+fsync rate in `dir` with `writers` threads each writing and
/// syncing its own file of `size` bytes, in MiB/s.
pub fn fsync_aggregate(dir: &Path, writers: usize, size: usize) -> f64 {
    let data = std::sync::Arc::new(pattern(size, 3));
    let t = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|i| {
            let (data, path) = (data.clone(), dir.join(format!("fsync-probe-{i}")));
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(&data).unwrap();
                f.sync_all().unwrap();
                path
            })
        })
        .collect();
    let paths: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let v = mbps(writers * size, t.elapsed());
    for p in paths {
        std::fs::remove_file(p).unwrap();
    }
    v
}

/// A registry that does nothing: answers a `POST` or `PATCH` with 202 and a Location, a
/// `GET /bytes/<n>` with `n` bytes from memory, anything else with 201, after reading and
/// discarding the request's body. What curl achieves against it is what the client and the
/// loopback stack allow on this machine, the server's work aside. Returns its base URL; the
/// listener thread lives as long as the process.
pub fn sink() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve_sink(conn));
        }
    });
    base
}

fn serve_sink(conn: TcpStream) {
    use std::io::BufRead;
    let mut w = conn.try_clone().unwrap();
    let mut r = std::io::BufReader::with_capacity(4 * MIB, conn);
    let mut buf = vec![0u8; 4 * MIB];
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        while len > 0 {
            let n = r.read(&mut buf[..len.min(4 * MIB)]).unwrap();
            assert!(n > 0, "body cut short");
            len -= n;
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            let mut n: usize = n.parse().unwrap();
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
            while n > 0 {
                let k = n.min(buf.len());
                if w.write_all(&buf[..k]).is_err() {
                    return;
                }
                n -= k;
            }
            continue;
        }
        let status = match method.as_str() {
            "POST" | "PATCH" => "202 Accepted",
            _ => "201 Created",
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nLocation: /v2/sink/blobs/uploads/x\r\nRange: 0-0\r\nContent-Length: 0\r\n\r\n"
        );
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Like `write_fsync`, but in 1 MiB blocks streamed to disk by kura's own
/// `store::writeback::stream` (each block's writeback started when written, the blocks
/// before it dropped from the page cache): the disk's own rate, without the cost of finding
/// fresh memory for the page cache.
pub fn write_fsync_streaming(dir: &Path, size: usize) -> f64 {
    let path = dir.join("limit-probe-streaming");
    let buf = pattern(MIB, 2);
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..size / MIB {
        f.write_all(&buf).unwrap();
        kura::store::writeback::stream(&f, ((i * MIB) as u64, MIB as u64));
    }
    f.sync_all().unwrap();
    let v = mbps(size, t.elapsed());
    drop(f);
    std::fs::remove_file(&path).unwrap();
    v
}

/// CPU time counters: the machine's busy and total jiffies (all cores, `/proc/stat`) and, for
/// `pid`, its user+system jiffies.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    busy: u64,
    total: u64,
    process: u64,
}

impl Cpu {
    pub fn now(pid: Option<u32>) -> Cpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let total: u64 = v.iter().sum();
        // idle and iowait are the 4th and 5th fields.
        let busy = total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0);
        let process = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .map(|s| {
                // The fields after the command name (which may hold spaces) start with the
                // state (field 3); utime and stime are fields 14 and 15.
                let rest = &s[s.rfind(')').unwrap() + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
            })
            .unwrap_or(0);
        Cpu {
            busy,
            total,
            process,
        }
    }

    /// Since `earlier`: (the share of all cores that was busy, the process's CPU seconds).
    pub fn since(&self, earlier: &Cpu) -> (f64, f64) {
        let total = (self.total - earlier.total).max(1) as f64;
        (
            (self.busy - earlier.busy) as f64 / total,
            (self.process - earlier.process) as f64 / 100.0,
        )
    }
}
