//! Quotas (`[[policies.quota]]`): unique bytes counted exactly as blobs are linked and
//! unlinked (a layer shared in a namespace counts once; mounts count; deletion and GC free),
//! and refused with 403 DENIED inside the transaction of the change (one of two racing
//! pushes fails).

mod common;
mod quota_support;

use common::{
    TestServer, client, error_code, gc, image_manifest, opts, push_blob, push_image, put_manifest,
};
use kura::digest::Digest;
use kura::meta::usage;
use kura::registry::Registry;
use quota_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_shared_by_two_repositories_counts_once_for_their_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    set_quotas(&reg, vec![ns_rule("team/", 1 << 30)]);
    let shared = vec![7u8; 5000];
    let (_, a) = image(&reg, "team/a", "v1", &[&shared]).await;
    let (_, b) = image(&reg, "team/b", "v1", &[&shared, b"only in b"]).await;
    assert_eq!(used(&reg, "repo:team/a"), a);
    assert_eq!(used(&reg, "repo:team/b"), b);
    assert_eq!(
        used(&reg, "ns:team/"),
        a + b - 5000,
        "the shared layer counts once"
    );
    // A second tag of the same content adds nothing; another repository outside adds nothing.
    let before = used(&reg, "ns:team/");
    image(&reg, "team/a", "v2", &[&shared]).await;
    let (_, other) = image(&reg, "other/c", "v1", &[&shared]).await;
    assert!(
        used(&reg, "ns:team/") > before,
        "v2 has its own config and manifest"
    );
    assert_eq!(used(&reg, "repo:other/c"), other);
    fsck_clean(&reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_quota_refuses_an_upload_with_403_denied_naming_it() {
    let s = TestServer::start().await;
    set_quotas(&s.registry, vec![repo_rule("small/app", 3000)]);
    push_blob(&s, "small/app", &[1u8; 2000]).await;
    let big = vec![2u8; 2000];
    let d = Digest::sha256_of(&big);
    let r = client()
        .post(s.url(&format!("/v2/small/app/blobs/uploads/?digest={d}")))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert_eq!(
        v["errors"][0]["message"],
        "quota of repository small/app (3000 B) exceeded: 2000 B used, this push needs 2000 B"
    );
    // Nothing of the refused blob is served, and usage did not move.
    let head = client()
        .head(s.url(&format!("/v2/small/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    assert_eq!(used(&s.registry, "repo:small/app"), 2000);
    // A chunked upload is refused at its commit too, and its session ends.
    let r = client()
        .post(s.url("/v2/small/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = if loc.starts_with("http") {
        format!("{loc}{sep}digest={d}")
    } else {
        s.url(&format!("{loc}{sep}digest={d}"))
    };
    let r = client().put(put).body(big).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    assert_eq!(s.registry.session_count(), 0);
    // Another repository is not limited.
    push_blob(&s, "small/other", &[2u8; 2000]).await;
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_quota_refuses_a_manifest_push_that_needs_more_than_is_left() {
    let s = TestServer::start().await;
    let layer = vec![3u8; 1000];
    let config = b"{\"config\":1}".to_vec();
    let body = image_manifest(
        &(Digest::sha256_of(&config), config.len()),
        &[(Digest::sha256_of(&layer), layer.len())],
        json!({}),
    );
    // Room for the config and the layer, 10 bytes short for the manifest.
    let limit = (config.len() + layer.len() + body.len() - 10) as u64;
    set_quotas(&s.registry, vec![ns_rule("team/", limit)]);
    push_blob(&s, "team/app", &config).await;
    push_blob(&s, "team/app", &layer).await;
    let r = put_manifest(&s, "team/app", "v1", OCI, &body).await;
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("quota of namespace team/ (") && msg.contains("this push needs"),
        "{msg}"
    );
    let r = client()
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the refused manifest is not stored");
    // Deleting is always allowed and frees room: drop the layer, and the manifest still cannot
    // be pushed (it names it), but a smaller image fits.
    let r = client()
        .delete(s.url(&format!("/v2/team/app/blobs/{}", Digest::sha256_of(&layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(used(&s.registry, "ns:team/"), config.len() as u64);
    push_image(&s, "team/app", "small", &[b"tiny"]).await;
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_and_collecting_frees_usage() {
    let s = TestServer::start().await;
    set_quotas(&s.registry, vec![ns_rule("gc/", 1 << 20)]);
    let (_, m) = push_image(&s, "gc/app", "v1", &[&[4u8; 3000]]).await;
    push_blob(&s, "gc/app", &[5u8; 700]).await;
    assert!(used(&s.registry, "ns:gc/") > 3700);
    let r = client()
        .delete(s.url(&format!("/v2/gc/app/manifests/{m}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Without the manifest, only the links remain; the collector removes the unreferenced
    // blobs with their links once the grace period (0 s, whole seconds) has passed.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let report = gc(&s, opts(0)).await;
    assert!(report.blobs_removed >= 3, "{report:?}");
    assert_eq!(used(&s.registry, "ns:gc/"), 0);
    assert_eq!(used(&s.registry, "repo:gc/app"), 0);
    let rows = s.registry.meta().read(|t| usage::all(t)).unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_counts_toward_the_target_and_its_quota() {
    let s = TestServer::start().await;
    let layer = vec![6u8; 4000];
    let d = push_blob(&s, "src/app", &layer).await;
    set_quotas(&s.registry, vec![ns_rule("dst/", 5000)]);
    let mount = |to: &'static str| {
        client()
            .post(s.url(&format!("/v2/{to}/blobs/uploads/?mount={d}&from=src/app")))
            .send()
    };
    assert_eq!(mount("dst/a").await.unwrap().status(), 201);
    assert_eq!(used(&s.registry, "repo:dst/a"), 4000);
    // Mounted into a second repository of the namespace: the namespace holds it already.
    assert_eq!(mount("dst/b").await.unwrap().status(), 201);
    assert_eq!(used(&s.registry, "ns:dst/"), 4000);
    let other = push_blob(&s, "src/app", &[7u8; 2000]).await;
    let r = client()
        .post(s.url(&format!(
            "/v2/dst/a/blobs/uploads/?mount={other}&from=src/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    assert_eq!(used(&s.registry, "ns:dst/"), 4000);
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_pushes_that_together_exceed_a_quota_one_fails() {
    const ROUNDS: usize = 25;
    let s = TestServer::start().await;
    let rules = (0..ROUNDS)
        .map(|i| ns_rule(&format!("race{i}/"), 1500))
        .collect();
    set_quotas(&s.registry, rules);
    for i in 0..ROUNDS {
        let push = |repo: String, fill: u8| {
            let data = vec![fill; 1000];
            let d = Digest::sha256_of(&data);
            client()
                .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
                .body(data)
                .send()
        };
        let (a, b) = tokio::join!(
            push(format!("race{i}/a"), (2 * i) as u8),
            push(format!("race{i}/b"), (2 * i + 1) as u8)
        );
        let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        codes.sort();
        assert_eq!(codes, [201, 403], "round {i}");
        assert_eq!(used(&s.registry, &format!("ns:race{i}/")), 1000);
    }
    fsck_clean(&s.registry);
}
