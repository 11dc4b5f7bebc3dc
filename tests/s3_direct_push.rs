//! One-request pushes (`POST ?digest=`) on the S3 driver stream straight to the blob's key,
//! against the real gateway (Ceph RGW; tests/common/s3.rs): a multipart upload at the key,
//! completed only once the digest matched, or one PUT for a blob under a part; no session
//! object, no tail, no copy. A wrong digest or a broken body leaves nothing behind.

mod common;

use common::s3::{data, s3_config};
use common::s3_ops::{MIB, keys, multipart_uploads};
use common::{TestServer, client, error_code};
use kura::digest::Digest;

async fn post(s: &TestServer, repo: &str, digest: &Digest, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(s: &TestServer, repo: &str, digest: &Digest) -> Vec<u8> {
    let r = client()
        .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_pushes_land_at_their_key_with_no_upload_objects() {
    let cfg = s3_config("direct-push");
    let s = TestServer::start_on(&cfg).await;
    // Over two parts and a remainder (multipart at the key), and under one part (one PUT).
    for (repo, len) in [("big", 11 * MIB + 7), ("small", 3 * MIB)] {
        let bytes = data(len, len as u64);
        let d = Digest::sha256_of(&bytes);
        assert_eq!(post(&s, repo, &d, bytes.clone()).await.status(), 201);
        assert!(get(&s, repo, &d).await == bytes, "{repo}: bytes differ");
    }
    let stored = keys(&cfg.prefix, "").await;
    assert_eq!(stored.len(), 2, "only the two blobs: {stored:?}");
    assert_eq!(multipart_uploads(&cfg.prefix), Vec::<String>::new());
    assert!(
        stored.iter().all(|k| k.starts_with("blobs/sha256/")),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_request_push_with_the_wrong_digest_places_nothing() {
    let cfg = s3_config("direct-wrong");
    let s = TestServer::start_on(&cfg).await;
    for len in [11 * MIB, 3 * MIB] {
        let bytes = data(len, 9);
        let wrong = Digest::sha256_of(b"something else");
        let r = post(&s, "wrong", &wrong, bytes).await;
        assert_eq!(r.status(), 400);
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
    }
    assert_eq!(keys(&cfg.prefix, "").await, Vec::<String>::new());
    // The multipart upload started at the key for the larger one was aborted, not left.
    assert_eq!(multipart_uploads(&cfg.prefix), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_request_push_cut_mid_body_places_nothing_and_the_retry_succeeds() {
    let cfg = s3_config("direct-cut");
    let s = TestServer::start_on(&cfg).await;
    let bytes = data(12 * MIB, 3);
    let d = Digest::sha256_of(&bytes);
    // The body fails after two parts' worth: the server sees the request end early.
    let head = bytes[..10 * MIB].to_vec();
    let body = futures_util::stream::iter([
        Ok::<_, std::io::Error>(bytes::Bytes::from(head)),
        Err(std::io::Error::other("client gave up")),
    ]);
    let sent = client()
        .post(s.url(&format!("/v2/cut/blobs/uploads/?digest={d}")))
        .header("Content-Length", bytes.len().to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    assert!(sent.is_err() || !sent.unwrap().status().is_success());
    assert_eq!(keys(&cfg.prefix, "").await, Vec::<String>::new());
    // The server aborts the multipart upload once it sees the body end early (bounded wait:
    // the client may see the failure first).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !multipart_uploads(&cfg.prefix).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(multipart_uploads(&cfg.prefix), Vec::<String>::new());
    assert_eq!(post(&s, "cut", &d, bytes.clone()).await.status(), 201);
    assert!(get(&s, "cut", &d).await == bytes);
    assert_eq!(multipart_uploads(&cfg.prefix), Vec::<String>::new());
}
