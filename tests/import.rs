//! `kura import` from a CNCF Distribution filesystem store: one written by Distribution itself
//! (Debian's `docker-registry` 2.8, images pushed with skopeo), and stores built by hand path
//! by path (Distribution's `registry/storage/paths.go`, see `import_support`) for the broken
//! and interrupted cases. Every imported image is pulled back with skopeo.

mod common;
mod import_support;
mod replication_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::layout::{blobs, tagged};
use common::spawn_kura_guarded;
use import_support::*;
use replication_support::{manifest_digest, referrers, spawn_distribution, tags};
use serde_json::Value;

/// Pulls `repo:tag` (every platform) from kura at `base` with skopeo into `out`; checks that
/// the tag names `want` and that every blob pulled is the source layout's, byte for byte.
fn pull_and_compare(base: &str, repo: &str, tag: &str, want: &Value, src: &Path, out: &Path) {
    let host = base.trim_start_matches("http://");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{host}/{repo}:{tag}"),
        &format!("oci:{}:{tag}", out.display()),
    ]);
    assert_eq!(tagged(out, tag)["digest"], want["digest"], "{repo}:{tag}");
    let (source, pulled) = (blobs(src), blobs(out));
    for (d, data) in &pulled {
        assert!(
            source.get(d) == Some(data),
            "{repo}:{tag}: blob {d} is not the source's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_store_imports_and_every_image_pulls_with_the_same_digests() {
    let (dd, kd, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Two platforms of one image and an image of another repository sharing a layer.
    let mut oci = OciDir::new(&work.path().join("src"));
    let shared = tar_of("shared.txt", &b"shared base layer ".repeat(400));
    let layer = kura::digest::Digest::sha256_of(&shared);
    let amd = oci.image("amd64", &[shared.clone(), tar_of("amd", b"amd64 only")]);
    let arm = oci.image("arm64", &[tar_of("arm", b"arm64 only")]);
    let index = oci.index(&[("amd64", amd.clone()), ("arm64", arm.clone())]);
    let base = oci.image("amd64", &[shared, tar_of("tool", b"the tool")]);
    oci.tag("v1", &index);
    oci.tag("base", &base);

    let (mut dist, d) = spawn_distribution(dd.path()).await;
    let host = d.trim_start_matches("http://");
    for (tag, dest) in [
        ("v1", "team/app:v1"),
        ("v1", "team/app:stable"),
        ("base", "team/base:1.0"),
    ] {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", oci.dir.display()),
            &format!("docker://{host}/{dest}"),
        ]);
    }
    // A signature whose subject is the index (Distribution 2.8 stores it; kura derives the
    // referrer from its `subject`).
    let index_digest = index["digest"].as_str().unwrap();
    let sig = push_signature(&d, "team/app", &index).await;
    assert!(manifest_digest(&d, "team/app", "v1").await.is_some());
    dist.kill();
    let source = dd.path().join("data");
    let root = kd.path().join("kura");
    let root_arg = root.to_str().unwrap();

    let (ok, plan, err) = import(&source, &["--dry-run"]);
    assert!(ok, "dry run: {plan}\n{err}");
    assert!(!root.exists(), "a dry run writes nothing");
    // Manifests: the index, its two children, the base image and the signature.
    assert_eq!(plan["manifests_new"], 5, "{plan}");
    assert_eq!(plan["referrers_new"], 1, "{plan}");
    assert_eq!(plan["tags_new"], 3, "{plan}");

    let (ok, report, err) = import(&source, &["--root", root_arg]);
    assert!(ok, "import: {report}\n{err}");
    for k in [
        "manifests_new",
        "referrers_new",
        "tags_new",
        "blobs_new",
        "links_new",
        "bytes_new",
    ] {
        assert_eq!(
            report[k], plan[k],
            "{k}: the dry run said what the import did\n{report}"
        );
    }
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    // Same filesystem: blobs are hard links to Distribution's files, not copies.
    assert_eq!(report["hard_linked"], report["blobs_new"], "{report}");
    assert_eq!(report["copied"], 0);
    let dist_file = DistTree {
        root: source.clone(),
    }
    .blob_path(&layer);
    let kura_file = root.join("blobs/sha256").join(layer.hex());
    assert_eq!(
        std::fs::metadata(&dist_file).unwrap().ino(),
        std::fs::metadata(&kura_file).unwrap().ino()
    );
    assert_fsck_clean(&root);

    let (ok, again, err) = import(&source, &["--root", root_arg]);
    assert!(ok, "second import: {again}\n{err}");
    assert_eq!(new_items(&again), 0, "a second import is a no-op: {again}");
    assert!(again["unchanged"].as_u64().unwrap() > 0);
    assert_fsck_clean(&root);

    let (_kura, k) = spawn_kura_guarded(&root, &[]);
    let out = work.path().join("out");
    pull_and_compare(&k, "team/app", "v1", &index, &oci.dir, &out);
    pull_and_compare(&k, "team/app", "stable", &index, &oci.dir, &out);
    pull_and_compare(&k, "team/base", "1.0", &base, &oci.dir, &out);
    assert_eq!(tags(&k, "team/app").await, ["stable", "v1"]);
    assert_eq!(referrers(&k, "team/app", index_digest).await, [sig]);
    for child in [&amd, &arm] {
        let c = child["digest"].as_str().unwrap();
        assert_eq!(manifest_digest(&k, "team/app", c).await.as_deref(), Some(c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_links_distributions_garbage_collection_leaves_are_reported_and_the_rest_imports() {
    let (dd, kd, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut oci = OciDir::new(&work.path().join("src"));
    let keep = oci.image("amd64", &[tar_of("keep", b"kept layer")]);
    let drop = oci.image("amd64", &[tar_of("drop", b"dropped layer")]);
    oci.tag("keep", &keep);
    oci.tag("drop", &drop);
    let (mut dist, d) = spawn_distribution(dd.path()).await;
    for tag in ["keep", "drop"] {
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", oci.dir.display()),
            &format!(
                "docker://{}/team/app:{tag}",
                d.trim_start_matches("http://")
            ),
        ]);
    }
    let dropped = drop["digest"].as_str().unwrap();
    let r = reqwest::Client::new()
        .delete(format!("{d}/v2/team/app/manifests/{dropped}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    dist.kill();
    // Distribution's own collector: it deletes the blobs, not the repository's layer links.
    let gc = std::process::Command::new("docker-registry")
        .arg("garbage-collect")
        .arg(dd.path().join("config.yml"))
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let source = dd.path().join("data");
    let dropped: kura::digest::Digest = dropped.parse().unwrap();
    assert!(
        !DistTree {
            root: source.clone()
        }
        .blob_path(&dropped)
        .exists()
    );

    let (ok, plan, err) = import(&source, &["--dry-run"]);
    assert!(ok, "links to nothing are warnings: {plan}\n{err}");
    let problems = plan["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{plan}");
    assert!(problems.iter().all(|p| p["kind"] == "dangling"), "{plan}");
    assert!(err.contains("warning"), "{err}");
    let root = kd.path().join("kura");
    let (ok, report, err) = import(&source, &["--root", root.to_str().unwrap()]);
    assert!(ok, "{report}\n{err}");
    assert_eq!(report["problems"], plan["problems"]);
    assert_eq!(report["manifests_new"], 1, "{report}");
    assert_fsck_clean(&root);
    let (_kura, k) = spawn_kura_guarded(&root, &[]);
    assert_eq!(tags(&k, "team/app").await, ["keep"]);
    pull_and_compare(
        &k,
        "team/app",
        "keep",
        &keep,
        &oci.dir,
        &work.path().join("out"),
    );
}
