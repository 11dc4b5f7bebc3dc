//! Support for the import tests: Distribution stores built by hand, path by path as
//! Distribution's `registry/storage/paths.go` lays them out, OCI layouts for skopeo, and
//! runs of `kura import`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kura::digest::Digest;
use serde_json::{Value, json};

pub const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A Distribution store written by hand; `root` is its `rootdirectory`.
pub struct DistTree {
    pub root: PathBuf,
}

impl DistTree {
    pub fn new(root: &Path) -> DistTree {
        std::fs::create_dir_all(root.join("docker/registry/v2/repositories")).unwrap();
        DistTree {
            root: root.to_path_buf(),
        }
    }

    /// `<root>/docker/registry/v2`: pathMapper's root `/docker/registry/` + version `v2`.
    pub fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    /// blobDataPathSpec: `v2/blobs/sha256/<first two hex>/<hex>/data`.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.v2()
            .join("blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    /// Writes `data` where blobDataPathSpec puts it; returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let p = self.blob_path(&d);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
        d
    }

    fn repo(&self, repo: &str) -> PathBuf {
        self.v2().join("repositories").join(repo)
    }

    fn write_link(path: PathBuf, d: &Digest) -> PathBuf {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, d.to_string()).unwrap();
        path
    }

    /// layerLinkPathSpec: `repositories/<name>/_layers/sha256/<hex>/link`, holding the digest.
    pub fn link_layer(&self, repo: &str, d: &Digest) -> PathBuf {
        let p = self
            .repo(repo)
            .join("_layers/sha256")
            .join(d.hex())
            .join("link");
        Self::write_link(p, d)
    }

    /// manifestRevisionLinkPathSpec: `_manifests/revisions/sha256/<hex>/link`.
    pub fn link_revision(&self, repo: &str, d: &Digest) -> PathBuf {
        let p = self
            .repo(repo)
            .join("_manifests/revisions/sha256")
            .join(d.hex());
        Self::write_link(p.join("link"), d)
    }

    /// manifestTagCurrentPathSpec `_manifests/tags/<tag>/current/link` and
    /// manifestTagIndexEntryLinkPathSpec `_manifests/tags/<tag>/index/sha256/<hex>/link`.
    pub fn tag(&self, repo: &str, tag: &str, d: &Digest) -> PathBuf {
        let t = self.repo(repo).join("_manifests/tags").join(tag);
        Self::write_link(t.join("index/sha256").join(d.hex()).join("link"), d);
        Self::write_link(t.join("current/link"), d)
    }

    /// uploadDataPathSpec/uploadStartedAtPathSpec: an upload session in progress.
    pub fn upload(&self, repo: &str, id: &str) {
        let u = self.repo(repo).join("_uploads").join(id);
        std::fs::create_dir_all(&u).unwrap();
        std::fs::write(u.join("data"), b"partial").unwrap();
        std::fs::write(u.join("startedat"), b"2026-12-01T00:00:00Z").unwrap();
    }

    /// Stores and links a manifest `body` as a revision of `repo`; returns its digest.
    pub fn manifest(&self, repo: &str, body: &Value) -> Digest {
        let d = self.put_blob(&serde_json::to_vec(body).unwrap());
        self.link_revision(repo, &d);
        d
    }

    /// A one-layer image in `repo` (blobs stored and linked as Distribution does on a push);
    /// returns (manifest, config, layer).
    pub fn image(&self, repo: &str, seed: &str) -> (Digest, Digest, Digest) {
        let config = self.put_blob(format!("{{\"seed\":\"{seed}\"}}").as_bytes());
        let layer = self.put_blob(format!("layer {seed} ").repeat(50).as_bytes());
        self.link_layer(repo, &config);
        self.link_layer(repo, &layer);
        let m = self.manifest(repo, &image_manifest(&[(CONFIG, &config, 0)], &[&layer]));
        (m, config, layer)
    }
}

/// An OCI image manifest; `config` is (media type, digest, size), `layers` are LAYER blobs
/// whose sizes do not matter to the store.
pub fn image_manifest(config: &[(&str, &Digest, usize)], layers: &[&Digest]) -> Value {
    let (mt, d, size) = config[0];
    json!({
        "schemaVersion": 2, "mediaType": IMAGE,
        "config": {"mediaType": mt, "digest": d.to_string(), "size": size},
        "layers": layers.iter().map(|l| json!({"mediaType": LAYER, "digest": l.to_string(), "size": 1})).collect::<Vec<_>>(),
    })
}

/// An OCI image layout being written, for skopeo to push.
pub struct OciDir {
    pub dir: PathBuf,
    refs: Vec<Value>,
}

