//! The grace period covers every moment a client may rely on a blob or manifest still being
//! there: a mount, the loss of a last reference, a `HEAD`/`GET` (even racing the collector),
//! and a re-push of an untagged manifest. Old items are made by ageing their rows, so each
//! test forces the interleaving it is about.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kura::digest::Digest;
use kura::gc::GcOptions;
use kura::meta::{blobs, manifests, now_secs};
use serde_json::json;

const HOUR: u64 = 3600;

/// Moves the grace period of blob `d` two hours into the past, as if pushed long ago.
fn age_blob(s: &TestServer, d: &Digest) {
    let d = d.to_string();
    s.registry
        .meta()
        .write(|t| {
            let row = blobs::get(t, &d)?.expect("blob row");
            blobs::put(
                t,
                &d,
                blobs::BlobRow {
                    touched: now_secs() - 2 * HOUR,
                    ..row
                },
            )
        })
        .unwrap();
}

/// Makes revision `d` of `repo` two hours old.
fn age_manifest(s: &TestServer, repo: &str, d: &Digest) {
    let d = d.to_string();
    s.registry
        .meta()
        .write(|t| {
            let mut rec = manifests::get(t, repo, &d)?.expect("revision");
            rec.created = now_secs() - 2 * HOUR;
            rec.touched = 0;
            manifests::insert(t, repo, &d, &rec)
        })
        .unwrap();
}

async fn head(url: String) -> u16 {
    client().head(url).send().await.unwrap().status().as_u16()
}

async fn get(url: String) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Item 5: an old unreferenced blob mounted into another repository stays for a whole grace
/// period, so the manifest that needs it can follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_restarts_the_grace_period_of_an_old_blob() {
    let s = TestServer::start().await;
    let layer = b"an old layer, unreferenced".to_vec();
    let d = push_blob(&s, "src", &layer).await;
    age_blob(&s, &d);
    let r = client()
        .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "mounted");
    let r = gc(&s, opts(HOUR)).await;
    assert_eq!(r.blobs_removed, 0, "{:?}", r.items);
    let cfg = push_blob(&s, "dst", b"{}").await;
    let m = image_manifest(&(cfg, 2), &[(d.clone(), layer.len())], json!({}));
    let r = put_manifest(&s, "dst", "v1", IMAGE, &m).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(get(s.url(&format!("/v2/dst/blobs/{d}"))).await, 200);
}

