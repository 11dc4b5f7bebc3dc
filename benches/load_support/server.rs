//! The registries the benchmarks measure: the bench-built `kura` binary, and CNCF
//! Distribution (Debian's `docker-registry`) as a peer when it is installed, each on loopback
//! in its own data directory. Shared by `load.rs`, `s3.rs`, `mirror.rs` and `policies.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on loopback now (the servers that cannot report theirs are given one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub name: &'static str,
    child: Child,
    pub base: String,
    pub started_in: Duration,
}

impl Server {
    pub fn kura(root: &Path) -> Server {
        Server::kura_with(root, &[])
    }

    /// kura with extra environment (`KURA_*` settings).
    pub fn kura_with(root: &Path, env: &[(&str, String)]) -> Server {
        Server::kura_full(root, &[], env)
    }

    /// kura with extra `serve` arguments (e.g. `--config FILE`) and environment.
    pub fn kura_full(root: &Path, args: &[&str], env: &[(&str, String)]) -> Server {
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--gc-interval",
                "0s",
                "--root",
            ])
            .arg(root)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Default logging (an access-log line per request), written where nobody reads it.
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_string();
        Server {
            name: "kura",
            child,
            base,
            started_in: t.elapsed(),
        }
    }

    /// Distribution 2.8 on the filesystem driver with deletes enabled and its access log off;
    /// `None` when `docker-registry` is not installed.
    pub fn distribution(root: &Path) -> Option<Server> {
        let port = free_port();
        std::fs::create_dir_all(root).unwrap();
        let config = root.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                root.join("data").display()
            ),
        )
        .unwrap();
        let t = Instant::now();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Server {
            name: "distribution",
            child,
            base,
            started_in: t.elapsed(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak RSS (VmHWM) in MiB since the last reset, then resets it.
    pub fn take_peak_rss(&self) -> f64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        kb / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
