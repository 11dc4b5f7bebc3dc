//! Support for the pull-through cache tests: an upstream `kura serve` behind kura's own token
//! auth (restartable on its port, with a fixed signing key so tokens outlive a restart), a
//! mirror `kura serve` configured with `[[mirrors]]`, the test proxy between them (it records,
//! cuts, holds and corrupts what the upstream sends), raw pulls, metrics and fsck.
#![allow(dead_code)]

pub mod images;
mod inspect;

pub use inspect::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::client_support::proxy::{Options, Proxy};
use crate::common::{KillOnDrop, client};
use kura::digest::Digest;

/// The user the mirror logs in to the upstream as (pull only), and an admin that pushes.
pub const MIRROR_USER: (&str, &str) = ("mirror", "mirror-pw");
pub const ADMIN_USER: (&str, &str) = ("admin", "admin-pw");
/// How long a poll for an asynchronous effect may take.
pub const POLL_LIMIT: Duration = Duration::from_secs(15);

/// Starts `kura serve --config <config> --root <root> --addr <addr>`; returns it and its URL.
pub fn serve(config: &Path, root: &Path, addr: &str) -> (KillOnDrop, String) {
    try_serve(config, root, addr).unwrap_or_else(|line| {
        panic!(
            "kura serve --config {} did not start: {line:?}",
            config.display()
        )
    })
}

/// `serve`, or the first line it printed when it did not start.
pub fn try_serve(config: &Path, root: &Path, addr: &str) -> Result<(KillOnDrop, String), String> {
    try_serve_env(config, root, addr, &[])
}

