//! The collector and fsck on a bucket, against the real gateway (Ceph RGW; tests/common/s3.rs),
//! and small pushes racing the collector's re-check under the digest's lock.

mod common;

use common::s3::{data, raw, s3_config};
use common::s3_ops::*;
use common::{TestServer, client, image_manifest};
use kura::digest::Digest;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// The collector on a bucket
// ---------------------------------------------------------------------------------------

fn blob_row(s: &TestServer, d: &Digest) -> Option<kura::meta::blobs::BlobRow> {
    s.registry
        .meta()
        .read(|t| kura::meta::blobs::get(t, &d.to_string()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_orphan_objects_past_the_grace_and_keeps_recorded_ones() {
    let cfg = s3_config("gc-orphans");
    let s = TestServer::start_on(&cfg).await;
    let kept = common::push_image(&s, "team/app", "v1", &[b"a recorded layer"]).await;
    let recorded = Digest::sha256_of(b"a recorded layer");
    // An object under blobs/ with no row (a crash between placing it and its commit).
    let orphan_bytes = b"nobody recorded me".to_vec();
    let orphan = Digest::sha256_of(&orphan_bytes);
    put_object(&blob_key(&cfg.prefix, &orphan), orphan_bytes).await;
    let before = keys(&cfg.prefix, "blobs").await;
    assert_eq!(before.len(), 4, "{before:?}");

    // Within the grace period it stays.
    let r = common::gc(&s, common::opts(3600)).await;
    assert_eq!(r.orphan_files_removed, 0, "{r:?}");
    assert_eq!(keys(&cfg.prefix, "blobs").await, before);

    // Past it, it goes; the tagged image's objects stay.
    let r = common::gc(&s, common::opts(0)).await;
    assert_eq!(r.orphan_files_removed, 1, "{r:?}");
    assert_eq!(r.blobs_removed, 0, "{r:?}");
    assert!(r.items.contains(&format!("orphan {orphan}")), "{r:?}");
    let after = keys(&cfg.prefix, "blobs").await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!after.contains(&format!("blobs/sha256/{}", orphan.hex())));
    assert!(after.contains(&format!("blobs/sha256/{}", recorded.hex())));
    assert!(after.contains(&format!("blobs/sha256/{}", kept.1.hex())));
    let got = get_ok(&s.url(&format!("/v2/team/app/blobs/{recorded}"))).await;
    assert_eq!(got, b"a recorded layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_unreferenced_blob_rows_and_their_objects_in_batches() {
    let cfg = s3_config("gc-blobs");
    let s = TestServer::start_on(&cfg).await;
    let (_, manifest) = common::push_image(&s, "team/app", "v1", &[b"kept layer"]).await;
    // Five blobs no manifest references, one over a part (a multipart upload).
    let mut loose = Vec::new();
    for i in 0..4u64 {
        loose.push(common::push_blob(&s, "team/loose", &data(1000 + i as usize, 10 + i)).await);
    }
    loose.push(common::push_blob(&s, "team/loose", &data(5 * MIB + 1, 20)).await);
    for d in &loose {
        assert!(blob_row(&s, d).is_some());
    }
    assert_eq!(keys(&cfg.prefix, "blobs").await.len(), 3 + loose.len());

    // Two blobs per removal transaction: the batch path runs three times.
    let o = kura::gc::GcOptions {
        batch_size: 2,
        ..common::opts(0)
    };
    let r = common::gc(&s, o).await;
    assert_eq!(r.blobs_removed, loose.len() as u64, "{r:?}");
    assert_eq!(
        r.bytes_freed,
        (1000 + 1001 + 1002 + 1003 + 5 * MIB + 1) as u64
    );
    assert_eq!(r.orphan_files_removed, 0, "{r:?}");
    for d in &loose {
        assert!(blob_row(&s, d).is_none(), "row of {d} kept");
        assert!(r.items.contains(&d.to_string()), "{r:?}");
        let status = client()
            .get(s.url(&format!("/v2/team/loose/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404);
    }
    let left = keys(&cfg.prefix, "blobs").await;
    assert_eq!(left.len(), 3, "objects of removed rows left: {left:?}");
    assert!(left.contains(&format!("blobs/sha256/{}", manifest.hex())));
    assert!(left.contains(&format!(
        "blobs/sha256/{}",
        Digest::sha256_of(b"kept layer").hex()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_purges_an_expired_upload_session_with_its_multipart_upload_and_objects() {
    let cfg = s3_config("gc-uploads");
    let s = TestServer::start_on(&cfg).await;
    let c = client();
    let r = c
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = s.url(&path_of(r.headers()["location"].to_str().unwrap()));
    // More than a part: one part goes to a multipart upload, the rest to a tail object.
    let r = c
        .patch(&loc)
        .header("Content-Type", "application/octet-stream")
        .body(data(5 * MIB + 1000, 30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (id, rec) = {
        let all = s
            .registry
            .meta()
            .read(|t| kura::meta::uploads::all(t))
            .unwrap();
        assert_eq!(all.len(), 1);
        all.into_iter().next().unwrap()
    };
    let multipart = rec.state.multipart.clone().expect("a multipart upload");
    assert_eq!(rec.state.parts.len(), 1, "{:?}", rec.state);
    let stored = keys(&cfg.prefix, &format!("uploads/{id}")).await;
    assert!(stored.len() >= 2, "session and tail objects: {stored:?}");

    // Not yet expired: kept.
    let r = common::gc(&s, common::opts(0)).await;
    assert_eq!(r.uploads_purged, 0, "{r:?}");
    assert_eq!(keys(&cfg.prefix, &format!("uploads/{id}")).await, stored);

    let o = kura::gc::GcOptions {
        upload_max_age: std::time::Duration::ZERO,
        ..common::opts(0)
    };
    let r = common::gc(&s, o).await;
    assert_eq!(r.uploads_purged, 1, "{r:?}");
    assert!(r.items.contains(&format!("upload {id}")), "{r:?}");
    let rows = s
        .registry
        .meta()
        .read(|t| kura::meta::uploads::get(t, &id))
        .unwrap();
    assert!(rows.is_none(), "the session's row is kept");
    assert_eq!(keys(&cfg.prefix, "uploads").await, Vec::<String>::new());
    // The multipart upload was aborted: it takes no more parts.
    let data_key = Key::from(format!("{}/uploads/{id}/data", cfg.prefix));
    let more = raw()
        .put_part(&data_key, &multipart, 1, PutPayload::from(vec![1u8; 10]))
        .await;
    assert!(more.is_err(), "multipart upload {multipart} still open");
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

// ---------------------------------------------------------------------------------------
// fsck on a bucket
// ---------------------------------------------------------------------------------------

async fn fsck(s: &TestServer, repair: bool) -> kura::fsck::FsckReport {
    let reg = s.registry.clone();
    tokio::task::spawn_blocking(move || kura::fsck::fsck(&reg, repair, false))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_missing_and_corrupt_objects_in_the_bucket() {
    let cfg = s3_config("fsck-errors");
    let s = TestServer::start_on(&cfg).await;
    let layers: [&[u8]; 2] = [b"first layer", b"second layer"];
    let (manifest, _) = common::push_image(&s, "team/app", "v1", &layers).await;
    let config = r#"{"tag":"v1","repo":"team/app"}"#;
    let big = data(5 * MIB + 3, 40);
    let big_d = common::push_blob(&s, "team/app", &big).await;

    // Clean: every object hashed, nothing else in the bucket.
    let r = fsck(&s, false).await;
    assert!(r.is_clean(), "{r}");
    assert!(r.notices.is_empty(), "{r}");
    assert_eq!(r.blobs_checked, 5, "{r}");
    let total = manifest.len() + config.len() + layers[0].len() + layers[1].len() + big.len();
    assert_eq!(r.bytes_checked, total as u64, "{r}");

    // Deleted behind kura's back: missing.
    let gone = Digest::sha256_of(layers[0]);
    delete_object(&blob_key(&cfg.prefix, &gone)).await;
    // Overwritten with other bytes of the same size: it hashes to something else.
    put_object(&blob_key(&cfg.prefix, &big_d), data(big.len(), 41)).await;
    let r = fsck(&s, false).await;
    assert_eq!(r.errors.len(), 2, "{r}");
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&gone.to_string()) && e.contains("missing")),
        "{r}"
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&big_d.to_string()) && e.contains("hashes to")),
        "{r}"
    );
    // Repair cannot invent content: both stay errors.
    let r = fsck(&s, true).await;
    assert_eq!(r.errors.len(), 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_notices_orphan_and_stray_upload_objects_and_repair_removes_them() {
    let cfg = s3_config("fsck-notices");
    let s = TestServer::start_on(&cfg).await;
    common::push_image(&s, "team/app", "v1", &[b"a layer"]).await;
    let orphan = Digest::sha256_of(b"an orphan");
    put_object(&blob_key(&cfg.prefix, &orphan), b"an orphan".to_vec()).await;
    let stray = "0b6e3c7a-stray";
    put_object(
        &Key::from(format!("{}/uploads/{stray}/tail.1", cfg.prefix)),
        b"left over".to_vec(),
    )
    .await;

    let r = fsck(&s, false).await;
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.notices.len(), 2, "{r}");
    assert!(
        r.notices
            .iter()
            .any(|n| n.contains("orphan") && n.contains(&orphan.to_string())),
        "{r}"
    );
    assert!(
        r.notices
            .iter()
            .any(|n| n.contains("stray upload") && n.contains(stray)),
        "{r}"
    );

    let r = fsck(&s, true).await;
    assert!(
        r.repaired
            .contains(&format!("removed orphan file {orphan}")),
        "{r}"
    );
    assert!(
        r.repaired.contains(&format!("removed upload {stray}")),
        "{r}"
    );
    assert!(
        !keys(&cfg.prefix, "blobs")
            .await
            .contains(&format!("blobs/sha256/{}", orphan.hex()))
    );
    assert_eq!(keys(&cfg.prefix, "uploads").await, Vec::<String>::new());
    let r = fsck(&s, false).await;
    assert!(r.is_clean() && r.notices.is_empty(), "{r}");
    let got = get_ok(&s.url(&format!(
        "/v2/team/app/blobs/{}",
        Digest::sha256_of(b"a layer")
    )))
    .await;
    assert_eq!(got, b"a layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_repair_leaves_objects_not_named_by_a_digest_and_finishes() {
    let cfg = s3_config("fsck-odd-names");
    let s = TestServer::start_on(&cfg).await;
    common::push_image(&s, "team/app", "v1", &[b"a layer"]).await;
    // Something else's objects under blobs/, and a real orphan.
    let odd = ["blobs/sha256/not-a-digest", "blobs/README"];
    for k in odd {
        put_object(&Key::from(format!("{}/{k}", cfg.prefix)), b"?".to_vec()).await;
    }
    let orphan = Digest::sha256_of(b"an orphan");
    put_object(&blob_key(&cfg.prefix, &orphan), b"an orphan".to_vec()).await;
    let stray = "9d0c7e51-stray";
    put_object(
        &Key::from(format!("{}/uploads/{stray}/tail.1", cfg.prefix)),
        b"left over".to_vec(),
    )
    .await;

    let r = fsck(&s, false).await;
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.notices.len(), 4, "{r}");
    for name in ["sha256:not-a-digest", "README"] {
        assert!(
            r.notices
                .iter()
                .any(|n| n.contains(name) && n.contains("not named by a digest")),
            "{r}"
        );
    }

    // Repair removes what kura owns and finishes, leaving the rest to the operator.
    let r = fsck(&s, true).await;
    assert!(
        r.repaired
            .contains(&format!("removed orphan file {orphan}")),
        "{r}"
    );
    assert!(
        r.repaired.contains(&format!("removed upload {stray}")),
        "{r}"
    );
    let mut left = keys(&cfg.prefix, "blobs").await;
    left.retain(|k| odd.contains(&k.as_str()));
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(keys(&cfg.prefix, "uploads").await, Vec::<String>::new());
    // The collector leaves them too.
    let r = common::gc(&s, common::opts(0)).await;
    assert_eq!(r.orphan_files_removed, 0, "{r:?}");
    assert_eq!(keys(&cfg.prefix, "blobs").await.len(), 3 + odd.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_notices_a_session_whose_objects_are_gone_and_repair_ends_it() {
    let cfg = s3_config("fsck-session");
    let s = TestServer::start_on(&cfg).await;
    let c = client();
    let r = c
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = s.url(&path_of(r.headers()["location"].to_str().unwrap()));
    let r = c
        .patch(&loc)
        .body(b"some bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = fsck(&s, false).await;
    assert!(r.is_clean() && r.notices.is_empty(), "{r}");

    let id = loc.rsplit('/').next().unwrap().to_string();
    for k in keys(&cfg.prefix, &format!("uploads/{id}")).await {
        delete_object(&Key::from(format!("{}/{k}", cfg.prefix))).await;
    }
    let r = fsck(&s, false).await;
    assert_eq!(r.notices, [format!("upload {id} has no file")], "{r}");
    let r = fsck(&s, true).await;
    assert!(r.repaired.contains(&format!("removed upload {id}")), "{r}");
    let row = s
        .registry
        .meta()
        .read(|t| kura::meta::uploads::get(t, &id))
        .unwrap();
    assert!(row.is_none());
    let r = fsck(&s, false).await;
    assert!(r.is_clean() && r.notices.is_empty(), "{r}");
    assert_eq!(c.get(&loc).send().await.unwrap().status(), 404);
}
// Writers against the collector on a bucket
// ---------------------------------------------------------------------------------------

/// Holds `d`'s lock as the collector does between re-checking that `d` has no row and deleting
/// its object; meanwhile `write` (a push of `d`) starts. Once its object appears or a bounded
/// wait passes, does what the collector does there (no row: delete the object), releases the
/// lock, lets the push finish, and asserts the registry then serves `d` as `want`: a writer
/// holds the lock from placing the object to committing its row, so the collector can never
/// leave a row without its object.
async fn race_collector<F>(
    s: &TestServer,
    prefix: &str,
    d: &Digest,
    want: &[u8],
    path: &str,
    write: F,
) where
    F: std::future::Future<Output = reqwest::StatusCode> + Send + 'static,
{
    // The collector's side, on a thread of its own (it blocks on the lock as the collector
    // does): lock, wait for the go, then re-check and delete as `remove_unless_recorded`.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (reg, digest) = (s.registry.clone(), d.clone());
    let collector = std::thread::spawn(move || {
        let name = digest.to_string();
        let _guard = reg.digest_locks().lock(&name).expect("digest lock");
        locked_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let row = reg
            .meta()
            .read(|t| kura::meta::blobs::get(t, &name))
            .unwrap();
        if row.is_none() {
            reg.store().remove_blob(&digest).unwrap();
        }
        row.is_none()
    });
    tokio::task::spawn_blocking(move || locked_rx.recv().unwrap())
        .await
        .unwrap();
    let push = tokio::spawn(write);
    for _ in 0..40 {
        if raw().head(&blob_key(prefix, d)).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    go_tx.send(()).unwrap();
    let no_row = tokio::task::spawn_blocking(move || collector.join().unwrap())
        .await
        .unwrap();
    assert!(no_row, "{d} was recorded while its lock was held");
    let status = push.await.unwrap();
    assert!(status.is_success(), "push of {d}: {status}");
    assert!(blob_row(s, d).is_some());
    assert!(
        raw().head(&blob_key(prefix, d)).await.is_ok(),
        "{d} is recorded but its object is gone"
    );
    let r = client().get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{d} is recorded but its object is gone");
    assert_eq!(r.bytes().await.unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_blob_push_racing_the_collector_keeps_its_object() {
    let cfg = s3_config("race-blob");
    let s = TestServer::start_on(&cfg).await;
    let body = b"a small blob pushed in one request".to_vec();
    let d = Digest::sha256_of(&body);
    let url = s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}"));
    let push = {
        let body = body.clone();
        async move { client().post(url).body(body).send().await.unwrap().status() }
    };
    let path = format!("/v2/team/app/blobs/{d}");
    race_collector(&s, &cfg.prefix, &d, &body, &path, push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_push_racing_the_collector_keeps_its_object() {
    let cfg = s3_config("race-manifest");
    let s = TestServer::start_on(&cfg).await;
    let config = common::push_blob(&s, "team/app", b"{}").await;
    let layer = common::push_blob(&s, "team/app", b"layer").await;
    let body = image_manifest(&(config, 2), &[(layer, 5)], json!({}));
    let d = Digest::sha256_of(&body);
    let url = s.url("/v2/team/app/manifests/v1");
    let push = {
        let body = body.clone();
        async move {
            client()
                .put(url)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let path = format!("/v2/team/app/manifests/{d}");
    race_collector(&s, &cfg.prefix, &d, &body, &path, push).await;
}
