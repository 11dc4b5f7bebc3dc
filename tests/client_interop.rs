//! Interoperability of the `kura` client with skopeo and umoci through a kura server: what
//! `kura push` uploads, skopeo copies out with the same digests; what skopeo pushes,
//! `kura pull` writes as a layout that skopeo and umoci read.
//!
//! These tests need `skopeo` and `umoci` on PATH (`apt-get install skopeo umoci`).

mod client_support;
mod common;

use client_support::{
    Client, entry, host_of, multi_platform, p, reachable, run_command, single_image, skopeo,
};
use common::TestServer;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_out_an_image_pushed_by_kura() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let c = Client::new();
    c.ok(&["push", "-q", p(&src.dir), &format!("{host}/team/app:v1")])
        .await;

    let out = tmp.path().join("out");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/app:v1"),
        &format!("oci:{}:v1", p(&out)),
    ])
    .await;
    assert_eq!(entry(&out, Some("v1"))["digest"], digest);
    assert_eq!(reachable(&out, digest), reachable(&src.dir, digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_every_platform_of_an_index_pushed_by_kura() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, index, _) = multi_platform(&tmp.path().join("src"));
    let digest = index["digest"].as_str().unwrap();
    let c = Client::new();
    c.ok(&["push", "-q", p(&src.dir), &format!("{host}/team/multi:v2")])
        .await;

    let out = tmp.path().join("out");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/multi:v2"),
        &format!("oci:{}:v2", p(&out)),
    ])
    .await;
    assert_eq!(entry(&out, Some("v2"))["digest"], digest);
    assert_eq!(reachable(&out, digest), reachable(&src.dir, digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_pulls_an_image_pushed_by_skopeo_into_a_layout_skopeo_and_umoci_read() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", p(&src.dir)),
        &format!("docker://{host}/team/sk:v1"),
    ])
    .await;

    let c = Client::new();
    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &format!("{host}/team/sk:v1"), p(&dest)])
        .await;
    assert_eq!(entry(&dest, Some("v1"))["digest"], digest);
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));

    // skopeo reads the layout kura wrote...
    let out = skopeo(&["inspect", &format!("oci:{}:v1", p(&dest))]).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], digest);
    assert_eq!(v["Architecture"], "amd64");

    // ...and so does umoci, down to the files of the layers.
    let bundle = tmp.path().join("bundle");
    let mut cmd = std::process::Command::new("umoci");
    cmd.args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", p(&dest)))
        .arg(&bundle);
    let out = run_command(cmd).await;
    assert!(out.success, "umoci unpack: {}\n{}", out.stdout, out.stderr);
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/hello")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        std::fs::metadata(bundle.join("rootfs/data/x"))
            .unwrap()
            .len(),
        100_000
    );
}
