//! End-to-end interoperability with `umoci`: an image built by umoci (unpack, write files,
//! repack, insert, whiteout, config) is pushed into kura with `skopeo --preserve-digests`,
//! copied back into a second layout and unpacked by umoci again; the files, the runtime
//! config and every digest must survive.
//!
//! These tests need the `umoci` and `skopeo` binaries on PATH (Debian/Ubuntu:
//! `apt-get install umoci skopeo`). They fail, rather than skip, when either is missing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use common::layout::{assert_same_blobs, blob_of, tagged};
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Runs `program <args>` on a blocking thread; returns stdout, panicking with stderr on failure
/// and with an install hint when the binary is missing.
async fn run(program: &'static str, install: &'static str, args: Vec<String>) -> Vec<u8> {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || Command::new(program).args(&args).output())
        .await
        .expect("command task");
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `{program}` binary is not on PATH; this end-to-end test requires it \
             (Debian/Ubuntu: `{install}`)"
        ),
        Err(e) => panic!("running {program} {shown}: {e}"),
    };
    assert!(
        out.status.success(),
        "{program} {shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn umoci(args: &[&str]) -> Vec<u8> {
    run(
        "umoci",
        "apt-get install umoci",
        args.iter().map(|a| a.to_string()).collect(),
    )
    .await
}

