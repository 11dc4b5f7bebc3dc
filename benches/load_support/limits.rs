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
    let port = super::free_port();
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
