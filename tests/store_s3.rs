//! The S3 blob driver against a real S3 server (Ceph RGW; see tests/common/s3.rs): uploads in
//! parts with a tail, restarts, rollbacks, verification, cancels, ranges, listing, deletes and
//! presigned URLs. Part size 5 MiB (S3's minimum), so a few parts stay small.

mod common;

use std::io;

use common::s3::{BUCKET, HeldRelay, Scratch, data, gateway, raw, s3_config};
use futures_util::{FutureExt, StreamExt};
use kura::config::MIN_PART_SIZE;
use kura::digest::Digest;
use kura::store::s3::{S3Store, S3Upload};
use kura::store::{CommitError, Listed};
use object_store::ObjectStore;
use object_store::multipart::MultipartStore;
use object_store::path::Path;

const PART: usize = MIN_PART_SIZE as usize;

/// A store on a fresh prefix, deleted when the test ends.
fn open(test: &str) -> (S3Store, Scratch) {
    let cfg = s3_config(test);
    let store = S3Store::open(&cfg).expect("open S3 store");
    (store, Scratch(cfg.prefix))
}

/// Every key under `prefix`, relative to it.
async fn keys(prefix: &str) -> Vec<String> {
    let root = Path::from(prefix);
    let mut out: Vec<String> = raw()
        .list(Some(&root))
        .map(|m| m.unwrap().location.as_ref()[prefix.len() + 1..].to_string())
        .collect()
        .await;
    out.sort();
    out
}

/// One request's worth of appends, ended as the registry ends one.
async fn request(u: &mut S3Upload, bytes: &[u8], chunk: usize) {
    for c in bytes.chunks(chunk) {
        u.push(c).await.unwrap();
    }
    u.flush().await.unwrap();
    assert!(!u.is_open(), "an idle session holds no buffers");
}

async fn body_bytes(store: &S3Store, d: &Digest, start: u64, len: u64) -> Vec<u8> {
    let mut body = store
        .read_range(d, start, len)
        .await
        .unwrap()
        .expect("blob");
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

#[tokio::test]
async fn a_chunked_upload_spans_several_parts_and_a_small_tail_and_publishes_only_the_blob() {
    let (store, prefix) = open("chunked");
    let bytes = data(2 * PART + 3 * 1024 * 1024 + 777, 1);
    let d = Digest::sha256_of(&bytes);
    let mut u = store.create_upload("u1").unwrap();
    // Three requests: one within a part, one crossing two part boundaries, the rest.
    let cuts = [3 * 1024 * 1024, 2 * PART + 100, bytes.len()];
    let mut from = 0;
    for to in cuts {
        request(&mut u, &bytes[from..to], 64 * 1024 + 3).await;
        from = to;
        let st = u.state();
        assert_eq!(u.len(), to as u64);
        assert_eq!(st.parts.len() as u64, to as u64 / PART as u64);
        assert_eq!(st.parts_len + st.tail_len, to as u64);
        assert_eq!(st.multipart.is_some(), to >= PART);
    }
    let before = keys(&prefix).await;
    assert!(
        before.contains(&"uploads/u1/session".to_string()),
        "{before:?}"
    );
    assert!(
        !before.iter().any(|k| k.starts_with("blobs/")),
        "{before:?}"
    );
    let v = u.verify(&store, &d).unwrap();
    assert_eq!(v.size(), bytes.len() as u64);
    assert!(
        store.stat(&d).unwrap().is_none(),
        "nothing under the digest before publish"
    );
    assert_eq!(v.publish(&store, false).unwrap(), bytes.len() as u64);
    assert_eq!(store.stat(&d).unwrap(), Some(bytes.len() as u64));
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), bytes);
    assert_eq!(keys(&prefix).await, vec![blob_key(&d)]);
}