async fn skopeo(args: &[&str]) -> Vec<u8> {
    let mut all = vec![
        "--insecure-policy".to_string(),
        "--command-timeout=120s".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    run("skopeo", "apt-get install skopeo", all).await
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

fn read_file(root: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{}/{rel}: {e}", root.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn umoci_built_image_round_trips_through_kura_and_unpacks() {
    umoci_built_image_round_trips_through_kura_and_unpacks_with(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn umoci_built_image_round_trips_through_kura_and_unpacks_on_s3() {
    umoci_built_image_round_trips_through_kura_and_unpacks_with(
        TestServer::start_on(&common::s3::s3_config(
            "umoci_built_image_round_trips_through_ku",
        ))
        .await,
    )
    .await;
}

async fn umoci_built_image_round_trips_through_kura_and_unpacks_with(s: TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let layout: PathBuf = tmp.path().join("layout");
    let layout2: PathBuf = tmp.path().join("layout2");
    let bundle = tmp.path().join("bundle");
    let bundle2 = tmp.path().join("bundle2");
    let image = format!("{}:v1", path(&layout));
    let image2 = format!("{}:v1", path(&layout2));

    // Build: an empty image, then a first layer written through an unpacked bundle.
    umoci(&["init", "--layout", &path(&layout)]).await;
    umoci(&["new", "--image", &image]).await;
    umoci(&["unpack", "--rootless", "--image", &image, &path(&bundle)]).await;
    let rootfs = bundle.join("rootfs");
    let greeting = b"hello from a umoci-built image in kura\n".to_vec();
    let script = b"#!/bin/sh\necho kura umoci e2e \"$@\"\n".to_vec();
    let data = common::s3::data(300_000, 1);
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("opt/app/share")).unwrap();
    std::fs::write(rootfs.join("etc/greeting"), &greeting).unwrap();
    std::fs::write(rootfs.join("etc/obsolete"), b"removed by a later layer\n").unwrap();
    std::fs::write(rootfs.join("opt/app/run"), &script).unwrap();
    std::fs::set_permissions(
        rootfs.join("opt/app/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(rootfs.join("opt/app/share/data.bin"), &data).unwrap();
    std::os::unix::fs::symlink("run", rootfs.join("opt/app/current")).unwrap();
    umoci(&["repack", "--image", &image, &path(&bundle)]).await;

    // A second layer by `insert`, a third that whites out a file of the first.
    let extra = b"inserted by umoci insert\n".to_vec();
    let extra_src = tmp.path().join("extra.txt");
    std::fs::write(&extra_src, &extra).unwrap();
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &image,
        &path(&extra_src),
        "/opt/app/extra.txt",
    ])
    .await;
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &image,
        "--whiteout",
        "/etc/obsolete",
    ])
    .await;
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/opt/app/run",
        "--config.cmd",
        "serve",
        "--config.env",
        "KURA_E2E=umoci",
        "--config.workingdir",
        "/opt/app",
        "--config.label",
        "kura.test=umoci",
        "--manifest.annotation",
        "kura.test.manifest=umoci",
    ])
    .await;
    // Drop the superseded manifests and configs so both layouts can be compared blob for blob.
    umoci(&["gc", "--layout", &path(&layout)]).await;

    let desc = tagged(&layout, "v1");
    assert_eq!(desc["mediaType"], OCI_MANIFEST);
    let manifest_bytes = blob_of(&layout, &desc);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let layers = manifest["layers"].as_array().expect("layers").clone();
    assert_eq!(layers.len(), 3, "repack + insert + whiteout: {manifest}");
    assert_eq!(manifest["annotations"]["kura.test.manifest"], "umoci");

    // Push to kura, keeping umoci's digests.
    let remote = format!("docker://{}/umoci/app:v1", s.addr);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{image}"),
        &remote,
    ])
    .await;

    // kura serves the exact manifest under the tag, and every blob it references.
    let http = common::client();
    let r = http
        .get(s.url("/v2/umoci/app/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
    assert_eq!(
        r.headers()["docker-content-digest"],
        desc["digest"].as_str().unwrap()
    );
    assert!(
        r.bytes().await.unwrap() == manifest_bytes,
        "served manifest differs from umoci's"
    );
    for blob in layers.iter().chain([&manifest["config"]]) {
        let d = blob["digest"].as_str().unwrap();
        let r = http
            .head(s.url(&format!("/v2/umoci/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "HEAD blob {d}");
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            blob["size"].to_string(),
            "size of blob {d}"
        );
    }
    let tags: Value = http
        .get(s.url("/v2/umoci/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // Pull back into a fresh layout.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{image2}"),
    ])
    .await;
    let back = tagged(&layout2, "v1");
    assert_eq!(back["digest"], desc["digest"], "manifest digest");
    assert_eq!(back["size"], desc["size"]);
    assert!(blob_of(&layout2, &back) == manifest_bytes, "manifest bytes");
    assert_same_blobs(&layout, &layout2);

    // umoci unpacks the pulled image to the same filesystem and runtime config.
    umoci(&["unpack", "--rootless", "--image", &image2, &path(&bundle2)]).await;
    let rootfs2 = bundle2.join("rootfs");
    assert!(
        read_file(&rootfs2, "etc/greeting") == greeting,
        "etc/greeting"
    );
    assert!(read_file(&rootfs2, "opt/app/run") == script, "opt/app/run");
    assert!(
        read_file(&rootfs2, "opt/app/share/data.bin") == data,
        "opt/app/share/data.bin"
    );
    assert!(
        read_file(&rootfs2, "opt/app/extra.txt") == extra,
        "opt/app/extra.txt"
    );
    let mode = std::fs::metadata(rootfs2.join("opt/app/run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "opt/app/run mode");
    assert_eq!(
        std::fs::read_link(rootfs2.join("opt/app/current")).unwrap(),
        Path::new("run"),
        "opt/app/current symlink"
    );
    assert!(
        !rootfs2.join("etc/obsolete").exists(),
        "the whiteout layer must hide etc/obsolete"
    );

    let runtime: Value =
        serde_json::from_slice(&read_file(&bundle2, "config.json")).expect("bundle config.json");
    let process = &runtime["process"];
    assert_eq!(
        process["args"],
        serde_json::json!(["/opt/app/run", "serve"])
    );
    assert_eq!(process["cwd"], "/opt/app");
    assert!(
        process["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "KURA_E2E=umoci"),
        "env: {}",
        process["env"]
    );
    // umoci turns the image config's labels into the bundle's annotations.
    assert_eq!(runtime["annotations"]["kura.test"], "umoci");
}
