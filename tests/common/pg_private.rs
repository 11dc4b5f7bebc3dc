//! A PostgreSQL server of a test's own, which the test may stop and start again (the fault
//! tests); the shared server of `pg.rs` must never be stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL cluster of a test's own (`tests/tools/pg-up.sh` under a temporary
/// directory), so stopping it disturbs no other test; stopped on drop.
pub struct PrivatePg {
    dir: PathBuf,
    port: u16,
    _tmp: tempfile::TempDir,
}

fn pg_up(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/pg-up.sh");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("run pg-up.sh");
    assert!(
        out.status.success(),
        "pg-up.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let tmp = tempfile::tempdir().unwrap();
        // The server may run as user `postgres`: the directory must be searchable by it.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let pg = PrivatePg {
            dir: tmp.path().join("pg"),
            port,
            _tmp: tmp,
        };
        pg.up();
        pg
    }

    fn dir(&self) -> String {
        self.dir.display().to_string()
    }

    pub fn up(&self) {
        pg_up(&["start", &self.dir(), &self.port.to_string()]);
    }

    pub fn down(&self) {
        pg_up(&["stop", &self.dir()]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL with a password in it (the server trusts loopback and ignores it): for tests
    /// that check messages never show it.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/pg-up.sh"))
            .args(["stop", &self.dir()])
            .output();
    }
}
