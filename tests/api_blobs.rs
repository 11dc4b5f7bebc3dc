//! Blob endpoints: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` and `GET /v2/`.

mod common;

use common::*;
use kura::digest::Digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_endpoint_announces_registry_2_0() {
    let s = TestServer::start().await;
    let r = client().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let r = client().get(s.url("/v2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_get_and_head_return_content_digest_length_and_etag() {
    let s = TestServer::start().await;
    let data = b"0123456789".repeat(1000);
    let d = push_blob(&s, "lib/app", &data).await;
    let r = client()
        .get(s.url(&format!("/v2/lib/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["docker-content-digest"], d.to_string().as_str());
    assert_eq!(h["content-length"], "10000");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["etag"], format!("\"{d}\"").as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    let r = client()
        .head(s.url(&format!("/v2/lib/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "10000");
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_range_requests_return_206_or_416() {
    let s = TestServer::start().await;
    let data: Vec<u8> = (0..=255u8).collect();
    let d = push_blob(&s, "r", &data).await;
    let get = |range: &'static str| {
        client()
            .get(s.url(&format!("/v2/r/blobs/{d}")))
            .header("Range", range)
            .send()
    };
    let r = get("bytes=10-19").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/256");
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);

    let r = get("bytes=-6").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[250..]);

    let r = get("bytes=250-").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[250..]);

    let r = get("bytes=256-300").await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_unknown_and_malformed_requests_get_spec_errors() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "here", b"x").await;
    let c = client();
    let r = c
        .get(s.url(&format!("/v2/elsewhere/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = c
        .head(s.url(&format!("/v2/elsewhere/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(s.url("/v2/here/blobs/sha256:abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c
        .get(s.url(&format!("/v2/Bad_Name/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "NAME_INVALID");
    let r = c
        .post(s.url(&format!("/v2/here/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_delete_unlinks_from_one_repository_only() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "one", b"shared").await;
    push_blob(&s, "two", b"shared").await;
    let c = client();
    let r = c
        .delete(s.url(&format!("/v2/one/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .get(s.url(&format!("/v2/one/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(s.url(&format!("/v2/two/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .delete(s.url(&format!("/v2/one/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_files_are_flat_and_digest_named() {
    let s = TestServer::start().await;
    let d = push_blob(&s, "flat", b"layout").await;
    let path = s.dir.path().join("blobs/sha256").join(d.hex());
    assert_eq!(std::fs::read(path).unwrap(), b"layout");
    assert_eq!(Digest::sha256_of(b"layout"), d);
}
