//! The counting rules hold for content a mirror caches (ARCHITECTURE.md, "Counting rules" and
//! "The pull-through cache"): a cached manifest is recorded before its blobs, its references
//! wait in `deferred_refs` and are counted when the blobs arrive; eviction and GC keep the
//! counts exact; fsck agrees at every step. In-process servers: an upstream kura and a mirror.

mod common;

use common::mirror::pair;
use common::{TestServer, client, push_blob, push_image};
use kura::digest::Digest;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

async fn get(s: &TestServer, path: &str) -> reqwest::Response {
    client()
        .get(s.url(path))
        .header("Accept", OCI)
        .send()
        .await
        .unwrap()
}

/// GETs `path` and reads the whole body (a blob fetched upstream is recorded before its last
/// chunk is sent).
async fn pull(s: &TestServer, path: &str) -> bytes::Bytes {
    let r = get(s, path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().await.unwrap()
}

fn refs(s: &TestServer, d: &Digest) -> Option<u64> {
    let d = d.to_string();
    s.registry
        .meta()
        .read(|t| kura::meta::blobs::get(t, &d))
        .unwrap()
        .map(|r| r.refs)
}

fn deferred(s: &TestServer) -> u64 {
    s.registry
        .meta()
        .read(|t| Ok(kura::meta::deferred::everything(t)?.len() as u64))
        .unwrap()
}

async fn fsck_clean(s: &TestServer) {
    let reg = s.registry.clone();
    let report = tokio::task::spawn_blocking(move || kura::fsck::fsck(&reg, false, false))
        .await
        .unwrap()
        .unwrap();
    assert!(report.errors.is_empty(), "fsck: {:?}", report.errors);
}

fn layers() -> (Vec<u8>, Vec<u8>) {
    (common::s3::data(40_000, 1), common::s3::data(50_000, 2))
}

#[tokio::test]
async fn a_cached_manifest_defers_its_references_until_its_blobs_arrive() {
    let p = pair(0).await;
    let (a, b) = layers();
    let (_, md) = push_image(&p.upstream, "library/app", "v1", &[&a, &b]).await;
    let r = get(&p.mirror, "/v2/up/library/app/manifests/v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        md.to_string().as_str()
    );
    // Recorded with three deferred references (config and two layers), none counted.
    assert_eq!(deferred(&p.mirror), 3);
    assert_eq!(refs(&p.mirror, &md), Some(1));
    fsck_clean(&p.mirror).await;
    let la = Digest::sha256_of(&a);
    let r = get(&p.mirror, &format!("/v2/up/library/app/blobs/{la}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), a);
    // The layer's new row starts with the deferred reference.
    assert_eq!(refs(&p.mirror, &la), Some(1));
    assert_eq!(deferred(&p.mirror), 2);
    fsck_clean(&p.mirror).await;
}

#[tokio::test]
async fn evicting_a_cached_revision_drops_its_deferred_references_and_counts() {
    let p = pair(1).await;
    let (a, b) = layers();
    let (_, md) = push_image(&p.upstream, "library/app", "v1", &[&a, &b]).await;
    let by_digest = format!("/v2/up/library/app/manifests/{md}");
    pull(&p.mirror, &by_digest).await;
    let la = Digest::sha256_of(&a);
    pull(&p.mirror, &format!("/v2/up/library/app/blobs/{la}")).await;
    assert_eq!(deferred(&p.mirror), 2);
    kura::mirror::upkeep_now(&p.mirror.registry, &p.mirrors)
        .await
        .unwrap();
    // The revision went with its two deferred references; its counted layer was freed.
    assert_eq!(deferred(&p.mirror), 0);
    assert_eq!(refs(&p.mirror, &la), None);
    assert_eq!(refs(&p.mirror, &md), None);
    fsck_clean(&p.mirror).await;
}

#[tokio::test]
async fn eviction_frees_cached_blobs_but_never_content_a_pushed_repository_holds() {
    let p = pair(1).await;
    let (a, b) = layers();
    let (_, _) = push_image(&p.upstream, "library/app", "v1", &[&a, &b]).await;
    // The same layer `a` is also pushed to a local repository of the mirror's registry.
    let la = push_blob(&p.mirror, "team/own", &a).await;
    let lb = Digest::sha256_of(&b);
    pull(&p.mirror, "/v2/up/library/app/manifests/v1").await;
    for d in [&la, &lb] {
        pull(&p.mirror, &format!("/v2/up/library/app/blobs/{d}")).await;
    }
    assert!(refs(&p.mirror, &lb).is_some());
    kura::mirror::upkeep_now(&p.mirror.registry, &p.mirrors)
        .await
        .unwrap();
    // Over a 1-byte budget everything cached goes; `b` is freed, `a` stays for team/own.
    assert_eq!(refs(&p.mirror, &lb), None);
    assert!(
        !p.mirror
            .dir
            .path()
            .join(format!("blobs/sha256/{}", lb.hex()))
            .exists()
    );
    assert_eq!(refs(&p.mirror, &la), Some(0));
    let r = get(&p.mirror, &format!("/v2/team/own/blobs/{la}")).await;
    assert_eq!(r.bytes().await.unwrap(), a);
    pull(&p.mirror, "/v2/_catalog").await;
    assert_eq!(deferred(&p.mirror), 0);
    fsck_clean(&p.mirror).await;
    // Evicted content comes back from upstream on the next pull.
    pull(&p.mirror, "/v2/up/library/app/manifests/v1").await;
    let r = get(&p.mirror, &format!("/v2/up/library/app/blobs/{lb}")).await;
    assert_eq!(r.bytes().await.unwrap(), b);
    fsck_clean(&p.mirror).await;
}