#[tokio::test]
async fn a_small_upload_without_parts_publishes_its_tail() {
    let (store, prefix) = open("small");
    let bytes = data(300 * 1024, 2);
    let d = Digest::sha256_of(&bytes);
    let mut u = store.create_upload("s1").unwrap();
    // Each request writes a new tail generation; the one it replaced stays until the next
    // request (the row may still name it), older ones are deleted.
    for (i, from) in (0..5).map(|i| (i, i * 1000)) {
        request(&mut u, &bytes[from..from + 1000], 4096).await;
        let g = u.state().tail_gen;
        let tails: Vec<String> = keys(&prefix)
            .await
            .into_iter()
            .filter(|k| k.starts_with("uploads/s1/tail."))
            .collect();
        let mut want = vec![format!("uploads/s1/tail.{g}")];
        if i > 0 {
            want.insert(0, format!("uploads/s1/tail.{}", g - 1));
        }
        assert_eq!(tails, want, "after request {i}");
    }
    request(&mut u, &bytes[5000..], 4096).await;
    assert!(u.state().multipart.is_none());
    let v = u.verify(&store, &d).unwrap();
    v.publish(&store, false).unwrap();
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), bytes);
    assert_eq!(keys(&prefix).await, vec![blob_key(&d)]);
    // An empty upload publishes an empty blob.
    let empty = Digest::sha256_of(b"");
    let u = store.create_upload("s2").unwrap();
    u.verify(&store, &empty)
        .unwrap()
        .publish(&store, false)
        .unwrap();
    assert_eq!(store.stat(&empty).unwrap(), Some(0));
}

#[tokio::test]
async fn an_upload_resumed_after_a_restart_continues_and_is_verified_by_reading_it_back() {
    let (store, prefix) = open("resume");
    for (id, len, cut) in [
        ("r-parts", 2 * PART + 4321, PART + 999),
        ("r-tail", 100_000, 40_000),
    ] {
        let bytes = data(len, 3);
        let d = Digest::sha256_of(&bytes);
        let mut u = store.create_upload(id).unwrap();
        request(&mut u, &bytes[..cut], 1 << 20).await;
        let (state, at) = (u.state(), u.len());
        drop(u); // the process stops; only the row's state survives
        let store2 = S3Store::open(&s3_config_for(&prefix)).unwrap();
        let mut u = store2
            .resume_upload(id, &state, at)
            .unwrap()
            .expect("session");
        assert_eq!(u.len(), cut as u64);
        request(&mut u, &bytes[cut..], 1 << 20).await;
        let v = u.verify(&store2, &d).unwrap();
        v.publish(&store2, false).unwrap();
        assert_eq!(store2.read_blob(&d).unwrap().unwrap(), bytes, "{id}");
    }
    assert!(
        !keys(&prefix)
            .await
            .iter()
            .any(|k| k.starts_with("uploads/"))
    );
    // A session whose objects are gone is unknown; a state that does not add up is an error.
    let state = kura::store::UploadState::default();
    assert!(store.resume_upload("gone", &state, 0).unwrap().is_none());
    store.create_upload("odd").unwrap();
    assert!(store.resume_upload("odd", &state, 5).is_err());
}

/// The config of an existing prefix (a second process on the same bucket).
fn s3_config_for(prefix: &str) -> kura::config::StorageConfig {
    kura::config::StorageConfig {
        prefix: prefix.to_string(),
        ..s3_config("unused")
    }
}

#[tokio::test]
async fn a_failed_request_rolls_back_to_its_checkpoint_even_after_sending_parts() {
    let (store, _prefix) = open("rollback");
    let good = data(2 * PART + 5000, 4);
    let d = Digest::sha256_of(&good);
    let mut u = store.create_upload("rb").unwrap();
    request(&mut u, &good[..1000], 1000).await;
    // A request that streams two parts of wrong bytes (the first one acknowledged by S3),
    // then fails.
    let cp = u.checkpoint();
    u.push(&data(2 * PART + 10, 99)).await.unwrap();
    u.rollback(cp).await.unwrap();
    assert_eq!(u.len(), 1000);
    assert!(u.state().parts.is_empty());
    request(&mut u, &good[1000..], 1 << 20).await;
    let v = u.verify(&store, &d).unwrap();
    v.publish(&store, false).unwrap();
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), good);
}

