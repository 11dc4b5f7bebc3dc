//! Upload endpoints: `POST /v2/<name>/blobs/uploads/` (start, monolithic, mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>` (OCI distribution spec, "Push").

mod common;

use common::*;
use kura::digest::{Algorithm, Digest};

async fn start_upload(s: &TestServer, repo: &str) -> String {
    let r = client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-0");
    assert!(r.headers().contains_key("docker-upload-uuid"));
    r.headers()["location"].to_str().unwrap().to_string()
}

fn with_digest(location: &str, d: &Digest) -> String {
    format!("{location}?digest={d}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_then_put_uploads_a_blob_monolithically() {
    let s = TestServer::start().await;
    let loc = start_upload(&s, "mono").await;
    let data = b"monolithic".to_vec();
    let d = Digest::sha256_of(&data);
    let r = client()
        .put(with_digest(&loc, &d))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    let blob_url = r.headers()["location"].to_str().unwrap().to_string();
    assert!(blob_url.ends_with(&format!("/v2/mono/blobs/{d}")));
    let got = client()
        .get(blob_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_reports_range_and_rejects_out_of_order_chunks() {
    let s = TestServer::start().await;
    let c = client();
    let loc = start_upload(&s, "chunks").await;
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let r = c
        .patch(&loc)
        .header("Content-Range", "0-999")
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-999");
    let loc = r.headers()["location"].to_str().unwrap().to_string();

    // Out of order: must be 416 and leave the session as it was.
    let r = c
        .patch(&loc)
        .header("Content-Range", "1500-1999")
        .body(data[1500..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-999");

    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-999");
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/v2/chunks/blobs/uploads/")
    );

    // Streamed PATCH without Content-Range appends.
    let r = c
        .patch(&loc)
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-1999");

    // Final chunk in the closing PUT.
    let d = Digest::sha256_of(&data);
    let r = c
        .put(with_digest(&loc, &d))
        .header("Content-Range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = c
        .get(s.url(&format!("/v2/chunks/blobs/{d}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());

    // The session is closed.
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_whose_length_disagrees_with_content_range_is_rolled_back() {
    let s = TestServer::start().await;
    let c = client();
    let loc = start_upload(&s, "short").await;
    let r = c
        .patch(&loc)
        .header("Content-Range", "0-99")
        .body(vec![1u8; 50])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatch_is_rejected_and_stores_nothing() {
    let s = TestServer::start().await;
    let c = client();
    let loc = start_upload(&s, "bad").await;
    let wrong = Digest::sha256_of(b"something else");
    let r = c
        .put(with_digest(&loc, &wrong))
        .body(b"actual".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c
        .head(s.url(&format!("/v2/bad/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let actual = Digest::sha256_of(b"actual");
    let r = c
        .head(s.url(&format!("/v2/bad/blobs/{actual}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!s.dir.path().join("blobs/sha256").join(wrong.hex()).exists());
    assert!(
        !s.dir
            .path()
            .join("blobs/sha256")
            .join(actual.hex())
            .exists()
    );
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );

    // Single-POST monolithic upload with a wrong digest: same outcome.
    let r = c
        .post(s.url(&format!("/v2/bad/blobs/uploads/?digest={wrong}")))
        .body(b"actual".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha512_and_blake3_digests_are_accepted() {
    let s = TestServer::start().await;
    let c = client();
    for alg in [Algorithm::Sha512, Algorithm::Blake3] {
        let data = format!("content for {}", alg.as_str()).into_bytes();
        let d = Digest::of(alg, &data);
        let r = c
            .post(s.url(&format!("/v2/algs/blobs/uploads/?digest={d}")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{d}");
        let got = c
            .get(s.url(&format!("/v2/algs/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.headers()["docker-content-digest"],
            d.to_string().as_str()
        );
        assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_the_session_and_its_file() {
    let s = TestServer::start().await;
    let c = client();
    let loc = start_upload(&s, "cancel").await;
    c.patch(&loc).body(vec![7u8; 100]).send().await.unwrap();
    let r = c.delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    let r = c.delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_sessions_belong_to_their_repository() {
    let s = TestServer::start().await;
    let loc = start_upload(&s, "owner").await;
    let id = loc.rsplit('/').next().unwrap();
    let r = client()
        .get(s.url(&format!("/v2/intruder/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = client()
        .get(s.url("/v2/owner/blobs/uploads/not-a-session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_put_without_digest_is_invalid() {
    let s = TestServer::start().await;
    let loc = start_upload(&s, "nodigest").await;
    let r = client().put(&loc).body(b"x".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_repository_mount_links_or_falls_back_to_upload() {
    let s = TestServer::start().await;
    let c = client();
    let d = push_blob(&s, "source", b"mount me").await;
    let r = c
        .post(s.url(&format!("/v2/target/blobs/uploads/?mount={d}&from=source")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/v2/target/blobs/{d}"))
    );
    let got = c
        .get(s.url(&format!("/v2/target/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"mount me");

    // Unknown in `from`: 202 and an upload session instead.
    let other = Digest::sha256_of(b"absent");
    let r = c
        .post(s.url(&format!(
            "/v2/target/blobs/uploads/?mount={other}&from=source"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/v2/target/blobs/uploads/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_session_survives_a_server_restart() {
    survives_restart(kura::config::StorageConfig::default(), 5000, 3000).await;
}

/// On S3 the first request leaves a multipart part and a tail object; after the restart the
/// session continues from the part list and tail its row recorded, and is verified by reading
/// the completed object back (the inline hash state did not survive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_session_survives_a_server_restart_on_s3() {
    let storage = common::s3::s3_config("upload-restart");
    survives_restart(storage, 12 << 20, 7 << 20).await;
}

async fn survives_restart(storage: kura::config::StorageConfig, len: usize, first: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4099) as u8).collect();
    let d = Digest::sha256_of(&data);
    let id = {
        let reg = kura::registry::Registry::open_with(dir.path(), &storage).unwrap();
        let repo = kura::names::RepoName::parse("resume").unwrap();
        let id = reg.start_upload(&repo, "ip:127.0.0.1").await.unwrap();
        let chunk = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            data[..first].to_vec(),
        ))]);
        reg.append(&repo, &id, None, chunk).await.unwrap();
        id
    };
    let reg = kura::registry::Registry::open_with(dir.path(), &storage).unwrap();
    let repo = kura::names::RepoName::parse("resume").unwrap();
    assert_eq!(reg.upload_status(&repo, &id).await.unwrap(), first as u64);
    let rest = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
        data[first..].to_vec(),
    ))]);
    let range = (first as u64, len as u64 - 1);
    reg.finish_upload(&repo, &id, &d, Some(range), rest)
        .await
        .unwrap();
    assert_eq!(reg.blob_size(&repo, &d).unwrap(), len as u64);
    let body = reg.blob_body(&repo, &d, 0, len as u64).await.unwrap();
    let got: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(body).await.unwrap();
    assert!(got.concat() == data, "the blob read back differs");
}

/// `POST ?digest=` verifies small bodies in memory and streams larger ones through an upload
/// file; both sides of that limit (64 KiB) store exactly the verified bytes, refuse a wrong
/// digest with nothing left behind, and share one file between repositories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_post_upload_is_verified_on_both_sides_of_the_in_memory_limit() {
    let s = TestServer::start().await;
    let c = client();
    for (i, len) in [0usize, 1, 65_536, 65_537, (1 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        let d = Digest::sha256_of(&data);
        let wrong = Digest::sha256_of(format!("not {len}").as_bytes());
        let r = c
            .post(s.url(&format!("/v2/small/blobs/uploads/?digest={wrong}")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{len}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
        assert!(!s.dir.path().join("blobs/sha256").join(d.hex()).exists());
        for repo in ["small/a", "small/b"] {
            let r = c
                .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{len}");
            let got = c
                .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200);
            assert_eq!(
                got.bytes().await.unwrap().as_ref(),
                data.as_slice(),
                "{len}"
            );
        }
        assert_eq!(
            std::fs::read(s.dir.path().join("blobs/sha256").join(d.hex())).unwrap(),
            data
        );
    }
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}
