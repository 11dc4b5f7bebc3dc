//! `kura gc` and `kura fsck` from the command line: offline on a data directory, and online
//! through the server that holds it.

mod common;

use common::*;
use kura::digest::Digest;
use kura::names::RepoName;
use kura::registry::Registry;

async fn seed_loose_blob(root: &std::path::Path, data: &[u8]) -> Digest {
    let reg = Registry::open(root).unwrap();
    let d = Digest::sha256_of(data);
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data.to_vec()))]);
    reg.put_blob(&RepoName::parse("cli").unwrap(), &d, body)
        .await
        .unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_gc_on_a_data_directory_lists_in_dry_run_then_collects() {
    let dir = tempfile::tempdir().unwrap();
    let d = seed_loose_blob(dir.path(), b"0123456789").await;
    let root = dir.path().to_str().unwrap();
    let (ok, out, err) = kura_cmd(&["gc", "--root", root, "--grace", "0s", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.contains(&d.to_string()), "{out}");
    assert!(
        out.contains("would remove 0 manifest(s), 1 blob(s) (10 bytes)"),
        "{out}"
    );
    assert!(dir.path().join("blobs/sha256").join(d.hex()).exists());
    let (ok, out, err) = kura_cmd(&["gc", "--root", root, "--grace", "24h"]);
    assert!(ok, "{err}");
    assert!(out.contains("removed 0 manifest(s), 0 blob(s)"), "{out}");
    let (ok, out, err) = kura_cmd(&["gc", "--root", root, "--grace", "0s"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("removed 0 manifest(s), 1 blob(s) (10 bytes)"),
        "{out}"
    );
    assert!(!dir.path().join("blobs/sha256").join(d.hex()).exists());
    let (ok, _, err) = kura_cmd(&["gc", "--root", root, "--grace", "soon"]);
    assert!(!ok);
    assert!(err.contains("not a duration"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_gc_asks_the_server_holding_the_store() {
    let dir = tempfile::tempdir().unwrap();
    // A zero grace online needs the floor lowered (tests/gc_safety.rs shows the refusal).
    let (mut child, base) = spawn_kura(
        dir.path(),
        &["--gc-interval", "0s", "--gc-min-online-grace", "0s"],
    );
    let data = b"collected online".to_vec();
    let d = Digest::sha256_of(&data);
    let r = client()
        .post(format!("{base}/v2/online/blobs/uploads/?digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let root = dir.path().to_str().unwrap().to_string();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || kura_cmd(&["gc", "--root", &root, "--grace", "0s"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("1 blob(s) (16 bytes)"), "{out}");
    let r = client()
        .head(format!("{base}/v2/online/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // --url works too, and fsck through the server reports a clean store.
    let (ok, out, err) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || kura_cmd(&["fsck", "--url", &base])
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 error(s)"), "{out}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_fsck_finds_corruption_and_repairs_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    {
        let s = TestServer::start_in(dir.path()).await;
        push_image(&s, "fsck", "v1", &[b"layer"]).await;
    }
    // The stopped server's workers release the store shortly after.
    for _ in 0..100 {
        if Registry::open(dir.path()).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ok, out, _) = kura_cmd(&["fsck", "--root", &root, "--quiet"]);
    assert!(ok, "{out}");
    assert!(out.contains("3 blob(s)"), "{out}");

    // A wrong reference count is found and repaired.
    let layer = Digest::sha256_of(b"layer").to_string();
    {
        let reg = Registry::open(dir.path()).unwrap();
        reg.meta()
            .write(|t| {
                let row = kura::meta::blobs::get(t, &layer)?.unwrap();
                kura::meta::blobs::put(t, &layer, kura::meta::blobs::BlobRow { refs: 5, ..row })
            })
            .unwrap();
    }
    let (ok, out, _) = kura_cmd(&["fsck", "--root", &root, "--quiet"]);
    assert!(!ok);
    assert!(
        out.contains("reference count 5 but manifests imply 1"),
        "{out}"
    );
    let (ok, out, _) = kura_cmd(&["fsck", "--root", &root, "--quiet", "--repair"]);
    assert!(ok, "{out}");
    assert!(out.contains("repaired: blob"), "{out}");
    let (ok, out, _) = kura_cmd(&["fsck", "--root", &root, "--quiet"]);
    assert!(ok, "{out}");

    // A corrupted file is an error repair cannot fix.
    std::fs::write(dir.path().join("blobs/sha256").join(&layer[7..]), b"LAYER").unwrap();
    let (ok, out, _) = kura_cmd(&["fsck", "--root", &root, "--quiet", "--repair"]);
    assert!(!ok);
    assert!(out.contains("content hashes to"), "{out}");

    // An orphan file is a notice, removed by repair.
    std::fs::write(dir.path().join("blobs/sha256").join("ab".repeat(32)), b"x").unwrap();
    let (_, out, _) = kura_cmd(&["fsck", "--root", &root, "--quiet"]);
    assert!(out.contains("notice: orphan file"), "{out}");
}