#[tokio::test]
async fn a_digest_mismatch_leaves_nothing_behind() {
    let (store, prefix) = open("mismatch");
    for (id, len) in [("m-parts", PART + 1234), ("m-tail", 5000)] {
        let bytes = data(len, 5);
        let wrong = Digest::sha256_of(b"something else");
        let mut u = store.create_upload(id).unwrap();
        request(&mut u, &bytes, 1 << 20).await;
        match u.verify(&store, &wrong) {
            Err(CommitError::DigestMismatch { actual, .. }) => {
                assert_eq!(actual, Digest::sha256_of(&bytes))
            }
            Err(e) => panic!("{id}: {e}"),
            Ok(_) => panic!("{id}: verified the wrong digest"),
        }
        assert!(store.stat(&wrong).unwrap().is_none());
    }
    // Also when the hash is recomputed from the object (after a restart).
    let bytes = data(PART + 1, 6);
    let mut u = store.create_upload("m-resumed").unwrap();
    request(&mut u, &bytes, 1 << 20).await;
    let (state, len) = (u.state(), u.len());
    drop(u);
    let u = store
        .resume_upload("m-resumed", &state, len)
        .unwrap()
        .unwrap();
    let wrong = Digest::sha256_of(b"x");
    assert!(matches!(
        u.verify(&store, &wrong),
        Err(CommitError::DigestMismatch { .. })
    ));
    assert_eq!(keys(&prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn cancelling_an_upload_aborts_its_multipart_upload_and_deletes_its_objects() {
    let (store, prefix) = open("cancel");
    let s3 = raw();
    // With the state from the row, and without it (the collector's stray sweep).
    for (id, with_state) in [("c-state", true), ("c-stray", false)] {
        let mut u = store.create_upload(id).unwrap();
        request(&mut u, &data(PART + 50, 7), 1 << 20).await;
        let state = u.state();
        let m = state.multipart.clone().expect("a multipart upload");
        drop(u);
        store
            .remove_upload(id, with_state.then_some(&state))
            .unwrap();
        let key = Path::from(format!("{prefix}/uploads/{id}/data"));
        let err = s3
            .put_part(&key, &m, 0, object_store::PutPayload::from_static(b"x"))
            .await;
        assert!(err.is_err(), "{id}: the multipart upload still takes parts");
    }
    assert_eq!(keys(&prefix).await, Vec::<String>::new());
    // Removing what is not there is no error.
    store.remove_upload("never", None).unwrap();
}

#[tokio::test]
async fn ranges_at_the_edges_read_exactly_the_bytes_asked_for() {
    let (store, _prefix) = open("ranges");
    let bytes = data(2 * PART + 12345, 8);
    let d = Digest::sha256_of(&bytes);
    store.put_verified(&d, &bytes, false).unwrap();
    let n = bytes.len() as u64;
    let p = PART as u64;
    for (start, len) in [
        (0, 1),
        (n - 1, 1),
        (0, n),
        (p - 1, 2),
        (p, p),
        (1, n - 2),
        (2 * p, n - 2 * p),
    ] {
        let got = body_bytes(&store, &d, start, len).await;
        assert_eq!(got.len() as u64, len, "{start}+{len}");
        assert!(
            got == bytes[start as usize..(start + len) as usize],
            "{start}+{len}"
        );
    }
    assert!(body_bytes(&store, &d, 5, 0).await.is_empty());
    // A range past the end fails instead of truncating the body: at once when its first
    // part is short, else with an error ending the stream.
    assert!(store.read_range(&d, n - 10, 20).await.is_err());
    let mut body = store.read_range(&d, 0, n + 10).await.unwrap().unwrap();
    let mut failed = false;
    while let Some(c) = body.next().await {
        failed |= c.is_err();
    }
    assert!(failed, "a short body must end in an error");
}

#[tokio::test]
async fn missing_objects_read_as_none() {
    let (store, _prefix) = open("missing");
    let d = Digest::sha256_of(b"not stored");
    assert_eq!(store.stat(&d).unwrap(), None);
    assert_eq!(store.read_blob(&d).unwrap(), None);
    assert!(store.read_range(&d, 0, 10).await.unwrap().is_none());
    assert!(store.read_range(&d, 0, 0).await.unwrap().is_none());
    assert_eq!(store.hash_blob(&d, &mut |_| {}).unwrap(), None);
    store.remove_blob(&d).unwrap();
}

#[tokio::test]
async fn listing_names_blobs_by_digest_and_uploads_by_id_and_deletes_remove_them() {
    let (store, prefix) = open("listing");
    let blobs: Vec<(Digest, Vec<u8>)> = (0..5)
        .map(|i| {
            let b = data(1000 + i, 10 + i as u64);
            (Digest::sha256_of(&b), b)
        })
        .collect();
    for (d, b) in &blobs {
        store.put_verified(d, b, false).unwrap();
    }
    let list_blobs = |store: &S3Store| {
        let mut seen: Vec<Listed> = Vec::new();
        store
            .list_blobs(&mut |l| {
                seen.push(l);
                Ok(())
            })
            .unwrap();
        seen.sort_by(|a, b| a.name.cmp(&b.name));
        seen
    };
    let seen = list_blobs(&store);
    let mut want: Vec<(String, u64)> = blobs
        .iter()
        .map(|(d, b)| (d.to_string(), b.len() as u64))
        .collect();
    want.sort();
    assert_eq!(
        seen.iter()
            .map(|l| (l.name.clone(), l.size))
            .collect::<Vec<_>>(),
        want
    );
    // Uploads: one with only its session object, one holding a tail.
    store.create_upload("a-empty").unwrap();
    let mut u = store.create_upload("b-tail").unwrap();
    request(&mut u, &data(777, 1), 100).await;
    let mut ups = Vec::new();
    store
        .list_uploads(&mut |l| {
            ups.push((l.name, l.size));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        ups,
        vec![("a-empty".to_string(), 0), ("b-tail".to_string(), 777)]
    );
    // An error from the callback stops the listing and is returned.
    let mut calls = 0;
    let err = store.list_blobs(&mut |_| {
        calls += 1;
        Err(io::Error::other("stop"))
    });
    assert!(err.is_err() && calls == 1);
    // One delete, then a batch including a digest that is not there.
    store.remove_blob(&blobs[0].0).unwrap();
    assert_eq!(list_blobs(&store).len(), 4);
    let mut rest: Vec<Digest> = blobs[1..].iter().map(|(d, _)| d.clone()).collect();
    rest.push(Digest::sha256_of(b"never stored"));
    store.remove_blobs(&rest).unwrap();
    assert!(list_blobs(&store).is_empty());
    store.remove_upload("a-empty", None).unwrap();
    store.remove_upload("b-tail", Some(&u.state())).unwrap();
    assert_eq!(keys(&prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn hashing_a_blob_streams_it_through_the_digest_algorithm() {
    let (store, _prefix) = open("hash");
    let bytes = data(3 * 1024 * 1024 + 5, 12);
    let d = Digest::sha256_of(&bytes);
    store.put_verified(&d, &bytes, false).unwrap();
    let mut seen = 0;
    let got = store.hash_blob(&d, &mut |n| seen += n).unwrap();
    assert_eq!(got, Some((d, bytes.len() as u64)));
    assert_eq!(seen, bytes.len() as u64);
    // A blob whose object does not match its name hashes to what it holds.
    let liar = Digest::sha256_of(b"claimed");
    store.put_verified(&liar, b"actual", false).unwrap();
    let (actual, _) = store.hash_blob(&liar, &mut |_| {}).unwrap().unwrap();
    assert_eq!(actual, Digest::sha256_of(b"actual"));
}

#[tokio::test]
async fn a_recorded_blob_in_place_is_kept_and_an_unrecorded_one_is_replaced() {
    let (store, prefix) = open("publish");
    let bytes = data(10_000, 13);
    let d = Digest::sha256_of(&bytes);
    // An orphan with the wrong bytes under the digest (unrecorded): replaced.
    store.put_verified(&d, b"garbage", false).unwrap();
    let mut u = store.create_upload("p1").unwrap();
    request(&mut u, &bytes, 4096).await;
    u.verify(&store, &d)
        .unwrap()
        .publish(&store, false)
        .unwrap();
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), bytes);
    // Recorded: the object in place stays, the session's objects go.
    let mut u = store.create_upload("p2").unwrap();
    request(&mut u, &bytes, 4096).await;
    u.verify(&store, &d).unwrap().publish(&store, true).unwrap();
    store.put_verified(&d, &bytes, true).unwrap();
    assert_eq!(keys(&prefix).await, vec![blob_key(&d)]);
}

#[tokio::test]
async fn a_presigned_url_serves_the_bytes_without_credentials() {
    let (store, _prefix) = open("presign");
    let bytes = data(70_000, 14);
    let d = Digest::sha256_of(&bytes);
    store.put_verified(&d, &bytes, false).unwrap();
    let url = store.presign_get(&d).await.unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(!url.contains(&gateway().secret_key));
    let r = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..]);
    // The same URL without its signature is refused.
    let bare = url.split('?').next().unwrap();
    let r = reqwest::Client::new().get(bare).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_probe_round_trips_and_a_missing_bucket_fails_to_open_clearly() {
    let (store, prefix) = open("probe");
    store.probe().unwrap();
    assert_eq!(keys(&prefix).await, Vec::<String>::new());
    assert!(
        store
            .describe()
            .contains(&format!("s3://{BUCKET}/{prefix}"))
    );
    let cfg = kura::config::StorageConfig {
        bucket: "kura-no-such-bucket".into(),
        ..s3_config("probe-missing")
    };
    let err = S3Store::open(&cfg).unwrap_err().to_string();
    assert!(err.contains("kura-no-such-bucket"), "{err}");
}

#[tokio::test]
async fn a_request_dropped_midway_loses_no_accepted_bytes() {
    // S3 is reached through a relay that holds requests while the test drops them, so each
    // drop certainly happens while the S3 call is in flight.
    let relay = HeldRelay::start();
    let cfg = kura::config::StorageConfig {
        endpoint: relay.endpoint.clone(),
        ..s3_config("cancelled")
    };
    let _scratch = Scratch(cfg.prefix.clone());
    let store = S3Store::open(&cfg).unwrap();
    let bytes = data(PART + 300_000, 15);
    let d = Digest::sha256_of(&bytes);
    let mut u = store.create_upload("x1").unwrap();
    request(&mut u, &bytes[..100_000], 1 << 20).await;
    // The request is dropped (client gone, server stopping) while its tail is being written.
    u.push(&bytes[100_000..200_000]).await.unwrap();
    relay.hold(true);
    assert!(
        u.flush().now_or_never().is_none(),
        "the flush was still writing when dropped"
    );
    assert_eq!(u.len(), 200_000);
    // Dropped again while its first part (and the multipart upload) is being started: what
    // was accepted is what `len` says, the rest is the client's to send again.
    assert!(
        u.push(&bytes[200_000..]).now_or_never().is_none(),
        "the push was still sending when dropped"
    );
    relay.hold(false);
    let at = u.len() as usize;
    assert!(at > 200_000 && at < bytes.len(), "{at}");
    // The next request continues where the accepted bytes end.
    request(&mut u, &bytes[at..], 1 << 20).await;
    assert!(u.state().multipart.is_some());
    u.verify(&store, &d)
        .unwrap()
        .publish(&store, false)
        .unwrap();
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), bytes);
}

#[tokio::test]
async fn a_blob_over_the_single_copy_limit_is_published_by_a_multipart_copy() {
    // Uploaded in two 10 MiB parts (the second short), copied in three of 5 MiB.
    let cfg = kura::config::StorageConfig {
        part_size: 2 * PART as u64,
        ..s3_config("bigcopy")
    };
    let _scratch = Scratch(cfg.prefix.clone());
    // S3 copies at most 5 GiB in one request; here the limit is one 5 MiB part.
    let store = S3Store::open(&cfg)
        .unwrap()
        .with_copy_limits(PART as u64, PART as u64);
    let bytes = data(2 * PART + 4000, 16);
    let d = Digest::sha256_of(&bytes);
    let mut u = store.create_upload("big").unwrap();
    request(&mut u, &bytes, 1 << 20).await;
    let v = u.verify(&store, &d).unwrap();
    assert_eq!(v.publish(&store, false).unwrap(), bytes.len() as u64);
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), bytes);
    // A multipart object's ETag ends in its part count (RGW keeps the source's on a plain
    // copy: "-2").
    let key = Path::from(format!("{}/{}", cfg.prefix, blob_key(&d)));
    let meta = object_store::ObjectStoreExt::head(&raw(), &key)
        .await
        .unwrap();
    let etag = meta.e_tag.unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    assert_eq!(keys(&cfg.prefix).await, vec![blob_key(&d)]);
}
