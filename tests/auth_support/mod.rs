//! Support for the authentication tests: htpasswd files, in-process servers with auth and
//! TLS, a test CA, OCI layouts for skopeo, and skopeo/oci-client helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use kura::auth::{Auth, AuthConfig};
use kura::digest::Digest;
use kura::registry::Registry;
use kura::server::ServerOptions;
use serde_json::{Value, json};

/// Users of the test htpasswd file and their passwords.
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("dave", "dave-pw"),
];

/// The access rules the tests use: alice may do everything (and is admin), bob (group devs)
/// pulls and pushes `team/*`, carol only pulls `team/*`, dave has no rule.
pub const RULES: &str = r#"
[groups]
devs = ["bob"]

[[rules]]
users = ["alice"]
repositories = ["*"]
actions = ["*", "admin"]

[[rules]]
groups = ["devs"]
repositories = ["team/*"]
actions = ["pull", "push"]

[[rules]]
users = ["carol"]
repositories = ["team/*"]
actions = ["pull"]
"#;

/// The password of `user`.
pub fn pw(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).expect("test user").1
}

/// Writes an htpasswd file of `users` (user, password) with `$2y$` bcrypt entries, replacing
/// the old file in one rename (as editors and `htpasswd` do).
pub fn write_users(path: &Path, users: &[(&str, &str)]) {
    let mut text = String::new();
    for (u, p) in users {
        let h = bcrypt::hash(p, 4).unwrap().replacen("$2b$", "$2y$", 1);
        text.push_str(&format!("{u}:{h}\n"));
    }
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes an htpasswd file with `$2y$` bcrypt entries (as `htpasswd -B` writes them).
pub fn write_htpasswd(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (u, p) in USERS {
        let h = bcrypt::hash(p, 4).unwrap().replacen("$2b$", "$2y$", 1);
        text.push_str(&format!("{u}:{h}\n"));
    }
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).unwrap();
    path
}

/// An `[auth]` configuration: the test htpasswd file, `RULES` and `extra` TOML keys (written
/// before the rules, so plain keys and `[token]` tables both fit).
pub fn auth_config(dir: &Path, extra: &str) -> (AuthConfig, PathBuf) {
    let htpasswd = write_htpasswd(dir);
    let text = format!(
        "htpasswd = {:?}\n{extra}\n{RULES}",
        htpasswd.display().to_string()
    );
    let file = dir.join("auth.toml");
    std::fs::write(&file, &text).unwrap();
    let cfg: AuthConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    (cfg, file)
}

/// A kura server with authentication (and maybe TLS) on 127.0.0.1:<ephemeral>.
pub struct AuthServer {
    pub addr: SocketAddr,
    pub base: String,
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

impl AuthServer {
    /// Starts a server with `auth` and optional `tls`; call inside a multi-threaded runtime.
    pub async fn start(auth: &AuthConfig, tls: Option<rustls::ServerConfig>) -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let https = tls.is_some();
        let opts = ServerOptions {
            workers: Some(2),
            auth: Auth::from_config(auth).unwrap(),
            tls,
            ..ServerOptions::default()
        };
        let (server, addr) =
            kura::server::bind_with(registry.clone(), "127.0.0.1:0", &opts).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        let scheme = if https { "https" } else { "http" };
        AuthServer {
            addr,
            base: format!("{scheme}://{addr}"),
            registry,
            dir,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        std::mem::drop(self.handle.stop(false));
    }
}

/// A plain HTTP client with a timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Pushes `data` as a blob of `repo` (monolithic POST) with `auth` as the Authorization header
/// (none when empty).
pub async fn push_blob(base: &str, repo: &str, data: &[u8], auth: &str) -> reqwest::Response {
    let d = Digest::sha256_of(data);
    let mut req = http().post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"));
    if !auth.is_empty() {
        req = req.header("Authorization", auth);
    }
    req.body(data.to_vec()).send().await.unwrap()
}

/// Pushes a one-layer image `repo:tag` with `auth`; returns the manifest digest.
pub async fn push_image(base: &str, repo: &str, tag: &str, auth: &str) -> Digest {
    let config = format!("{{\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}");
    let layer = format!("layer of {repo}:{tag}");
    for b in [config.as_bytes(), layer.as_bytes()] {
        let r = push_blob(base, repo, b, auth).await;
        assert_eq!(r.status(), 201, "blob push to {repo}: {:?}", r.text().await);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(config.as_bytes()).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::sha256_of(layer.as_bytes()).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let r = http()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Authorization", auth)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "manifest push {repo}:{tag}: {:?}",
        r.text().await
    );
    Digest::sha256_of(&manifest)
}

/// `Basic <base64(user:password)>`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The Basic header of a test user.
pub fn basic_of(user: &str) -> String {
    basic(user, pw(user))
}

/// The first error code of an OCI error body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The repositories `_catalog` lists for the Authorization header `auth`.
pub async fn catalog(base: &str, auth: &str) -> Vec<String> {
    let r = http()
        .get(format!("{base}/v2/_catalog"))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    serde_json::from_value(v["repositories"].clone()).unwrap()
}

/// The result of a skopeo run.
pub struct Out {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `skopeo --insecure-policy <args>` (bounded to 120 s per command).
pub async fn skopeo(args: &[&str]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("--command-timeout=120s")
            .args(&args)
            .output()
    })
    .await
    .unwrap()
    .expect("the skopeo binary is required (apt-get install skopeo)");
    Out {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes a one-image OCI layout at `dir` tagged `v1`; returns the manifest digest.
pub fn oci_layout(dir: &Path, note: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::sha256_of(data).to_string();
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        (d, data.len())
    };
    let layer = tar_with_file("note.txt", note.as_bytes());
    let (ld, ln) = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [ld]},
        "config": {"Labels": {"note": note}},
    }))
    .unwrap();
    let (cd, cn) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ln}],
    }))
    .unwrap();
    let (md, mn) = put(&manifest);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": md, "size": mn,
                           "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

/// A one-file ustar archive.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// A test certificate authority and a server certificate for 127.0.0.1 and localhost.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// Generates a CA and a server certificate it signs.
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kura test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `cert.pem`, `key.pem` and `ca/ca.crt` (a skopeo cert dir) under `dir`.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key, ca_dir) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::create_dir_all(&ca_dir).unwrap();
        std::fs::write(ca_dir.join("ca.crt"), &self.ca_pem).unwrap();
        (cert, key, ca_dir)
    }

    /// The rustls server configuration kura builds from the written files.
    pub fn server_config(&self, dir: &Path) -> rustls::ServerConfig {
        let (cert, key, _) = self.write(dir);
        kura::auth::tls::server_config(&cert, &key).unwrap()
    }

    /// An HTTPS client trusting only this CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    }
}

/// Decodes the claims of a JWT without verifying it.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Kills a spawned `kura serve` when the test ends, passing or failing.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
