//! `kura import` of Distribution stores built by hand, path by path as Distribution's
//! `registry/storage/paths.go` lays them out (`import_support::DistTree`): broken ones (the dry
//! run reports exactly what the import then skips, and the rest imports), an import killed
//! midway (run again, it resumes), and a store a server holds (refused).

mod common;
mod import_support;
mod replication_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::spawn_kura_guarded;
use import_support::*;
use kura::digest::Digest;
use replication_support::{manifest_digest, tags};
use serde_json::{Value, json};

const DOCKER_IMAGE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// (kind, path) of every problem of a report, sorted.
fn problems(report: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let kind = p["kind"].as_str().unwrap().to_string();
            (kind, p["path"].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    out
}

fn expect(kind: &str, path: &Path) -> (String, String) {
    (kind.to_string(), path.display().to_string())
}

async fn broken_store_case(copy: bool) {
    let (sd, kd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t = DistTree::new(sd.path());
    let (good, _, _) = t.image("good/app", "good");
    t.tag("good/app", "v1", &good);
    t.upload("good/app", "0b4d5e55-upload-in-progress");
    let (ok, _, _) = t.image("broken", "fine");
    t.tag("broken", "ok", &ok);
    // A layer link to a blob the blob store does not hold (dangling).
    let ghost = t.link_layer("broken", &Digest::sha256_of(b"never stored"));
    // A layer whose bytes changed after it was stored (bad digest), and its manifest.
    let (rotten, _, layer) = t.image("broken", "rotten");
    std::fs::write(t.blob_path(&layer), b"bit rot").unwrap();
    let layer_link = t.link_layer("broken", &layer);
    let rotten_link = t.link_revision("broken", &rotten);
    let rotten_tag = t.tag("broken", "rotten", &rotten);
    // An index naming that manifest, and a sound one.
    let child = |d: &Digest| json!({"mediaType": IMAGE, "digest": d.to_string(), "size": 1});
    let index =
        json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [child(&ok), child(&rotten)]});
    let index = t.manifest("broken", &index);
    let index_link = t.link_revision("broken", &index);
    // A tag naming a revision the repository lacks; a revision whose manifest is missing;
    // a link file holding no digest.
    let gone_tag = t.tag("broken", "gone", &Digest::sha256_of(b"no such manifest"));
    let lost = t.link_revision("broken", &Digest::sha256_of(b"lost manifest"));
    let garbage = t.link_layer("broken", &Digest::sha256_of(b"garbage"));
    std::fs::write(&garbage, "not a digest").unwrap();
    // A Docker schema2 image (imported) and a Docker schema1 manifest (kura takes none).
    let dconfig = t.put_blob(br#"{"architecture":"amd64","os":"linux"}"#);
    let dlayer = t.put_blob(b"docker layer bytes");
    t.link_layer("good/app", &dconfig);
    t.link_layer("good/app", &dlayer);
    let docker = t.manifest(
        "good/app",
        &json!({"schemaVersion": 2, "mediaType": DOCKER_IMAGE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": dconfig.to_string(), "size": 38},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": dlayer.to_string(), "size": 18}]}),
    );
    t.tag("good/app", "docker", &docker);
    let schema1 = json!({"schemaVersion": 1, "name": "broken", "tag": "old",
        "architecture": "amd64", "fsLayers": [], "history": []});
    let schema1 = t.link_revision("broken", &t.manifest("broken", &schema1));
    // A sha384 layer link (Distribution accepts sha384; kura does not).
    let hex384 = "ab".repeat(48);
    let sha384 = t
        .v2()
        .join("repositories/broken/_layers/sha384")
        .join(&hex384)
        .join("link");
    std::fs::create_dir_all(sha384.parent().unwrap()).unwrap();
    std::fs::write(&sha384, format!("sha384:{hex384}")).unwrap();
    let mut want = vec![
        expect("unsupported", &sha384),
        expect("unsupported", &schema1),
        expect("dangling", &ghost),
        expect("bad_digest", &layer_link),
        expect("incomplete", &rotten_link),
        expect("dangling", &rotten_tag),
        expect("incomplete", &index_link),
        expect("dangling", &gone_tag),
        expect("dangling", &lost),
        expect("bad_link", &garbage),
    ];
    want.sort();

    let (ok_run, plan, err) = import(&t.root, &["--dry-run"]);
    assert!(!ok_run, "problems fail the dry run: {plan}");
    assert!(err.contains("5 item(s) the source could serve"), "{err}");
    assert!(err.contains("warning: 5 link(s) or tag(s)"), "{err}");
    assert_eq!(problems(&plan), want, "{plan}");

    let root = kd.path().join("kura");
    let mut args = vec!["--root", root.to_str().unwrap()];
    if copy {
        args.push("--copy");
    }
    let (ok_run, report, err) = import(&t.root, &args);
    assert!(!ok_run, "problems fail the import: {report}");
    assert!(err.contains("everything else is imported"), "{err}");
    assert_eq!(report["problems"], plan["problems"], "the dry run said it");
    for k in [
        "manifests_new",
        "tags_new",
        "blobs_new",
        "links_new",
        "bytes_new",
    ] {
        assert_eq!(report[k], plan[k], "{k}: {report}");
    }
    assert_eq!(report["manifests_new"], 3, "{report}");
    assert_eq!(report["tags_new"], 3, "{report}");
    assert_eq!(report["uploads_ignored"], 1, "{report}");
    let (by_copy, by_link) = if copy { (7, 0) } else { (0, 7) };
    assert_eq!(report["copied"], by_copy, "{report}");
    assert_eq!(report["hard_linked"], by_link, "{report}");
    assert!(!root.join("blobs/sha256").join(layer.hex()).exists());
    assert_fsck_clean(&root);

    let (_kura, k) = spawn_kura_guarded(&root, &[]);
    assert_eq!(
        manifest_digest(&k, "good/app", "v1").await,
        Some(good.to_string())
    );
    assert_eq!(
        manifest_digest(&k, "broken", "ok").await,
        Some(ok.to_string())
    );
    assert_eq!(tags(&k, "broken").await, ["ok"]);
    assert_eq!(tags(&k, "good/app").await, ["docker", "v1"]);
    for skipped in [&rotten, &index] {
        assert_eq!(
            manifest_digest(&k, "broken", &skipped.to_string()).await,
            None
        );
    }
    let r = reqwest::get(format!("{k}/v2/broken/blobs/{layer}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_store_is_reported_by_the_dry_run_and_hard_linking_skips_only_the_broken() {
    broken_store_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_store_is_reported_by_the_dry_run_and_copying_skips_only_the_broken() {
    broken_store_case(true).await;
}

fn files_in(dir: &PathBuf) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_resumes_and_ends_complete_and_consistent() {
    const IMAGES: usize = 150;
    let (sd, kd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t = DistTree::new(sd.path());
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let (m, _, _) = t.image("many", &format!("image {i}"));
        t.tag("many", &format!("t{i:03}"), &m);
        images.push(m);
    }
    let root = kd.path().join("kura");
    let root_arg = root.to_str().unwrap();
    let mut first = common::KillOnDrop(
        import_cmd(&t.root, &["--root", root_arg])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let blobs = root.join("blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_in(&blobs) < 20 {
        assert!(
            Instant::now() < deadline,
            "the import recorded nothing in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "killed while importing"
    );
    first.kill();
    let (ok, report, err) = import(&t.root, &["--root", root_arg]);
    assert!(ok, "{report}\n{err}");
    // Every blob, revision and tag is either recorded by this run or found from the first.
    let n = |k: &str| report[k].as_u64().unwrap();
    assert!(
        n("unchanged") > 0 && n("blobs_new") > 0,
        "resumed: {report}"
    );
    let total = n("blobs_new") + n("manifests_new") + n("tags_new") + n("unchanged");
    assert_eq!(total, 4 * IMAGES as u64, "{report}");
    let (ok, again, _) = import(&t.root, &["--root", root_arg]);
    assert!(ok && new_items(&again) == 0, "{again}");
    assert_fsck_clean(&root);
    let (_kura, k) = spawn_kura_guarded(&root, &[]);
    assert_eq!(tags(&k, "many").await.len(), IMAGES);
    for (i, m) in images.iter().enumerate().step_by(37) {
        let tag = format!("t{i:03}");
        assert_eq!(manifest_digest(&k, "many", &tag).await, Some(m.to_string()));
    }
}

#[test]
fn an_import_into_a_store_a_server_holds_is_refused() {
    let (sd, kd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t = DistTree::new(sd.path());
    let (m, _, _) = t.image("app", "one");
    t.tag("app", "v1", &m);
    let (_kura, _) = spawn_kura_guarded(kd.path(), &[]);
    let out = import_cmd(&t.root, &["--root", kd.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use") && err.contains("offline"), "{err}");
}

#[test]
fn across_filesystems_the_import_copies_instead_of_linking() {
    // /dev/shm is a tmpfs; the temporary directory is on the disk: link(2) gives EXDEV.
    let sd = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let kd = tempfile::tempdir().unwrap();
    let t = DistTree::new(sd.path());
    let (m, _, layer) = t.image("app", "one");
    t.tag("app", "v1", &m);
    let root = kd.path().join("kura");
    let (ok, report, err) = import(&t.root, &["--root", root.to_str().unwrap()]);
    assert!(ok, "{report}\n{err}");
    assert_eq!(report["blobs_new"], 2, "{report}");
    assert_eq!(report["copied"], 2, "{report}");
    assert_eq!(report["hard_linked"], 0, "{report}");
    let copy = std::fs::read(root.join("blobs/sha256").join(layer.hex())).unwrap();
    assert_eq!(copy, std::fs::read(t.blob_path(&layer)).unwrap());
    assert_fsck_clean(&root);
}
