//! What the pull-through cache keeps and for how long: tags revalidated after `tag_ttl` (a
//! moved tag is seen after it and not before; digests never revalidated), and eviction under
//! `max_bytes` (least recently pulled first; pushed content never).

mod client_support;
mod common;
mod mirror_support;

use std::time::{Duration, Instant};

use client_support::noise;
use client_support::proxy::Options;
use mirror_support::images::{Image, get_blob, get_manifest, pull_exact};
use mirror_support::*;

const REPO: &str = "docker.io/library/app";
const TTL: Duration = Duration::from_secs(3);
/// Revalidation times may be kept in whole seconds: a tag may be re-checked up to this much
/// before its TTL is over by the test's clock.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_moved_upstream_is_seen_after_the_ttl_and_not_before() {
    let s = setup(Options::default(), |spec| spec.tag_ttl = "3s".into()).await;
    let a = Image::opaque("a", &[noise(10_000, 20)]);
    let b = Image::opaque("b", &[noise(10_000, 21)]);
    s.up.push(&a, "library/app", "t").await;
    // b's blobs are pushed now, so that moving the tag later is one quick manifest PUT.
    s.up.push(&b, "library/app", "b").await;
    let token = s.up.admin_token("library/app").await;
    let m = &s.mirror.base;
    let rev = |result| [("mirror", "docker.io"), ("result", result)];

    pull_exact(m, REPO, "t", &a).await;
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    // Past the TTL, unchanged upstream: revalidated, not downloaded again.
    let gets_before = manifest_requests(&s.proxy, "library/app")
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    let revalidated_at = Instant::now();
    pull_exact(m, REPO, "t", &a).await;
    let reqs = manifest_requests(&s.proxy, "library/app");
    assert!(
        reqs.iter().any(|r| r.method == "HEAD"),
        "revalidation is a HEAD: {reqs:#?}"
    );
    assert_eq!(
        reqs.iter().filter(|r| r.method == "GET").count(),
        gets_before,
        "an unchanged tag is not downloaded again"
    );
    assert!(metric(m, "kura_mirror_revalidations_total", &rev("unchanged")).await >= 1.0);

    // Move the tag upstream: not seen before the TTL, seen after it.
    b.push(&s.up.base, "library/app", "t", Some(&token)).await;
    let asked = answered(&s.proxy).len();
    let within = revalidated_at.elapsed() + CLOCK_SLACK < TTL;
    let (status, digest, _) = get_manifest(m, REPO, "t").await;
    if within {
        assert_eq!(
            (status, digest),
            (200, a.digest.to_string()),
            "within the TTL"
        );
        assert_eq!(
            answered(&s.proxy).len(),
            asked,
            "no upstream request within the TTL"
        );
    } else {
        eprintln!(
            "this machine is too slow to check the tag within its TTL; checked after it only"
        );
    }
    let seen_at = loop {
        let (status, digest, _) = get_manifest(m, REPO, "t").await;
        assert_eq!(status, 200);
        if digest == b.digest.to_string() {
            break revalidated_at.elapsed();
        }
        assert_eq!(digest, a.digest.to_string());
        assert!(
            revalidated_at.elapsed() < TTL + POLL_LIMIT,
            "the moved tag was never seen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        seen_at + CLOCK_SLACK >= TTL,
        "moved tag seen {seen_at:?} after the last revalidation"
    );
    pull_exact(m, REPO, "t", &b).await;
    assert!(metric(m, "kura_mirror_revalidations_total", &rev("changed")).await >= 1.0);

    // The old image by digest is cached for good: no upstream request, ever.
    let asked = answered(&s.proxy).len();
    pull_exact(m, REPO, &a.digest.to_string(), &a).await;
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    pull_exact(m, REPO, &a.digest.to_string(), &a).await;
    assert_eq!(
        answered(&s.proxy).len(),
        asked,
        "manifests by digest are never revalidated"
    );
    assert_eq!(tags(m, REPO).await, vec!["t".to_string()]);
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_under_a_small_budget_drops_the_least_recently_pulled_never_pushed_content() {
    const BUDGET: u64 = 1_000_000;
    let s = setup(Options::default(), |spec| spec.max_bytes = BUDGET).await;
    let m = s.mirror.base.clone();
    let shared = noise(100_000, 30);
    let one = Image::opaque("one", &[noise(400_000, 31)]);
    let two = Image::opaque("two", &[noise(300_000, 32), shared.clone()]);
    let three = Image::opaque("three", &[noise(400_000, 33)]);
    for (img, name) in [
        (&one, "library/one"),
        (&two, "library/two"),
        (&three, "library/three"),
    ] {
        s.up.push(img, name, "v1").await;
    }
    // Pushed into the mirror outside its prefix, sharing a layer with `two`.
    let local = Image::opaque("local", &[shared.clone(), noise(200_000, 34)]);
    local.push(&m, "local/app", "v1", None).await;

    // one, then two, then one again: two is the least recently pulled. (A second apart, in
    // case last-pull times are kept in seconds.)
    let pause = Duration::from_millis(1100);
    pull_exact(&m, "docker.io/library/one", "v1", &one).await;
    tokio::time::sleep(pause).await;
    pull_exact(&m, "docker.io/library/two", "v1", &two).await;
    tokio::time::sleep(pause).await;
    pull_exact(&m, "docker.io/library/one", "v1", &one).await;
    tokio::time::sleep(pause).await;
    pull_exact(&m, "docker.io/library/three", "v1", &three).await;

    let mirror = [("mirror", "docker.io")];
    let evictions = wait_metric(&m, "kura_mirror_evictions_total", &mirror, 1.0).await;
    assert!(evictions >= 1.0, "nothing evicted over the budget");
    let start = Instant::now();
    let cached = loop {
        let c = metric(&m, "kura_mirror_cached_bytes", &mirror).await;
        if c <= BUDGET as f64 || start.elapsed() > POLL_LIMIT {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        cached <= BUDGET as f64,
        "cached bytes {cached} over the budget"
    );

    // The recently pulled stay cached (no upstream request) ...
    let asked = answered(&s.proxy).len();
    for (img, repo) in [
        (&one, "docker.io/library/one"),
        (&three, "docker.io/library/three"),
    ] {
        for (d, data) in img.layers() {
            let got = get_blob(&m, repo, d).await.unwrap();
            assert!(got == (200, data.clone()), "{repo} layer {d}");
        }
    }
    assert!(
        answered(&s.proxy).len() == asked,
        "recently pulled content was evicted: fetched again {:?}",
        answered(&s.proxy)[asked..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect::<Vec<_>>()
    );
    // ... pushed content is whole, the layer it shares with `two` included ...
    pull_exact(&m, "local/app", "v1", &local).await;
    assert_eq!(
        answered(&s.proxy).len(),
        asked,
        "local content is never fetched"
    );
    assert_fsck_clean(&m).await;
    // ... and two's own layer was evicted: pulling it again downloads it.
    let evicted = &two.blobs[1].0;
    assert_eq!(blob_gets(&s.proxy, evicted).len(), 1);
    let got = get_blob(&m, "docker.io/library/two", evicted)
        .await
        .unwrap();
    assert!(
        got == (200, two.blobs[1].1.clone()),
        "evicted layer pulled again"
    );
    assert_eq!(
        blob_gets(&s.proxy, evicted).len(),
        2,
        "least recently pulled went first"
    );
    assert_fsck_clean(&m).await;
}
