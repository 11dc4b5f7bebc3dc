//! Real clients pulling through the pull-through cache: skopeo and podman configured with a
//! `registries.conf` mirror of docker.io (they ask `<mirror>/docker.io/library/app`), skopeo
//! pulling `<mirror>/docker.io/library/app` directly, and containerd's `ctr` with a
//! `hosts.toml` mirror (it asks `/v2/library/app/...?ns=docker.io`). Each proves the pull went
//! through the mirror: the image arrives with its digest, the mirror lists it, and the upstream
//! saw the mirror's requests. A test whose binary is missing says so and does nothing.

mod client_support;
mod common;
mod mirror_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use client_support::proxy::Options;
use client_support::{p, reachable, run_command};
use common::KillOnDrop;
use mirror_support::images::Image;
use mirror_support::*;

const REPO: &str = "docker.io/library/app";

/// Whether `bin` is installed; prints why the test is skipped when not.
fn have(bin: &str) -> bool {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(bin).is_file());
    if !found {
        eprintln!("SKIPPED: `{bin}` is not installed (.ci/run installs it)");
    }
    found
}

/// An upstream holding a runnable `library/app:v1`, the proxy, a docker.io mirror of it.
async fn with_image(label: &str) -> (Setup, Image) {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::runnable(
        label,
        &[("etc/kura-mirror", label.as_bytes()), ("bin/x", b"x")],
    );
    s.up.push(&img, "library/app", "v1").await;
    (s, img)
}

/// The mirror cached the image and fetched it from the upstream.
async fn assert_pulled_through(s: &Setup, img: &Image) {
    assert!(catalog(&s.mirror.base).await.contains(&REPO.to_string()));
    assert!(!manifest_requests(&s.proxy, "library/app").is_empty());
    for (d, _) in img.layers() {
        assert_eq!(
            blob_gets(&s.proxy, d).len(),
            1,
            "the mirror fetched layer {d}"
        );
    }
    let misses = metric(
        &s.mirror.base,
        "kura_mirror_misses_total",
        &[("mirror", "docker.io")],
    )
    .await;
    assert!(misses >= 2.0, "misses {misses}");
    assert_fsck_clean(&s.mirror.base).await;
}

/// A `registries.conf` mirroring docker.io through `mirror` (plain HTTP).
fn registries_conf(dir: &Path, mirror: &Mirror) -> std::path::PathBuf {
    let path = dir.join("registries.conf");
    let text = format!(
        "[[registry]]\nlocation = \"docker.io\"\n\n\
         [[registry.mirror]]\nlocation = \"{}/docker.io\"\ninsecure = true\n",
        mirror.host()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The layout `dir` holds `img` under `v1`, digest and every blob.
fn assert_layout_holds(dir: &Path, img: &Image) {
    let entry = client_support::entry(dir, Some("v1"));
    assert_eq!(entry["digest"], img.digest.to_string());
    let got = reachable(dir, &img.digest.to_string());
    for (d, _) in &img.blobs {
        assert!(got.contains(&d.to_string()), "{d} pulled");
    }
}

async fn ok(cmd: Command) -> client_support::Out {
    let shown = format!("{cmd:?}");
    let out = run_command(cmd).await;
    assert!(out.success, "{shown}:\n{}\n{}", out.stdout, out.stderr);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_a_registries_conf_mirror_pulls_docker_io_through_kura() {
    if !have("skopeo") {
        return;
    }
    let (s, img) = with_image("skopeo").await;
    let tmp = tempfile::tempdir().unwrap();
    let conf = registries_conf(tmp.path(), &s.mirror);
    let dest = tmp.path().join("layout");
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "--registries-conf",
        p(&conf),
        "copy",
        "--preserve-digests",
    ])
    .arg("docker://docker.io/library/app:v1")
    .arg(format!("oci:{}:v1", p(&dest)));
    ok(cmd).await;
    assert_layout_holds(&dest, &img);
    assert_pulled_through(&s, &img).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_mirror_docker_io_names_directly() {
    if !have("skopeo") {
        return;
    }
    let (s, img) = with_image("direct").await;
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("layout");
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
    ])
    .arg(format!("docker://{}/{REPO}:v1", s.mirror.host()))
    .arg(format!("oci:{}:v1", p(&dest)));
    ok(cmd).await;
    assert_layout_holds(&dest, &img);
    assert_pulled_through(&s, &img).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_with_a_registries_conf_mirror_pulls_docker_io_through_kura() {
    if !have("podman") {
        return;
    }
    let (s, img) = with_image("podman").await;
    let tmp = tempfile::tempdir().unwrap();
    let conf = registries_conf(tmp.path(), &s.mirror);
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_REGISTRIES_CONF", &conf)
            .arg("--root")
            .arg(tmp.path().join("storage"))
            .arg("--runroot")
            .arg(tmp.path().join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(args);
        cmd
    };
    ok(podman(&["pull", "docker.io/library/app:v1"])).await;
    let out = ok(podman(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Digest}}",
    ]))
    .await;
    assert!(
        out.stdout.contains(&format!("{REPO} {}", img.digest)),
        "podman images: {}",
        out.stdout
    );
    assert_pulled_through(&s, &img).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_with_a_hosts_toml_mirror_pulls_through_kura_with_ns() {
    if !have("containerd") || !have("ctr") {
        return;
    }
    let (s, img) = with_image("containerd").await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sock = d.join("containerd.sock");
    std::fs::write(
        d.join("config.toml"),
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\naddress = {:?}\n",
            p(&d.join("root")),
            p(&d.join("state")),
            p(&sock)
        ),
    )
    .unwrap();
    // What the README tells containerd users to write.
    std::fs::create_dir_all(d.join("certs.d/docker.io")).unwrap();
    std::fs::write(
        d.join("certs.d/docker.io/hosts.toml"),
        format!(
            "server = \"https://registry-1.docker.io\"\n\n\
             [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            s.mirror.host()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("containerd.log")).unwrap();
    let _containerd = KillOnDrop(
        Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd"),
    );
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "containerd did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ctr = |args: &[&str]| {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a").arg(&sock).args(args);
        cmd
    };
    ok(ctr(&[
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        p(&d.join("certs.d")),
        "docker.io/library/app:v1",
    ]))
    .await;
    let out = ok(ctr(&["images", "ls"])).await;
    assert!(
        out.stdout.contains(&img.digest.to_string()),
        "ctr images ls: {}",
        out.stdout
    );
    assert_pulled_through(&s, &img).await;
}
