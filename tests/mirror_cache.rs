//! The pull-through cache, fault-free: cold then warm pulls (the warm one never asks the
//! upstream), what it keeps (catalog, tags, fsck), what it refuses (pushes, deletes), how it
//! names upstreams (prefix, whole registry, containerd's `?ns=`) and the metrics it counts.
//! The upstream is a real kura behind its own token auth; the mirror a real `kura serve`.

mod client_support;
mod common;
mod mirror_support;

use client_support::noise;
use client_support::proxy::Options;
use common::client;
use mirror_support::images::{Image, get_blob, get_manifest, get_manifest_url, pull_exact};
use mirror_support::*;

const REPO: &str = "docker.io/library/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pull_is_byte_identical_and_asks_the_upstream_nothing() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("app", &[noise(2 << 20, 1), noise(100_000, 2)]);
    s.up.push(&img, "library/app", "v1").await;
    let other = Image::opaque("app-v2", &[noise(1000, 3)]);
    s.up.push(&other, "library/app", "v2").await;

    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    // The mirror asked the upstream for the manifest and each blob under the upstream's name.
    assert!(!manifest_requests(&s.proxy, "library/app").is_empty());
    for (d, _) in &img.blobs {
        assert_eq!(blob_gets(&s.proxy, d).len(), 1, "one upstream GET of {d}");
    }
    let cold = answered(&s.proxy).len();

    // Warm: by tag, by digest, HEADs: all from the cache.
    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    pull_exact(&s.mirror.base, REPO, &img.digest.to_string(), &img).await;
    for path in [
        format!("/v2/{REPO}/manifests/v1"),
        format!("/v2/{REPO}/blobs/{}", img.blobs[1].0),
    ] {
        let r = client()
            .head(format!("{}{path}", s.mirror.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "HEAD {path}");
    }
    assert_eq!(
        answered(&s.proxy).len(),
        cold,
        "warm pulls made upstream requests: {:#?}",
        &answered(&s.proxy)[cold..]
    );

    // Cached content is in the normal tables: only what was pulled is listed.
    assert!(catalog(&s.mirror.base).await.contains(&REPO.to_string()));
    assert_eq!(tags(&s.mirror.base, REPO).await, vec!["v1".to_string()]);
    assert_fsck_clean(&s.mirror.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_misses_hits_and_upstream_bytes() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("metrics", &[noise(300_000, 4), noise(5000, 5)]);
    s.up.push(&img, "library/app", "v1").await;
    let m = &s.mirror.base;
    let lbl = |kind| [("mirror", "docker.io"), ("kind", kind)];
    let mirror = [("mirror", "docker.io")];

    pull_exact(m, REPO, "v1", &img).await;
    // The gauge is refreshed by the mirror's upkeep task, woken when the cache grows.
    let cached = wait_metric(
        m,
        "kura_mirror_cached_bytes",
        &mirror,
        img.blob_bytes() as f64,
    )
    .await;
    assert!(cached >= img.blob_bytes() as f64, "cached bytes {cached}");
    let cold = metrics(m).await;
    assert_eq!(
        value(&cold, "kura_mirror_misses_total", &lbl("manifest")),
        1.0
    );
    assert_eq!(value(&cold, "kura_mirror_misses_total", &lbl("blob")), 3.0);
    assert_eq!(value(&cold, "kura_mirror_hits_total", &lbl("blob")), 0.0);
    assert!(
        value(&cold, "kura_mirror_upstream_bytes_total", &mirror) >= img.blob_bytes() as f64,
        "upstream bytes cover the blobs"
    );
    assert_eq!(
        value(&cold, "kura_mirror_upstream_errors_total", &mirror),
        0.0
    );

    pull_exact(m, REPO, "v1", &img).await;
    let warm = metrics(m).await;
    assert_eq!(value(&warm, "kura_mirror_hits_total", &lbl("blob")), 3.0);
    assert!(value(&warm, "kura_mirror_hits_total", &lbl("manifest")) >= 1.0);
    assert_eq!(value(&warm, "kura_mirror_misses_total", &lbl("blob")), 3.0);
    assert_eq!(
        value(&warm, "kura_mirror_upstream_bytes_total", &mirror),
        value(&cold, "kura_mirror_upstream_bytes_total", &mirror),
        "a warm pull downloads nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_upstream_manifest_and_blob_are_404_with_spec_codes() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("known", &[noise(1000, 6)]);
    s.up.push(&img, "library/app", "v1").await;
    let m = &s.mirror.base;

    let r = client()
        .get(format!("{m}/v2/{REPO}/manifests/nope"))
        .header("Accept", mirror_support::images::ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_of(r).await.0, "MANIFEST_UNKNOWN");
    let r = client()
        .get(format!("{m}/v2/docker.io/library/absent/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a repository the upstream lacks");
    assert_eq!(error_of(r).await.0, "MANIFEST_UNKNOWN");
    let missing = kura::digest::Digest::sha256_of(b"never pushed");
    let r = client()
        .get(format!("{m}/v2/{REPO}/blobs/{missing}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_of(r).await.0, "BLOB_UNKNOWN");
    // Nothing was recorded for what the upstream does not have.
    assert!(!s.mirror.has_blob_file(&missing));
    assert!(
        !catalog(m)
            .await
            .contains(&"docker.io/library/absent".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_deletes_into_a_mirrored_prefix_are_denied_but_other_repos_accept_pushes() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("cached", &[noise(1000, 7)]);
    s.up.push(&img, "library/app", "v1").await;
    let m = &s.mirror.base;
    pull_exact(m, REPO, "v1", &img).await;

    let denied = [
        client().post(format!("{m}/v2/{REPO}/blobs/uploads/")),
        client()
            .post(format!(
                "{m}/v2/docker.io/library/new/blobs/uploads/?digest={}",
                img.blobs[1].0
            ))
            .body(img.blobs[1].1.clone()),
        client()
            .put(format!("{m}/v2/{REPO}/manifests/v9"))
            .header("Content-Type", client_support::OCI_MANIFEST)
            .body(img.manifest.clone()),
        client().delete(format!("{m}/v2/{REPO}/manifests/{}", img.digest)),
        client().delete(format!("{m}/v2/{REPO}/manifests/v1")),
        client().delete(format!("{m}/v2/{REPO}/blobs/{}", img.blobs[1].0)),
    ];
    for req in denied {
        let r = req.send().await.unwrap();
        let what = format!("{} {}", r.status(), r.url());
        assert_eq!(r.status(), 403, "{what}");
        let (code, message) = error_of(r).await;
        assert_eq!(code, "DENIED", "{what}");
        assert!(!message.is_empty(), "{what}: a message says why");
    }
    // The cache is intact, and a repository outside the prefix takes pushes, mounts from the
    // cache included.
    pull_exact(m, REPO, "v1", &img).await;
    let layer = &img.blobs[1].0;
    let r = client()
        .post(format!(
            "{m}/v2/local/mounted/blobs/uploads/?mount={layer}&from={REPO}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "mount from the cache");
    img.push(m, "local/app", "v1", None).await;
    pull_exact(m, "local/app", "v1", &img).await;
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_ns_parameter_routes_to_the_mirror_named_or_by_upstream_host() {
    let up = Upstream::start();
    let hub = proxy_to(&up, Options::default()).await;
    let ghcr = proxy_to(&up, Options::default()).await;
    let app = Image::opaque("hub", &[noise(50_000, 8)]);
    let tool = Image::opaque("ghcr", &[noise(60_000, 9)]);
    up.push(&app, "library/app", "v1").await;
    up.push(&tool, "org/tool", "v1").await;
    let mirror = Mirror::start(&[
        MirrorSpec::docker_io(&format!("http://{}", hub.host)),
        MirrorSpec {
            name: "ghcr.io".into(),
            prefix: "ghcr.io/".into(),
            ..MirrorSpec::docker_io(&format!("http://{}", ghcr.host))
        },
    ]);
    let m = &mirror.base;

    // What containerd sends for a hosts.toml mirror of docker.io.
    let (status, digest, body) =
        get_manifest_url(&format!("{m}/v2/library/app/manifests/v1?ns=docker.io")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        (digest, body),
        (app.digest.to_string(), app.manifest.clone())
    );
    for (d, data) in &app.blobs {
        let url = format!("{m}/v2/library/app/blobs/{d}?ns=docker.io");
        let got = mirror_support::images::get_blob_url(&url).await.unwrap();
        assert!(got == (200, data.clone()), "blob {d} through ?ns=docker.io");
    }
    assert!(!manifest_requests(&hub, "library/app").is_empty());
    assert!(
        answered(&ghcr).is_empty(),
        "?ns=docker.io went to the other upstream"
    );

    // ?ns= naming the upstream's host picks the mirror of that upstream.
    let url = format!("{m}/v2/org/tool/manifests/v1?ns={}", ghcr.host);
    let (status, digest, _) = get_manifest_url(&url).await;
    assert_eq!((status, digest), (200, tool.digest.to_string()));
    let (status, digest, _) =
        get_manifest_url(&format!("{m}/v2/org/tool/manifests/v1?ns=ghcr.io")).await;
    assert_eq!((status, digest), (200, tool.digest.to_string()));
    assert!(manifest_requests(&hub, "org/tool").is_empty());

    // Stored under each mirror's prefix, served from there without the upstream.
    let before = answered(&hub).len();
    pull_exact(m, REPO, "v1", &app).await;
    assert_eq!(
        answered(&hub).len(),
        before,
        "cached through ?ns=, then a hit"
    );
    let listed = catalog(m).await;
    for repo in [REPO, "ghcr.io/org/tool"] {
        assert!(listed.contains(&repo.to_string()), "{repo} in {listed:?}");
    }
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_registry_mirror_with_empty_prefix_maps_names_one_to_one() {
    let s = setup(Options::default(), |spec| {
        spec.name = "upstream".into();
        spec.prefix = String::new();
    })
    .await;
    let img = Image::opaque("whole", &[noise(70_000, 10)]);
    s.up.push(&img, "team/app", "v1").await;
    let m = &s.mirror.base;

    pull_exact(m, "team/app", "v1", &img).await;
    assert!(!manifest_requests(&s.proxy, "team/app").is_empty());
    let cold = answered(&s.proxy).len();
    pull_exact(m, "team/app", "v1", &img).await;
    assert_eq!(answered(&s.proxy).len(), cold, "warm pull");
    assert_eq!(catalog(m).await, vec!["team/app".to_string()]);
    let (status, _, _) = get_manifest(m, "team/absent", "v1").await;
    assert_eq!(status, 404);
    // Every repository is mirrored: pushes anywhere are refused.
    let r = client()
        .post(format!("{m}/v2/anything/else/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await.0, "DENIED");
    let got = get_blob(m, "team/app", &img.blobs[1].0).await.unwrap();
    assert_eq!(got.0, 200);
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_survives_a_mirror_restart_without_upstream_requests() {
    let mut s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("restart", &[noise(500_000, 11)]);
    s.up.push(&img, "library/app", "v1").await;
    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    let cold = answered(&s.proxy).len();

    s.mirror.restart();
    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    pull_exact(&s.mirror.base, REPO, &img.digest.to_string(), &img).await;
    assert_eq!(
        answered(&s.proxy).len(),
        cold,
        "served from the store after a restart"
    );
    assert_eq!(tags(&s.mirror.base, REPO).await, vec!["v1".to_string()]);
    assert_fsck_clean(&s.mirror.base).await;
}
