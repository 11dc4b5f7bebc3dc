//! kill -9 the real `kura` binary while pushes are in flight, restart it, and check that every
//! acknowledged push is intact and that the store is consistent.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, image_manifest, spawn_kura};
use kura::digest::Digest;
use kura::registry::Registry;

/// A push acknowledged with 201: the tag, manifest bytes and layer contents' digests.
#[derive(Clone)]
struct Acked {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<Digest>,
}

async fn push_one(base: &str, repo: &str, tag: &str, seed: u64) -> Result<Acked, String> {
    let c = client();
    let size = 50_000 + (seed * 7919 % 1_500_000) as usize;
    let layer: Vec<u8> = (0..size)
        .map(|i| ((i as u64).wrapping_mul(seed | 1) >> 3) as u8)
        .collect();
    let ld = Digest::sha256_of(&layer);
    let err = |e: reqwest::Error| e.to_string();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .map_err(err)?;
    if r.status() != 202 {
        return Err(format!("start {}", r.status()));
    }
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let half = size / 2;
    let r = c
        .patch(&loc)
        .header("Content-Range", format!("0-{}", half - 1))
        .body(layer[..half].to_vec())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 202 {
        return Err(format!("patch {}", r.status()));
    }
    let r = c
        .put(format!("{loc}?digest={ld}"))
        .body(layer[half..].to_vec())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!("put {}", r.status()));
    }
    let cfg = format!("{{\"seed\":{seed}}}");
    let cd = Digest::sha256_of(cfg.as_bytes());
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={cd}"))
        .body(cfg.clone())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!("config {}", r.status()));
    }
    let manifest = image_manifest(
        &(cd.clone(), cfg.len()),
        &[(ld.clone(), size)],
        serde_json::json!({}),
    );
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!("manifest {}", r.status()));
    }
    Ok(Acked {
        repo: repo.into(),
        tag: tag.into(),
        manifest,
        blobs: vec![cd, ld],
    })
}

/// Checks the store's invariants with fsck (no server may hold it); returns its report.
fn assert_store_consistent(root: &Path) -> kura::fsck::FsckReport {
    let reg = Registry::open(root).expect("store opens after kill -9");
    let report = kura::fsck::fsck(&reg, false, false).unwrap();
    assert!(report.is_clean(), "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_consistency_kill_9_during_pushes_loses_no_acknowledged_push() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    for round in 0..3u64 {
        let (mut child, base) = spawn_kura(dir.path(), &[]);
        let deadline = Instant::now() + Duration::from_millis(600 + round * 250);
        let mut workers = Vec::new();
        for w in 0..4u64 {
            let (base, acked) = (base.clone(), acked.clone());
            workers.push(tokio::spawn(async move {
                for i in 0..200u64 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let seed = round * 1_000_000 + w * 1000 + i;
                    match push_one(
                        &base,
                        &format!("crash/w{w}"),
                        &format!("r{round}-{i}"),
                        seed,
                    )
                    .await
                    {
                        Ok(a) => acked.lock().unwrap().push(a),
                        Err(_) => break,
                    }
                }
            }));
        }
        tokio::time::sleep_until(deadline.into()).await;
        child.kill().expect("kill -9");
        child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        assert_store_consistent(dir.path());
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "some pushes must have been acknowledged");
    // Every acknowledged push is served, byte for byte, after a final restart.
    let (mut child, base) = spawn_kura(dir.path(), &[]);
    let c = client();
    for a in &acked {
        let r = c
            .get(format!("{base}/v2/{}/manifests/{}", a.repo, a.tag))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}:{}", a.repo, a.tag);
        assert_eq!(r.bytes().await.unwrap().as_ref(), a.manifest.as_slice());
        for d in &a.blobs {
            let r = c
                .get(format!("{base}/v2/{}/blobs/{d}", a.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(&Digest::sha256_of(&r.bytes().await.unwrap()), d);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The same under garbage collection: the server collects every 100 ms with a 1 s grace while
/// pushes and deletes go on; it is killed mid-run, `kura fsck` must find the store clean, and
/// every acknowledged push that was not deleted must still be served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_consistency_kill_9_during_gc_and_pushes_leaves_fsck_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let gc_flags = [
        "--gc-interval",
        "100ms",
        "--gc-grace",
        "1s",
        // A 1 s grace on a live store is below the default floor: allowed for this test.
        "--gc-min-online-grace",
        "0s",
        "--upload-max-age",
        "2s",
    ];
    let kept: Arc<Mutex<Vec<Acked>>> = Arc::default();
    for round in 0..3u64 {
        let (mut child, base) = spawn_kura(dir.path(), &gc_flags);
        let deadline = Instant::now() + Duration::from_millis(1500 + round * 400);
        let mut workers = Vec::new();
        for w in 0..3u64 {
            let (base, kept) = (base.clone(), kept.clone());
            workers.push(tokio::spawn(async move {
                for i in 0..500u64 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let seed = 7_000_000 + round * 100_000 + w * 1000 + i;
                    let Ok(a) =
                        push_one(&base, &format!("gc/w{w}"), &format!("r{round}-{i}"), seed).await
                    else {
                        break;
                    };
                    // Every other push is deleted again, so the collector has work.
                    if i % 2 == 1 {
                        let d = Digest::sha256_of(&a.manifest);
                        let url = format!("{base}/v2/{}/manifests/{d}", a.repo);
                        match client().delete(url).send().await {
                            Ok(r) if r.status() == 202 => continue,
                            _ => break,
                        }
                    }
                    kept.lock().unwrap().push(a);
                }
            }));
        }
        tokio::time::sleep_until(deadline.into()).await;
        child.kill().expect("kill -9");
        child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        let (ok, out, err) = common::kura_cmd(&["fsck", "--root", &root, "--quiet"]);
        assert!(
            ok,
            "kura fsck after kill -9 in round {round}:\n{out}\n{err}"
        );
    }
    let kept = kept.lock().unwrap().clone();
    assert!(!kept.is_empty());
    let (mut child, base) = spawn_kura(dir.path(), &gc_flags);
    let c = client();
    for a in &kept {
        let r = c
            .get(format!("{base}/v2/{}/manifests/{}", a.repo, a.tag))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}:{}", a.repo, a.tag);
        for d in &a.blobs {
            let r = c
                .get(format!("{base}/v2/{}/blobs/{d}", a.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{d}");
            assert_eq!(&Digest::sha256_of(&r.bytes().await.unwrap()), d);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