impl OciDir {
    pub fn new(dir: &Path) -> OciDir {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        OciDir {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        }
    }

    /// Stores `data`; returns its descriptor.
    pub fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let d = Digest::sha256_of(data);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), data).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()})
    }

    /// An image for `arch` with the given uncompressed tar layers; returns its descriptor.
    pub fn image(&self, arch: &str, layers: &[Vec<u8>]) -> Value {
        let descs: Vec<Value> = layers.iter().map(|l| self.blob(LAYER, l)).collect();
        let diff_ids: Vec<String> = descs
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect();
        let config = json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let config = self.blob(CONFIG, &serde_json::to_vec(&config).unwrap());
        let m = json!({"schemaVersion": 2, "mediaType": IMAGE, "config": config, "layers": descs});
        self.blob(IMAGE, &serde_json::to_vec(&m).unwrap())
    }

    /// An index of `images` (descriptors with their platform added).
    pub fn index(&self, images: &[(&str, Value)]) -> Value {
        let entries: Vec<Value> = images
            .iter()
            .map(|(arch, d)| {
                let mut d = d.clone();
                d["platform"] = json!({"os": "linux", "architecture": arch});
                d
            })
            .collect();
        let i = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
        self.blob(INDEX, &serde_json::to_vec(&i).unwrap())
    }

    /// Names `desc` `tag` in `index.json`.
    pub fn tag(&mut self, tag: &str, desc: &Value) {
        let mut d = desc.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.refs.push(d);
        let index = json!({"schemaVersion": 2, "manifests": self.refs});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// An uncompressed tar holding one file `name` with `content`.
pub fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// Runs `skopeo --insecure-policy <args>`, panicking with its output on failure.
pub fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .arg("--command-timeout=120s")
        .args(args)
        .output()
        .expect("skopeo (Debian package skopeo) must be installed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `kura import <args> --json` (the source among `args`); returns (success, report,
/// stderr).
pub fn import_from(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kura"))
        .arg("import")
        .args(args)
        .arg("--json")
        .env("KURA_LOG", "warn")
        .output()
        .expect("run kura import");
    report_of(out)
}

fn report_of(out: std::process::Output) -> (bool, Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("import printed no JSON report ({e}): {stdout}\n{stderr}"));
    (out.status.success(), report, stderr)
}

/// `kura import <source> <args> --json`, not started.
pub fn import_cmd(source: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kura"));
    cmd.arg("import")
        .arg(source)
        .args(args)
        .arg("--json")
        .env("KURA_LOG", "warn");
    cmd
}

/// Runs `kura import <source> <args> --json`; returns (success, report, stderr).
pub fn import(source: &Path, args: &[&str]) -> (bool, Value, String) {
    report_of(import_cmd(source, args).output().expect("run kura import"))
}

/// The number of items of a report recorded as new.
pub fn new_items(r: &Value) -> u64 {
    [
        "blobs_new",
        "links_new",
        "manifests_new",
        "tags_new",
        "tags_moved",
    ]
    .iter()
    .map(|k| r[k].as_u64().unwrap())
    .sum()
}

/// `kura fsck --root <root>` must pass with no error.
pub fn assert_fsck_clean(root: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["fsck", "--quiet", "--root"])
        .arg(root)
        .env("KURA_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck of {}: {}\n{}",
        root.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Uploads `data` to `repo` at `base` as Distribution takes it: `POST` a session, then `PUT`
/// the bytes with `?digest=` (Distribution 2.8 has no one-request push).
pub async fn upload(base: &str, repo: &str, data: &[u8]) -> Value {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "POST upload to {base}/{repo}");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let d = Digest::sha256_of(data);
    let r = http
        .put(format!("{loc}{sep}digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "PUT upload to {base}/{repo}");
    json!({"mediaType": "application/vnd.example.signature", "digest": d.to_string(), "size": data.len()})
}

/// Pushes a signature-like artifact whose subject is `subject` by digest; returns its digest.
pub async fn push_signature(base: &str, repo: &str, subject: &Value) -> String {
    let mut empty = upload(base, repo, b"{}").await;
    empty["mediaType"] = json!("application/vnd.oci.empty.v1+json");
    let sig = upload(base, repo, b"signature bytes").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": IMAGE,
        "artifactType": "application/vnd.example.signature",
        "config": empty, "layers": [sig], "subject": subject,
    }))
    .unwrap();
    let d = Digest::sha256_of(&body).to_string();
    let r = reqwest::Client::new()
        .put(format!("{base}/v2/{repo}/manifests/{d}"))
        .header("Content-Type", IMAGE)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "signature push: {:?}", r.text().await);
    d
}
