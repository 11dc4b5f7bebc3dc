//! Online garbage collection: what it collects, what it must never collect, and its races.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kura::digest::Digest;
use kura::gc::GcOptions;
use serde_json::json;

fn file_exists(s: &TestServer, d: &Digest) -> bool {
    s.registry.store().fs().unwrap().blob_path(d).exists()
}

async fn status(url: String) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_collects_referenced_blob() {
    let s = TestServer::start().await;
    let (_, m) = push_image(&s, "keep", "v1", &[b"layer one", b"layer two"]).await;
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.blobs_removed, 0, "{:?}", r.items);
    assert_eq!(r.manifests_removed, 0);
    for l in [&b"layer one"[..], b"layer two"] {
        let d = Digest::sha256_of(l);
        assert!(file_exists(&s, &d));
        assert_eq!(status(s.url(&format!("/v2/keep/blobs/{d}"))).await, 200);
    }
    assert_eq!(status(s.url(&format!("/v2/keep/manifests/{m}"))).await, 200);
    // An untagged revision is still referenced without --delete-untagged.
    push_image(&s, "keep", "v1", &[b"layer three"]).await;
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.manifests_removed, 0);
    assert_eq!(status(s.url(&format!("/v2/keep/manifests/{m}"))).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_collects_unreferenced_blob_only_after_grace() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "loose", b"no manifest names me").await;
    let r = gc(&s, opts(3600)).await;
    assert_eq!(r.blobs_removed, 0, "inside the grace period");
    assert!(file_exists(&s, &d));
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.blobs_removed, 1);
    assert_eq!(r.bytes_freed, 20);
    assert!(!file_exists(&s, &d));
    assert_eq!(status(s.url(&format!("/v2/loose/blobs/{d}"))).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_frees_what_only_deleted_images_used_and_keeps_shared_layers() {
    let s = TestServer::start().await;
    let (_, gone) = push_image(&s, "a", "v1", &[b"shared base", b"only in a"]).await;
    push_image(&s, "b", "v1", &[b"shared base", b"only in b"]).await;
    let r = client()
        .delete(s.url(&format!("/v2/a/manifests/{gone}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = gc(&s, opts(0)).await;
    // The manifest blob, a's config and a's own layer.
    assert_eq!(r.blobs_removed, 3, "{:?}", r.items);
    assert!(!file_exists(&s, &gone));
    assert!(!file_exists(&s, &Digest::sha256_of(b"only in a")));
    assert!(file_exists(&s, &Digest::sha256_of(b"shared base")));
    assert!(file_exists(&s, &Digest::sha256_of(b"only in b")));
    assert_eq!(status(s.url("/v2/b/manifests/v1")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_delete_untagged_keeps_children_of_tagged_index() {
    let s = TestServer::start().await;
    let (ca, da) = push_image(&s, "multi", "tmp-amd64", &[b"amd64"]).await;
    let (cb, db) = push_image(&s, "multi", "tmp-arm64", &[b"arm64"]).await;
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": da.to_string(), "size": ca.len()},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": db.to_string(), "size": cb.len()}]})
    .to_string();
    let r = put_manifest(
        &s,
        "multi",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201);
    // Untag the children; an unrelated untagged image is pushed and untagged too.
    let (_, lone) = push_image(&s, "multi", "lone", &[b"lonely"]).await;
    for t in ["tmp-amd64", "tmp-arm64", "lone"] {
        client()
            .delete(s.url(&format!("/v2/multi/manifests/{t}")))
            .send()
            .await
            .unwrap();
    }
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.manifests_removed, 0, "not without delete_untagged");
    let r = gc(
        &s,
        GcOptions {
            delete_untagged: true,
            ..opts(3600)
        },
    )
    .await;
    assert_eq!(r.manifests_removed, 0, "not within the grace period");
    let r = gc(
        &s,
        GcOptions {
            delete_untagged: true,
            ..opts(0)
        },
    )
    .await;
    assert_eq!(r.manifests_removed, 1, "{:?}", r.items);
    assert_eq!(r.items[0], format!("multi@{lone}"));
    assert_eq!(
        status(s.url(&format!("/v2/multi/manifests/{lone}"))).await,
        404
    );
    for d in [&da, &db] {
        assert_eq!(
            status(s.url(&format!("/v2/multi/manifests/{d}"))).await,
            200
        );
    }
    assert!(file_exists(&s, &Digest::sha256_of(b"amd64")));
    assert!(!file_exists(&s, &Digest::sha256_of(b"lonely")));
    // Untagging the index makes the whole tree collectable.
    client()
        .delete(s.url("/v2/multi/manifests/latest"))
        .send()
        .await
        .unwrap();
    let r = gc(
        &s,
        GcOptions {
            delete_untagged: true,
            ..opts(0)
        },
    )
    .await;
    assert_eq!(r.manifests_removed, 3);
    assert!(!file_exists(&s, &Digest::sha256_of(b"amd64")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_collects_referrers_whose_subject_is_gone() {
    let s = TestServer::start().await;
    let (_, subject) = push_image(&s, "signed", "v1", &[b"payload"]).await;
    let cfg = push_blob(&s, "signed", b"{}").await;
    let sig_layer = push_blob(&s, "signed", b"signature bytes").await;
    let sig = image_manifest(
        &(cfg, 2),
        &[(sig_layer.clone(), 15)],
        json!({"artifactType": "application/vnd.example.sig",
               "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 1}}),
    );
    let sig_d = Digest::sha256_of(&sig);
    let r = put_manifest(
        &s,
        "signed",
        &sig_d.to_string(),
        "application/vnd.oci.image.manifest.v1+json",
        &sig,
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = gc(
        &s,
        GcOptions {
            delete_untagged: true,
            ..opts(0)
        },
    )
    .await;
    assert_eq!(
        r.manifests_removed, 0,
        "a referrer of a live manifest stays: {:?}",
        r.items
    );
    client()
        .delete(s.url(&format!("/v2/signed/manifests/{subject}")))
        .send()
        .await
        .unwrap();
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.manifests_removed, 1, "{:?}", r.items);
    assert_eq!(
        status(s.url(&format!("/v2/signed/manifests/{sig_d}"))).await,
        404
    );
    assert!(!file_exists(&s, &sig_layer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_purges_idle_upload_sessions_with_their_files() {
    let s = TestServer::start().await;
    let r = client()
        .post(s.url("/v2/up/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    client()
        .patch(&loc)
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.uploads_purged, 0, "younger than the maximum age");
    let r = gc(
        &s,
        GcOptions {
            upload_max_age: Duration::ZERO,
            ..opts(0)
        },
    )
    .await;
    assert_eq!(r.uploads_purged, 1, "{:?}", r.items);
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    let r = client().get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_dry_run_reports_and_changes_nothing() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "dry", b"would go").await;
    let r = gc(
        &s,
        GcOptions {
            dry_run: true,
            ..opts(0)
        },
    )
    .await;
    assert!(r.dry_run);
    assert_eq!(r.blobs_removed, 1);
    assert_eq!(r.bytes_freed, 8);
    assert_eq!(r.items, vec![d.to_string()]);
    assert!(file_exists(&s, &d));
    assert_eq!(status(s.url(&format!("/v2/dry/blobs/{d}"))).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_orphan_files_left_by_a_crash() {
    let s = TestServer::start().await;
    let d = Digest::sha256_of(b"renamed, never committed");
    std::fs::write(
        s.registry.store().fs().unwrap().blob_path(&d),
        b"renamed, never committed",
    )
    .unwrap();
    let r = gc(&s, opts(3600)).await;
    assert_eq!(r.orphan_files_removed, 0);
    let r = gc(&s, opts(0)).await;
    assert_eq!(r.orphan_files_removed, 1);
    assert!(!file_exists(&s, &d));
}

/// Forces the interleaving: the collector has committed the removal of an unreferenced blob
/// and not yet unlinked its file when the same blob is uploaded again. The upload must end up
/// present with its file, not recorded without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reupload_racing_gc_ends_present_and_consistent() {
    let s = TestServer::start().await;
    let data = b"uploaded twice".to_vec();
    let d = push_blob(&s, "race", &data).await;
    let base = s.base.clone();
    let upload_result = Arc::new(std::sync::Mutex::new(None));
    let (hook_data, hook_result) = (data.clone(), upload_result.clone());
    let handle = tokio::runtime::Handle::current();
    let hook = Arc::new(move || {
        // Between the removal commit and the unlink: start a re-upload, give it time to reach
        // its commit point, then let the collector continue.
        let (base, data, result, handle) = (
            base.clone(),
            hook_data.clone(),
            hook_result.clone(),
            handle.clone(),
        );
        let d = Digest::sha256_of(&data);
        std::thread::spawn(move || {
            let status = handle.block_on(async {
                client()
                    .post(format!("{base}/v2/race/blobs/uploads/?digest={d}"))
                    .body(data)
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            *result.lock().unwrap() = Some(status);
        });
        std::thread::sleep(Duration::from_millis(300));
    });
    let r = gc(
        &s,
        GcOptions {
            after_commit: Some(hook),
            ..opts(0)
        },
    )
    .await;
    assert_eq!(r.blobs_removed, 1);
    // Wait for the re-upload to finish.
    for _ in 0..100 {
        if upload_result.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upload_result.lock().unwrap().unwrap(), 201);
    assert!(
        file_exists(&s, &d),
        "the re-uploaded blob file must exist: {:?}",
        r
    );
    let got = client()
        .get(s.url(&format!("/v2/race/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
}
