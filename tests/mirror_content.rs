//! Kinds of content through the pull-through cache: a multi-platform index (media type kept,
//! children by digest), and HEAD and Range requests of what is not cached yet.

mod client_support;
mod common;
mod mirror_support;

use client_support::noise;
use client_support::proxy::Options;
use common::client;
use mirror_support::images::{Image, get_manifest, pull_exact};
use mirror_support::*;

const REPO: &str = "docker.io/library/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_index_pulls_through_with_children_by_digest_and_media_types() {
    let s = setup(Options::default(), |_| {}).await;
    let amd = Image::opaque("amd64", &[noise(40_000, 12)]);
    let arm = Image::opaque("arm64", &[noise(40_000, 13)]);
    for img in [&amd, &arm] {
        s.up.push(img, "library/multi", &img.digest.to_string())
            .await;
    }
    let desc = |img: &Image, arch: &str| {
        serde_json::json!({"mediaType": client_support::OCI_MANIFEST, "digest": img.digest.to_string(),
            "size": img.manifest.len(), "platform": {"architecture": arch, "os": "linux"}})
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": client_support::OCI_INDEX,
        "manifests": [desc(&amd, "amd64"), desc(&arm, "arm64")],
    }))
    .unwrap();
    let token = s.up.admin_token("library/multi").await;
    let r = client()
        .put(format!("{}/v2/library/multi/manifests/v1", s.up.base))
        .bearer_auth(token)
        .header("Content-Type", client_support::OCI_INDEX)
        .body(index.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = &s.mirror.base;
    let repo = "docker.io/library/multi";

    let r = client()
        .get(format!("{m}/v2/{repo}/manifests/v1"))
        .header("Accept", mirror_support::images::ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(
        ct,
        client_support::OCI_INDEX,
        "the index keeps its media type"
    );
    assert!(r.bytes().await.unwrap() == index, "index bytes");
    // A client then picks a platform by digest, and pulls its blobs.
    for img in [&amd, &arm] {
        pull_exact(m, repo, &img.digest.to_string(), img).await;
    }
    let before = answered(&s.proxy).len();
    for img in [&amd, &arm] {
        pull_exact(m, repo, &img.digest.to_string(), img).await;
    }
    let (status, _, body) = get_manifest(m, repo, "v1").await;
    assert!(status == 200 && body == index);
    assert_eq!(answered(&s.proxy).len(), before, "warm");
    assert_eq!(tags(m, repo).await, vec!["v1".to_string()]);
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_range_requests_of_uncached_content_are_answered() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("head", &[noise(50_000, 14)]);
    s.up.push(&img, "library/app", "v1").await;
    let (m, layer) = (&s.mirror.base, &img.blobs[1]);
    for (path, len, digest) in [
        (format!("blobs/{}", layer.0), layer.1.len(), &layer.0),
        ("manifests/v1".to_string(), img.manifest.len(), &img.digest),
    ] {
        let r = client()
            .head(format!("{m}/v2/{REPO}/{path}"))
            .header("Accept", mirror_support::images::ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "HEAD {path}");
        assert_eq!(r.headers()["content-length"], len.to_string().as_str());
        assert_eq!(
            r.headers()["docker-content-digest"],
            digest.to_string().as_str()
        );
    }
    let other = &img.blobs[0];
    let r = client()
        .get(format!("{m}/v2/{REPO}/blobs/{}", other.0))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(
        r.bytes().await.unwrap() == other.1[10..20],
        "the range's bytes"
    );
    pull_exact(m, REPO, "v1", &img).await;
    assert_fsck_clean(m).await;
}
