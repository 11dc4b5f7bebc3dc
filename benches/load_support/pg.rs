//! A PostgreSQL server for the benchmarks that need one (`meta.rs`, `cluster.rs`): the one
//! `KURA_TEST_PG_URL` names, else a private one started with `tests/tools/pg-up.sh` and stopped
//! on drop; each caller takes a fresh database.

use std::process::Command;

/// A PostgreSQL server for the run: its superuser URL, and the directory of one started here.
pub struct Server {
    pub url: String,
    own: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        if let Ok(url) = std::env::var("KURA_TEST_PG_URL")
            && !url.is_empty()
        {
            return Server { url, own: None };
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("tests/tools/pg-up.sh")
            .arg("start")
            .arg(dir.path().join("pg"))
            .arg(port.to_string())
            .output()
            .expect("run tests/tools/pg-up.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout);
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("export KURA_TEST_PG_URL="))
            .expect("pg-up.sh prints the URL")
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string();
        Server {
            url,
            own: Some(dir),
        }
    }

    /// A fresh database's URL.
    pub fn database(&self) -> String {
        let name = format!("kura_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = self.url.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let _ = Command::new("tests/tools/pg-up.sh")
                .arg("stop")
                .arg(dir.path().join("pg"))
                .status();
        }
    }
}
