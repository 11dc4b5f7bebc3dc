//! Manifest endpoints: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

mod common;

use common::*;
use kura::digest::{Algorithm, Digest};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_is_returned_byte_for_byte_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (body, d) = push_image(&s, "img", "v1", &[b"layer-a", b"layer-b"]).await;
    let c = client();
    for reference in ["v1".to_string(), d.to_string()] {
        let r = c
            .get(s.url(&format!("/v2/img/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());
        let r = c
            .head(s.url(&format!("/v2/img/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_put_returns_location_and_digest_and_keeps_odd_formatting() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "fmt", b"{}").await;
    // Unusual whitespace and key order must survive: the registry stores exact bytes.
    let body = format!(
        "{{\n  \"mediaType\" : \"{DOCKER_MANIFEST}\",\n\t\"schemaVersion\": 2,\n  \"config\": {{\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"size\": 2, \"digest\": \"{cfg}\"}},\n  \"layers\": []\n}}\n"
    );
    let r = put_manifest(&s, "fmt", "latest", DOCKER_MANIFEST, body.as_bytes()).await;
    assert_eq!(r.status(), 201);
    let d = Digest::sha256_of(body.as_bytes());
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/v2/fmt/manifests/{d}"))
    );
    assert!(!r.headers().contains_key("oci-subject"));
    let got = client()
        .get(s.url("/v2/fmt/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], DOCKER_MANIFEST);
    assert_eq!(got.bytes().await.unwrap().as_ref(), body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_push_by_digest_must_match_body() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "bydigest", b"{}").await;
    let body = image_manifest(&(cfg, 2), &[], json!({}));
    let right = Digest::sha256_of(&body);
    let r = put_manifest(&s, "bydigest", &right.to_string(), OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    let wrong = Digest::sha256_of(b"nope");
    let r = put_manifest(&s, "bydigest", &wrong.to_string(), OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // A sha512 reference is verified with sha512.
    let d512 = Digest::of(Algorithm::Sha512, &body);
    let r = put_manifest(&s, "bydigest", &d512.to_string(), OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["docker-content-digest"],
        d512.to_string().as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_referencing_missing_blobs_is_rejected_with_manifest_blob_unknown() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "missing", b"{}").await;
    let absent = Digest::sha256_of(b"never uploaded");
    let body = image_manifest(&(cfg.clone(), 2), &[(absent.clone(), 14)], json!({}));
    let r = put_manifest(&s, "missing", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(v["errors"][0]["detail"]["missing"][0], absent.to_string());
    // A blob present in another repository does not count.
    let other = push_blob(&s, "other", b"never uploaded").await;
    assert_eq!(other, absent);
    let r = put_manifest(&s, "missing", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 400);
    // Nothing was recorded.
    let r = client()
        .get(s.url("/v2/missing/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_manifests_get_manifest_invalid() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "bad", b"{}").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (OCI_MANIFEST, json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).to_string().into_bytes()),
        (OCI_INDEX, image_manifest(&(cfg.clone(), 2), &[], json!({}))),
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", json!({"schemaVersion": 1, "fsLayers": []}).to_string().into_bytes()),
        (OCI_MANIFEST, json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, "layers": []}).to_string().into_bytes()),
    ];
    for (mt, body) in cases {
        let r = put_manifest(&s, "bad", "v1", mt, &body).await;
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(&body));
        assert_eq!(
            error_code(r).await,
            "MANIFEST_INVALID",
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_manifest_gets_413() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "big", b"{}").await;
    let pad = "x".repeat(4 * 1024 * 1024 + 1);
    let body = image_manifest(&(cfg, 2), &[], json!({"annotations": {"pad": pad}}));
    let r = put_manifest(&s, "big", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tag_and_name_are_rejected() {
    let s = TestServer::start().await;
    let r = put_manifest(&s, "repo", "-bad-tag", OCI_MANIFEST, b"{}").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "TAG_INVALID");
    let r = put_manifest(&s, "Repo", "v1", OCI_MANIFEST, b"{}").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "NAME_INVALID");
}

/// GET/HEAD/DELETE by a reference that is neither a valid tag nor a digest name no manifest:
/// 404 `MANIFEST_UNKNOWN`, as the conformance suite v1.1.1 expects for
/// `.INVALID_MANIFEST_NAME`; a malformed digest stays 400 `DIGEST_INVALID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_by_an_invalid_tag_is_manifest_unknown() {
    let s = TestServer::start().await;
    push_image(&s, "repo", "v1", &[b"layer"]).await;
    let c = client();
    for reference in [".INVALID_MANIFEST_NAME", "-bad-tag", "a%2Fb"] {
        let url = s.url(&format!("/v2/repo/manifests/{reference}"));
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "GET {reference}");
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "HEAD {reference}");
        let r = c.delete(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "DELETE {reference}");
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    }
    let r = c
        .get(s.url("/v2/repo/manifests/sha256:zz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c.get(s.url("/v2/repo/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_requires_its_children_and_docker_list_is_accepted() {
    let s = TestServer::start().await;
    let (a, da) = push_image(&s, "multi", "amd64", &[b"amd64 layer"]).await;
    let (b, db) = push_image(&s, "multi", "arm64", &[b"arm64 layer"]).await;
    for (mt, child_mt) in [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, OCI_MANIFEST)] {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "manifests": [
                {"mediaType": child_mt, "digest": da.to_string(), "size": a.len(), "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": child_mt, "digest": db.to_string(), "size": b.len(), "platform": {"architecture": "arm64", "os": "linux"}},
            ]
        })
        .to_string();
        let r = put_manifest(&s, "multi", "latest", mt, index.as_bytes()).await;
        assert_eq!(r.status(), 201, "{mt}");
        let got = client()
            .get(s.url("/v2/multi/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.headers()["content-type"], mt);
        assert_eq!(got.bytes().await.unwrap().as_ref(), index.as_bytes());
    }
    let absent = Digest::sha256_of(b"no such child");
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": absent.to_string(), "size": 10}]});
    let r = put_manifest(
        &s,
        "multi",
        "broken",
        OCI_INDEX,
        index.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_with_subject_returns_oci_subject_even_before_the_subject_exists() {
    let s = TestServer::start().await;
    let cfg = push_blob(&s, "sig", b"{}").await;
    let subject = Digest::sha256_of(b"not pushed yet");
    let body = image_manifest(
        &(cfg, 2),
        &[],
        json!({"artifactType": "application/vnd.example.sig", "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 14}}),
    );
    let d = Digest::sha256_of(&body);
    let r = put_manifest(&s, "sig", &d.to_string(), OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"], subject.to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_tag_removes_only_the_tag_and_by_digest_removes_the_revision() {
    let s = TestServer::start().await;
    let (_, d) = push_image(&s, "del", "one", &[b"l"]).await;
    let r = put_manifest(
        &s,
        "del",
        "two",
        OCI_MANIFEST,
        &client()
            .get(s.url("/v2/del/manifests/one"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let c = client();
    let r = c
        .delete(s.url("/v2/del/manifests/one"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        c.get(s.url("/v2/del/manifests/one"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(s.url("/v2/del/manifests/two"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(s.url(&format!("/v2/del/manifests/{d}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let r = c
        .delete(s.url(&format!("/v2/del/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .get(s.url(&format!("/v2/del/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    assert_eq!(
        c.get(s.url("/v2/del/manifests/two"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let r = c
        .delete(s.url(&format!("/v2/del/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .delete(s.url("/v2/del/manifests/never"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .delete(s.url("/v2/nosuchrepo/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_manifests_and_repositories_are_404() {
    let s = TestServer::start().await;
    push_image(&s, "known", "v1", &[b"x"]).await;
    let c = client();
    let r = c.get(s.url("/v2/known/manifests/v2")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = c
        .get(s.url("/v2/unknown/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let r = c
        .head(s.url("/v2/known/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retag_moves_the_tag_to_the_new_manifest() {
    let s = TestServer::start().await;
    push_image(&s, "retag", "latest", &[b"first"]).await;
    let (_, second) = push_image(&s, "retag", "latest", &[b"second"]).await;
    let r = client()
        .get(s.url("/v2/retag/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["docker-content-digest"],
        second.to_string().as_str()
    );
}
