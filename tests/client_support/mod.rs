//! Support for the `kura` client tests: running the client binary with an isolated Docker
//! config, building OCI layouts with real tar layers, reading back what a layout holds,
//! running skopeo, and starting the real server binary on a chosen port.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kura::digest::Digest;
use serde_json::{Value, json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How long one client or tool invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// What a command printed.
#[derive(Debug)]
pub struct Out {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The JSON events printed with `--json`.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    /// The JSON events of kind `event`.
    pub fn events_of(&self, event: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }
}

/// Runs a command on a blocking thread, bounded in time.
pub async fn run_command(mut cmd: Command) -> Out {
    let shown = format!("{cmd:?}");
    let task = tokio::task::spawn_blocking(move || cmd.output());
    let out = tokio::time::timeout(COMMAND_TIMEOUT, task)
        .await
        .unwrap_or_else(|_| panic!("{shown} took longer than {COMMAND_TIMEOUT:?}"))
        .expect("command task")
        .unwrap_or_else(|e| panic!("running {shown}: {e}"));
    Out {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `kura` client binary with its own Docker config directory (never the user's).
pub struct Client {
    pub docker_config: tempfile::TempDir,
}

impl Client {
    pub fn new() -> Client {
        Client {
            docker_config: tempfile::tempdir().unwrap(),
        }
    }

    /// The command, with the environment isolated.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kura"));
        cmd.args(args)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env("KURA_LOG", "warn")
            .env_remove("KURA_INSECURE")
            .env_remove("KURA_CA_CERT")
            .env_remove("KURA_JOBS")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kura <args>`.
    pub async fn run(&self, args: &[&str]) -> Out {
        run_command(self.command(args)).await
    }

    /// Runs `kura <args>` with `input` on its standard input.
    pub async fn run_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = input.to_string();
        let task = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn()?;
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
            child.wait_with_output()
        });
        let out = tokio::time::timeout(COMMAND_TIMEOUT, task)
            .await
            .expect("kura finishes in time")
            .unwrap()
            .unwrap();
        Out {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The Docker config file the client reads and `kura login` writes.
    pub fn config_file(&self) -> PathBuf {
        self.docker_config.path().join("config.json")
    }

    /// Runs `kura <args>`, which must succeed.
    pub async fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args).await;
        assert!(
            out.success,
            "kura {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out
    }
}

/// Runs `skopeo <args>` (with an insecure policy and a timeout), which must succeed.
pub async fn skopeo(args: &[&str]) -> Out {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy")
        .arg("--command-timeout=120s")
        .args(args);
    let out = run_command(cmd).await;
    assert!(
        out.success,
        "skopeo {} failed:\n{}\n{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out
}

/// A tar archive of `files` (path, content).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `data` gzipped.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `n` bytes that do not compress, from `seed` (the tests' one generator).
pub use crate::common::s3::data as noise;

/// A layer to build: its files (path, content), and whether to gzip it.
pub type LayerSpec<'a> = (&'a [(&'a str, &'a [u8])], bool);

/// An OCI image layout under construction.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
            )
            .unwrap(),
        )
        .unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a blob; returns its descriptor.
    pub fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let d = Digest::sha256_of(data);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), data).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()})
    }

    /// Writes an image for `arch` with one layer per entry of `layers` (each a tar of its
    /// files; gzipped when asked); returns the manifest's descriptor with its platform.
    pub fn image(&self, arch: &str, layers: &[LayerSpec]) -> Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (files, gz) in layers {
            let tar = tar_of(files);
            diff_ids.push(Digest::sha256_of(&tar).to_string());
            descs.push(if *gz {
                self.blob(OCI_LAYER_GZIP, &gzip(&tar))
            } else {
                self.blob(OCI_LAYER_TAR, &tar)
            });
        }
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": {"kura.test": arch}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "kura client test"}],
        });
        let config = self.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": descs,
        });
        let mut desc = self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        desc["platform"] = json!({"architecture": arch, "os": "linux"});
        desc
    }

    /// Writes an index over `manifests`; returns its descriptor.
    pub fn index(&self, manifests: &[Value]) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    }

    /// Names `desc` `name` in `index.json`.
    pub fn tag(&self, desc: &Value, name: &str) {
        let path = self.dir.join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut entry = desc.clone();
        entry.as_object_mut().unwrap().remove("platform");
        entry["annotations"] = json!({ REF_NAME: name });
        index["manifests"].as_array_mut().unwrap().push(entry);
        std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

/// The `index.json` entry of a layout named `name` (or its only entry).
pub fn entry(dir: &Path, name: Option<&str>) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    match name {
        Some(n) => entries
            .iter()
            .find(|e| e["annotations"][REF_NAME] == n)
            .unwrap_or_else(|| panic!("no {n} in {index}"))
            .clone(),
        None => {
            assert_eq!(entries.len(), 1, "{index}");
            entries[0].clone()
        }
    }
}

/// Reads blob `digest` of a layout, checking it hashes to its name.
pub fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    let data = std::fs::read(dir.join("blobs").join(alg).join(hex))
        .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", dir.display()));
    assert_eq!(
        Digest::sha256_of(&data).to_string(),
        digest,
        "blob file content"
    );
    data
}

/// Every digest reachable from `root` in a layout (manifests, configs, layers), each blob
/// checked against its digest.
pub fn reachable(dir: &Path, root: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(d) = stack.pop() {
        if !out.insert(d.clone()) {
            continue;
        }
        let m: Value = serde_json::from_slice(&read_blob(dir, &d)).unwrap();
        for c in m["manifests"].as_array().into_iter().flatten() {
            stack.push(c["digest"].as_str().unwrap().to_string());
        }
        for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten()) {
            if let Some(d) = b["digest"].as_str() {
                read_blob(dir, d);
                out.insert(d.to_string());
            }
        }
    }
    out
}

/// The real `kura serve` on `addr` over `root`; returns the child and `host:port`.
pub fn spawn_server(root: &Path, addr: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--workers", "2", "--addr", addr, "--root"])
        .arg(root)
        .env("KURA_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kura serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = line
        .trim()
        .strip_prefix("kura listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, host)
}

/// `host:port` of a server's base URL `http://host:port`.
pub fn host_of(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// A path as a command argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A layout holding one image with a gzipped layer (3 MiB, so it is sent in several chunks of
/// 1 MiB) and an uncompressed one, named `v1`; returns the layout and the image's descriptor.
pub fn single_image(dir: &Path) -> (Layout, Value) {
    let layout = Layout::new(dir);
    let big = noise(3 << 20, 1);
    let small = noise(100_000, 2);
    let desc = layout.image(
        "amd64",
        &[
            (&[("etc/hello", b"hello\n"), ("bin/tool", &big)], true),
            (&[("data/x", &small)], false),
        ],
    );
    layout.tag(&desc, "v1");
    (layout, desc)
}

/// A layout holding an index over an amd64 and an arm64 image sharing a layer, named `v2`.
pub fn multi_platform(dir: &Path) -> (Layout, Value, Vec<Value>) {
    let layout = Layout::new(dir);
    let shared = noise(200_000, 3);
    let amd = layout.image(
        "amd64",
        &[
            (&[("lib/shared", &shared)], true),
            (&[("bin/app", b"amd64 app")], true),
        ],
    );
    let arm = layout.image(
        "arm64",
        &[
            (&[("lib/shared", &shared)], true),
            (&[("bin/app", b"arm64 app")], true),
        ],
    );
    let index = layout.index(&[amd.clone(), arm.clone()]);
    layout.tag(&index, "v2");
    (layout, index, vec![amd, arm])
}
