//! The web interface end to end: a real kura process with htpasswd users, a two-platform
//! image pushed by skopeo, a signature-like referrer pushed over HTTP, then headless Chromium
//! driven by Playwright (`tests/ui/e2e.mjs`) browsing (JavaScript off), signing in and out,
//! deleting a tag and a manifest with confirmation, a GC dry run and run, and checking that a
//! pull-only user and a request without the CSRF token are refused. Screenshots of every page at desktop and phone widths go to
//! `target/ui-screenshots/` (not committed).
//!
//! Needs `skopeo`, `node`, Debian's `chromium` (/usr/bin/chromium) and `npm install` in
//! `tests/ui/` (playwright-core). Without node, chromium or playwright-core the test prints
//! why and skips (`.ci/run` installs them); without skopeo it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kura::digest::Digest;
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const SIG_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Why the browser test cannot run here, if it cannot.
fn missing_tools(ui_dir: &Path) -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is missing (apt-get install chromium)".into());
    }
    if !ui_dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed (cd {} && npm install)",
            ui_dir.display()
        ));
    }
    None
}

/// An OCI image layout written blob by blob.
struct Layout(PathBuf);

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout(dir.to_path_buf())
    }

    fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let d = Digest::sha256_of(data);
        std::fs::write(self.0.join("blobs/sha256").join(d.hex()), data).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()})
    }

    /// An image for `arch` with uncompressed tar layers of the given sizes.
    fn image(&self, arch: &str, layer_sizes: &[usize]) -> Value {
        let layers: Vec<Value> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let data: Vec<u8> = (0..*n).map(|j| (j * 7 + i + arch.len()) as u8).collect();
                self.blob(OCI_LAYER_TAR, &data)
            })
            .collect();
        let diff_ids: Vec<Value> = layers.iter().map(|l| l["digest"].clone()).collect();
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin", format!("ARCH={arch}")], "Entrypoint": ["/bin/app"],
                       "Labels": {"org.example.team": "kura-ui"}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": format!("COPY app-{arch} /bin/app")}],
        });
        let config = self.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
            "layers": layers, "annotations": {"org.opencontainers.image.title": format!("app {arch}")}});
        let mut d = self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    }

    fn write_index(&self, tagged: &[(&str, Value)]) {
        let manifests: Vec<Value> = tagged
            .iter()
            .map(|(tag, d)| {
                let mut d = d.clone();
                d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        std::fs::write(
            self.0.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

fn skopeo_copy(src: &str, dest: &str, creds: &str) {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .args(["--dest-creds", creds, src, dest])
        .output()
        .expect("skopeo must be installed (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes a signature-like artifact whose subject is `subject` (by digest, over HTTP).
async fn push_referrer(http: &reqwest::Client, base: &str, subject: &Value) -> String {
    let auth = ("admin", Some("admin-pw"));
    let mut descs = Vec::new();
    for (mt, data) in [
        ("application/vnd.oci.empty.v1+json", b"{}".to_vec()),
        (
            "application/vnd.dev.cosign.simplesigning.v1+json",
            br#"{"critical":{"type":"cosign container image signature"}}"#.to_vec(),
        ),
    ] {
        let d = Digest::sha256_of(&data);
        let r = http
            .post(format!("{base}/v2/team/app/blobs/uploads/?digest={d}"))
            .basic_auth(auth.0, auth.1)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "blob push: {}", r.text().await.unwrap());
        descs.push(json!({"mediaType": mt, "digest": d.to_string(), "size": data.len()}));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG_TYPE,
        "config": descs[0], "layers": [descs[1]],
        "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]},
        "annotations": {"dev.sigstore.cosign/signer": "kura-e2e"},
    }))
    .unwrap();
    let d = Digest::sha256_of(&manifest);
    let r = http
        .put(format!("{base}/v2/team/app/manifests/{d}"))
        .basic_auth(auth.0, auth.1)
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "referrer push: {}",
        r.text().await.unwrap()
    );
    d.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_browses_deletes_with_confirmation_and_enforces_access_in_chromium() {
    let ui_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    if let Some(why) = missing_tools(&ui_dir) {
        eprintln!("SKIPPED web UI end-to-end test: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    let mut lines = String::new();
    for (u, p) in [("admin", "admin-pw"), ("reader", "reader-pw")] {
        lines.push_str(&format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()));
    }
    std::fs::write(&htpasswd, lines).unwrap();
    let config = tmp.path().join("kura.toml");
    std::fs::write(
        &config,
        format!(
            r#"[auth]
htpasswd = "{}"
[[auth.rules]]
users = ["admin"]
repositories = ["*"]
actions = ["*", "admin"]
[[auth.rules]]
users = ["reader"]
repositories = ["team/*"]
actions = ["pull"]
"#,
            htpasswd.display()
        ),
    )
    .unwrap();
    let (_kura, base) = common::spawn_kura_guarded(
        &tmp.path().join("root"),
        &["--config", config.to_str().unwrap()],
    );
    let host = base.trim_start_matches("http://").to_string();

    // A two-platform index tagged v1, and the amd64 image alone tagged old.
    let layout = Layout::new(&tmp.path().join("layout"));
    let amd = layout.image("amd64", &[3000, 150_000]);
    let arm = layout.image("arm64", &[2000]);
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]}),
    )
    .unwrap();
    let index_desc = layout.blob(OCI_INDEX, &index);
    layout.write_index(&[("v1", index_desc.clone()), ("old", amd.clone())]);
    let src = |tag: &str| format!("oci:{}:{tag}", tmp.path().join("layout").display());
    for tag in ["v1", "old"] {
        let dest = format!("docker://{host}/team/app:{tag}");
        skopeo_copy(&src(tag), &dest, "admin:admin-pw");
    }
    let http = reqwest::Client::new();
    let sig = push_referrer(&http, &base, &index_desc).await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let expect = json!({
        "admin": ["admin", "admin-pw"], "reader": ["reader", "reader-pw"],
        "repo": "team/app", "index": index_desc["digest"], "amd64": amd["digest"],
        "platforms": ["linux/amd64", "linux/arm64"], "layerSizes": [3000, 150_000],
        "signature": sig, "sigType": SIG_TYPE, "deleteTag": "old", "keepTag": "v1",
    });
    let out = Command::new("node")
        .arg(ui_dir.join("e2e.mjs"))
        .arg(&base)
        .arg(&shots)
        .env("KURA_UI_E2E", expect.to_string())
        .output()
        .expect("run node");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "e2e.mjs failed:\n{log}");

    // The UI's delete is the API's: the tag is gone, the other stays.
    let tags: Value = http
        .get(format!("{base}/v2/team/app/tags/list"))
        .basic_auth("admin", Some("admin-pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["v1"]), "{tags}");
    let r = http
        .get(format!("{base}/v2/team/app/manifests/old"))
        .basic_auth("admin", Some("admin-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for name in ["repos", "repo", "index", "image", "ops", "confirm", "login"] {
        for width in ["desktop", "phone"] {
            let f = shots.join(format!("{name}-{width}.png"));
            assert!(
                std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
                "{} missing",
                f.display()
            );
        }
    }
}