/// `try_serve` with extra environment variables.
pub fn try_serve_env(
    config: &Path,
    root: &Path,
    addr: &str,
    env: &[(&str, &str)],
) -> Result<(KillOnDrop, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args([
            "serve",
            "--workers",
            "2",
            "--gc-interval",
            "0s",
            "--addr",
            addr,
        ])
        .arg("--config")
        .arg(config)
        .arg("--root")
        .arg(root)
        .env("KURA_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kura serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = KillOnDrop(child);
    let url = line.trim().rsplit(' ').next().unwrap_or("").to_string();
    if url.starts_with("http://127.0.0.1:") {
        Ok((child, url))
    } else {
        Err(line)
    }
}

/// An upstream registry: a real kura with the Docker token flow (`[auth.token]`), where
/// `MIRROR_USER` may only pull and `ADMIN_USER` may do everything.
pub struct Upstream {
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`, the same across restarts.
    pub base: String,
    child: Option<KillOnDrop>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let mut htpasswd = String::new();
        for (u, p) in [MIRROR_USER, ADMIN_USER] {
            let h = bcrypt::hash(p, 4).unwrap().replacen("$2b$", "$2y$", 1);
            htpasswd.push_str(&format!("{u}:{h}\n"));
        }
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(dir.path().join("signing.pem"), key).unwrap();
        let config = format!(
            "[auth]\nhtpasswd = {:?}\n\
             [auth.token]\nservice = \"upstream\"\nissuer = \"upstream\"\nsigning_key = {:?}\n\
             [[auth.rules]]\nusers = [\"admin\"]\nrepositories = [\"*\"]\nactions = [\"*\", \"admin\"]\n\
             [[auth.rules]]\nusers = [\"mirror\"]\nrepositories = [\"*\"]\nactions = [\"pull\"]\n",
            dir.path().join("htpasswd").display().to_string(),
            dir.path().join("signing.pem").display().to_string(),
        );
        std::fs::write(dir.path().join("kura.toml"), config).unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let (child, base) = serve(
            &dir.path().join("kura.toml"),
            &dir.path().join("root"),
            "127.0.0.1:0",
        );
        Upstream {
            dir,
            base,
            child: Some(child),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.host().parse().unwrap()
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Restarts it with a new token signing key: tokens issued before are refused.
    pub fn restart_with_new_key(&mut self) {
        self.kill();
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(self.dir.path().join("signing.pem"), key).unwrap();
        self.restart();
    }

    /// Starts it again over the same data, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let (child, base) = serve(
            &self.dir.path().join("kura.toml"),
            &self.dir.path().join("root"),
            self.host(),
        );
        assert_eq!(base, self.base);
        self.child = Some(child);
    }

    /// A token from the upstream's token endpoint granting `ADMIN_USER` pull and push on `repo`.
    pub async fn admin_token(&self, repo: &str) -> String {
        let r = client()
            .get(format!(
                "{}/auth/token?service=upstream&scope=repository:{repo}:pull,push",
                self.base
            ))
            .basic_auth(ADMIN_USER.0, Some(ADMIN_USER.1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "admin token");
        let v: serde_json::Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }
}

/// One `[[mirrors]]` entry.
#[derive(Clone, Debug, Default)]
pub struct MirrorSpec {
    pub name: String,
    pub prefix: String,
    pub upstream: String,
    pub username: String,
    pub password: String,
    pub token: String,
    /// e.g. `"2s"`; the default (`5m`) when empty.
    pub tag_ttl: String,
    pub max_bytes: u64,
    pub insecure: bool,
}

impl MirrorSpec {
    /// `docker.io` mirrored under `docker.io/` from `upstream`, logged in as `MIRROR_USER`.
    pub fn docker_io(upstream: &str) -> MirrorSpec {
        MirrorSpec {
            name: "docker.io".into(),
            prefix: "docker.io/".into(),
            upstream: upstream.into(),
            username: MIRROR_USER.0.into(),
            password: MIRROR_USER.1.into(),
            ..MirrorSpec::default()
        }
    }

    /// The TOML of this entry.
    pub fn toml(&self) -> String {
        let mut t = format!(
            "[[mirrors]]\nname = {:?}\nprefix = {:?}\nupstream = {:?}\n",
            self.name, self.prefix, self.upstream
        );
        for (k, v) in [
            ("username", &self.username),
            ("password", &self.password),
            ("token", &self.token),
            ("tag_ttl", &self.tag_ttl),
        ] {
            if !v.is_empty() {
                t.push_str(&format!("{k} = {v:?}\n"));
            }
        }
        if self.insecure {
            t.push_str("insecure = true\n");
        }
        if self.max_bytes > 0 {
            t.push_str(&format!("max_bytes = {}\n", self.max_bytes));
        }
        t
    }
}

/// A kura serving `[[mirrors]]` (anonymous access, no auth of its own).
pub struct Mirror {
    pub dir: tempfile::TempDir,
    pub base: String,
    child: KillOnDrop,
}

impl Mirror {
    pub fn start(specs: &[MirrorSpec]) -> Mirror {
        Self::try_start(specs).unwrap_or_else(|line| panic!("the mirror did not start: {line:?}"))
    }

    /// `start`, or the first line kura printed when it refused to start.
    pub fn try_start(specs: &[MirrorSpec]) -> Result<Mirror, String> {
        Self::try_start_env(specs, &[])
    }

    /// `try_start` with extra environment variables.
    pub fn try_start_env(specs: &[MirrorSpec], env: &[(&str, &str)]) -> Result<Mirror, String> {
        Self::try_start_with(specs, env, |_| String::new())
    }

    /// `try_start_env` with more configuration: `extra` gets the mirror's directory and
    /// returns TOML written before the `[[mirrors]]` tables (e.g. an `[auth]` section).
    pub fn try_start_with(
        specs: &[MirrorSpec],
        env: &[(&str, &str)],
        extra: impl FnOnce(&Path) -> String,
    ) -> Result<Mirror, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = extra(dir.path());
        config.extend(specs.iter().map(MirrorSpec::toml));
        std::fs::write(dir.path().join("kura.toml"), config).unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let (child, base) = try_serve_env(
            &dir.path().join("kura.toml"),
            &dir.path().join("root"),
            "127.0.0.1:0",
            env,
        )?;
        Ok(Mirror { dir, base, child })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Stops it (SIGKILL) and starts it again over the same data and configuration.
    pub fn restart(&mut self) {
        self.child.kill();
        let (child, base) = serve(&self.config(), &self.dir.path().join("root"), "127.0.0.1:0");
        (self.child, self.base) = (child, base);
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("kura.toml")
    }

    /// Whether the mirror's store holds a blob file for `d`.
    pub fn has_blob_file(&self, d: &Digest) -> bool {
        self.dir
            .path()
            .join("root/blobs/sha256")
            .join(d.hex())
            .exists()
    }
}

/// A proxy in front of `up` that passes the mirror's credentials through, with `opts`.
pub async fn proxy_to(up: &Upstream, opts: Options) -> Proxy {
    Proxy::start(
        up.addr(),
        Options {
            pass_authorization: true,
            ..opts
        },
    )
    .await
}

impl Upstream {
    /// Pushes `img` as `repo:tag` with an admin token.
    pub async fn push(&self, img: &images::Image, repo: &str, tag: &str) {
        let token = self.admin_token(repo).await;
        img.push(&self.base, repo, tag, Some(&token)).await;
    }
}

/// An upstream, the proxy in front of it and a mirror of it (`MirrorSpec::docker_io`,
/// changed by `edit`).
pub struct Setup {
    pub mirror: Mirror,
    pub proxy: Proxy,
    pub up: Upstream,
}

pub async fn setup(opts: Options, edit: impl FnOnce(&mut MirrorSpec)) -> Setup {
    let up = Upstream::start();
    let proxy = proxy_to(&up, opts).await;
    let mut spec = MirrorSpec::docker_io(&format!("http://{}", proxy.host));
    edit(&mut spec);
    let mirror = Mirror::start(&[spec]);
    Setup { mirror, proxy, up }
}