/// Item 6: a client `HEAD`s a layer while a manifest still references it and skips its
/// upload; the manifest is deleted; the collector runs; the client's manifest still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_last_reference_restarts_the_grace_period() {
    let s = TestServer::start().await;
    let (body, m) = push_image(&s, "app", "v1", &[b"shared layer"]).await;
    let layer = Digest::sha256_of(b"shared layer");
    let cfg = Digest::sha256_of(br#"{"tag":"v1","repo":"app"}"#);
    for d in [&layer, &cfg] {
        age_blob(&s, d);
        assert_eq!(head(s.url(&format!("/v2/app/blobs/{d}"))).await, 200);
    }
    let r = client()
        .delete(s.url(&format!("/v2/app/manifests/{m}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = gc(&s, opts(HOUR)).await;
    assert!(
        !r.items.contains(&layer.to_string()),
        "the layer went: {:?}",
        r.items
    );
    let r = put_manifest(&s, "app", "v2", IMAGE, &body).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

/// Item 7: the collector's removal transaction is open when a `HEAD` reads the blob; the `HEAD`
/// must not answer 200 for the blob that transaction removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn head_racing_the_collector_never_answers_200_for_a_removed_blob() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "race", b"about to be collected").await;
    age_blob(&s, &d);
    let url = s.url(&format!("/v2/race/blobs/{d}"));
    let answer: Arc<Mutex<Option<u16>>> = Arc::default();
    let (hook_answer, handle) = (answer.clone(), tokio::runtime::Handle::current());
    let hook = Arc::new(move || {
        // Inside the removal transaction: the HEAD reads the row (still there in its
        // snapshot); the collector commits once the HEAD had time to get that far.
        let (url, answer, handle) = (url.clone(), hook_answer.clone(), handle.clone());
        std::thread::spawn(move || {
            let status = handle.block_on(head(url));
            *answer.lock().unwrap() = Some(status);
        });
        std::thread::sleep(Duration::from_millis(300));
    });
    let r = gc(
        &s,
        GcOptions {
            in_removal: Some(hook),
            ..opts(HOUR)
        },
    )
    .await;
    assert_eq!(r.blobs_removed, 1, "{:?}", r.items);
    for _ in 0..200 {
        if answer.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        answer.lock().unwrap().expect("HEAD answered"),
        404,
        "HEAD answered for a blob the collector removed"
    );
}

/// Item 7, the other order: a `HEAD` answered 200 before the collector's transaction keeps the
/// blob for a whole grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_before_the_collector_keeps_the_blob() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "seen", b"seen by a client").await;
    age_blob(&s, &d);
    assert_eq!(head(s.url(&format!("/v2/seen/blobs/{d}"))).await, 200);
    let r = gc(&s, opts(HOUR)).await;
    assert_eq!(r.blobs_removed, 0, "{:?}", r.items);
    assert_eq!(get(s.url(&format!("/v2/seen/blobs/{d}"))).await, 200);
}

/// Item 18: sightings of an unreferenced blob cost at most one durable write per lease, and
/// none in read-only mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_sightings_write_at_most_once_per_lease_and_never_when_read_only() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "hot", b"pulled a lot").await;
    let url = s.url(&format!("/v2/hot/blobs/{d}"));
    age_blob(&s, &d);
    client()
        .post(s.url("/admin/read-only?enabled=true"))
        .send()
        .await
        .unwrap();
    let before = s.registry.meta().commit_count();
    for _ in 0..5 {
        assert_eq!(head(url.clone()).await, 200);
    }
    assert_eq!(
        s.registry.meta().commit_count(),
        before,
        "a write in read-only mode"
    );
    client()
        .post(s.url("/admin/read-only?enabled=false"))
        .send()
        .await
        .unwrap();
    let before = s.registry.meta().commit_count();
    // Spread over more than a second, so a per-second refresh would write twice.
    for i in 0..6 {
        assert_eq!(head(url.clone()).await, 200);
        assert_eq!(get(url.clone()).await, 200);
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    assert_eq!(s.registry.meta().commit_count(), before + 1);
}

/// Item 8: with `delete_untagged`, a `HEAD`, a `GET` or a re-`PUT` of an old untagged
/// manifest restarts its age, so an index pushed next can name it; one nobody saw goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighting_or_repush_of_an_untagged_manifest_restarts_its_age() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "multi", b"{}").await;
    let mut children = Vec::new();
    for name in ["headed", "pulled", "repushed", "unseen"] {
        let l = push_blob(&s, "multi", name.as_bytes()).await;
        let body = image_manifest(&(cfg.clone(), 2), &[(l, name.len())], json!({}));
        let d = Digest::sha256_of(&body);
        let r = put_manifest(&s, "multi", &d.to_string(), IMAGE, &body).await;
        assert_eq!(r.status(), 201);
        age_manifest(&s, "multi", &d);
        children.push((d, body));
    }
    let url = |d: &Digest| s.url(&format!("/v2/multi/manifests/{d}"));
    assert_eq!(head(url(&children[0].0)).await, 200);
    assert_eq!(get(url(&children[1].0)).await, 200);
    let r = put_manifest(
        &s,
        "multi",
        &children[2].0.to_string(),
        IMAGE,
        &children[2].1,
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = gc(
        &s,
        GcOptions {
            delete_untagged: true,
            ..opts(HOUR)
        },
    )
    .await;
    assert_eq!(
        r.items,
        vec![format!("multi@{}", children[3].0)],
        "only the unseen child goes"
    );
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children[..3].iter().map(|(d, b)| json!({"mediaType": IMAGE, "digest": d.to_string(), "size": b.len()})).collect::<Vec<_>>()})
    .to_string();
    let r = put_manifest(
        &s,
        "multi",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}
