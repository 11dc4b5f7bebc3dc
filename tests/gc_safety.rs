//! The collector on a live store: its grace floor, what it holds while it works, empty
//! repositories, and files it races with (orphans, a concurrent fsck).

mod common;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::*;
use kura::digest::Digest;
use kura::gc::{GcOptions, collect};

async fn catalog(s: &TestServer) -> Vec<String> {
    let v: serde_json::Value = client()
        .get(s.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Item 9: `POST /admin/gc` on a serving store refuses a grace below `gc.min_online_grace`
/// (10 minutes by default) and deletes nothing; a grace at the floor runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_gc_refuses_a_grace_below_the_floor() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "inflight", b"a push in flight").await;
    for grace in ["0s", "9m"] {
        let r = client()
            .post(s.url(&format!("/admin/gc?grace={grace}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "grace={grace}");
        let body = r.text().await.unwrap();
        assert!(body.contains("min_online_grace"), "{body}");
    }
    assert!(s.registry.store().fs().unwrap().blob_path(&d).exists());
    let r = client()
        .post(s.url("/admin/gc?grace=10m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(s.registry.store().fs().unwrap().blob_path(&d).exists());
}

/// Kills the server it holds however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Item 9: `kura gc` against a running server refuses `--grace 0s`; `kura serve` refuses a
/// configured grace below the floor; the floor is a config key with its own variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_gc_and_serve_refuse_a_grace_below_the_floor_online() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_kura(dir.path(), &["--gc-interval", "0s"]);
    let server = Killed(child);
    let data = b"kept online".to_vec();
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
    assert!(!ok, "{out}");
    assert!(err.contains("min_online_grace"), "{err}");
    assert!(dir.path().join("blobs/sha256").join(d.hex()).exists());
    drop(server);

    let f = dir.path().join("kura.toml");
    std::fs::write(&f, "[gc]\ngrace = \"1m\"\n").unwrap();
    let check = |env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kura"));
        cmd.args(["config", "check", f.to_str().unwrap()]);
        if let Some(v) = env {
            cmd.env("KURA_GC__MIN_ONLINE_GRACE", v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = check(None);
    assert!(!ok);
    assert!(err.contains("min_online_grace"), "{err}");
    let (ok, out, err) = check(Some("30s"));
    assert!(ok, "{err}");
    assert!(out.contains("min_online_grace = \"30s\""), "{out}");
}

/// Item 15: a repository left with no tag, manifest or blob link leaves `_catalog` once the
/// collector ran; one with content stays; a push into the emptied one brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_holds_nothing_leaves_the_catalog_after_gc() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "empty/blob", b"linked, then unlinked").await;
    let r = client()
        .delete(s.url(&format!("/v2/empty/blob/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, m) = push_image(&s, "empty/image", "v1", &[b"layer"]).await;
    client()
        .delete(s.url(&format!("/v2/empty/image/manifests/{m}")))
        .send()
        .await
        .unwrap();
    push_image(&s, "full", "v1", &[b"another layer"]).await;
    assert_eq!(catalog(&s).await, ["empty/blob", "empty/image", "full"]);
    // The image's blobs are still linked inside their grace period: it stays for now.
    let r = gc(&s, opts(3600)).await;
    assert_eq!(r.repositories_removed, 1, "{:?}", r.items);
    assert_eq!(catalog(&s).await, ["empty/image", "full"]);
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.repositories_removed, 1, "{:?}", r.items);
    assert_eq!(catalog(&s).await, ["full"]);
    push_blob(&s, "empty/blob", b"back again").await;
    assert_eq!(catalog(&s).await, ["empty/blob", "full"]);
}

/// Item 19: while the collector unlinks a batch's files, it holds no digest lock, so a
/// writer of any digest of the batch goes ahead at once, and the file it recorded stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_batches_hold_no_digest_lock_between_commit_and_unlink() {
    let s = TestServer::start().await;
    let mut ds = Vec::new();
    for i in 0..20u8 {
        ds.push(push_blob(&s, "batch", &[i; 100]).await);
    }
    let reg = s.registry.clone();
    let probe = ds.clone();
    let locked: Arc<Mutex<Vec<bool>>> = Arc::default();
    let seen = locked.clone();
    let hook = Arc::new(move || {
        for d in &probe {
            let (tx, rx) = mpsc::channel();
            let (reg, d) = (reg.clone(), d.to_string());
            std::thread::spawn(move || {
                let _g = reg.digest_locks().lock(&d).expect("digest lock");
                let _ = tx.send(());
            });
            // A bound, not a measure: a held stripe would keep the thread waiting until the
            // batch is unlinked, after this hook returns.
            let free = rx.recv_timeout(Duration::from_secs(5)).is_ok();
            seen.lock().unwrap().push(free);
            if !free {
                break;
            }
        }
    });
    let r = gc(
        &s,
        GcOptions {
            after_commit: Some(hook),
            ..opts(0)
        },
    )
    .await;
    assert_eq!(r.blobs_removed, 20);
    assert_eq!(*locked.lock().unwrap(), vec![true; 20]);
}

/// Item 20: a file left in `blobs/` by a crash (no row) is never trusted as the blob: each
/// way of uploading replaces it with the verified bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_file_is_replaced_by_a_later_upload_not_trusted() {
    let s = TestServer::start().await;
    let plant = |d: &Digest| {
        std::fs::write(s.registry.store().fs().unwrap().blob_path(d), b"torn").unwrap()
    };
    let small = b"a small blob".to_vec();
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let chunked: Vec<u8> = (0..5_000u32).map(|i| (i % 13) as u8).collect();
    for (data, how) in [
        (&small, "single"),
        (&large, "single"),
        (&chunked, "session"),
    ] {
        let d = Digest::sha256_of(data);
        plant(&d);
        let r = if how == "single" {
            client()
                .post(s.url(&format!("/v2/orphans/blobs/uploads/?digest={d}")))
                .body(data.clone())
                .send()
                .await
                .unwrap()
        } else {
            let r = client()
                .post(s.url("/v2/orphans/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            let loc = if loc.starts_with('/') {
                s.url(&loc)
            } else {
                loc
            };
            let sep = if loc.contains('?') { '&' } else { '?' };
            client()
                .put(format!("{loc}{sep}digest={d}"))
                .body(data.clone())
                .send()
                .await
                .unwrap()
        };
        assert_eq!(r.status(), 201, "{how} upload of {} bytes", data.len());
        let got = client()
            .get(s.url(&format!("/v2/orphans/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            got.as_ref(),
            data.as_slice(),
            "{how} upload of {} bytes",
            data.len()
        );
    }
    // A manifest likewise.
    let cfg = push_blob(&s, "orphans", b"{}").await;
    let body = image_manifest(&(cfg, 2), &[], serde_json::json!({}));
    let md = Digest::sha256_of(&body);
    plant(&md);
    let r = put_manifest(
        &s,
        "orphans",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &body,
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        std::fs::read(s.registry.store().fs().unwrap().blob_path(&md)).unwrap(),
        body
    );
    let fsck = kura::fsck::fsck(&s.registry, false, false).unwrap();
    assert!(fsck.errors.is_empty(), "{fsck}");
}

/// Item 20: the collector removes a blob after a live fsck read the tables and before it
/// checks the file: fsck re-checks against the tables and reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_fsck_does_not_report_a_blob_collected_during_its_pass() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "fsck", b"collected mid-pass").await;
    push_image(&s, "fsck", "v1", &[b"stays"]).await;
    let reg = s.registry.clone();
    let report = tokio::task::spawn_blocking(move || {
        let hook_reg = reg.clone();
        kura::fsck::fsck_with_hook(&reg, false, false, &move || {
            let r = collect(&hook_reg, &opts(0)).unwrap();
            assert_eq!(r.blobs_removed, 1);
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!s.registry.store().fs().unwrap().blob_path(&d).exists());
    assert!(report.errors.is_empty(), "{report}");
}
