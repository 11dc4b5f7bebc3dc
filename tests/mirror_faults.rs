//! The pull-through cache when the upstream misbehaves: a transfer cut mid-blob, the upstream
//! killed mid-blob and restarted, the upstream down (5xx, then unreachable), a corrupted blob,
//! and 20 clients at once wanting one uncached blob.

mod client_support;
mod common;
mod mirror_support;

use std::time::Duration;

use client_support::noise;
use client_support::proxy::Options;
use kura::digest::Digest;
use mirror_support::images::{Image, get_blob, get_manifest, pull_exact};
use mirror_support::*;

const REPO: &str = "docker.io/library/app";

/// The Range GETs of a blob the proxy answered with 206.
fn resumed(p: &client_support::proxy::Proxy, d: &kura::digest::Digest) -> Vec<String> {
    blob_gets(p, d)
        .into_iter()
        .filter(|s| s.status == 206)
        .filter_map(|s| s.range)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cut_mid_blob_is_resumed_with_range_and_the_client_gets_every_byte() {
    let s = setup(
        Options {
            cut_first_blob_get_after: Some(1 << 20),
            ..Options::default()
        },
        |_| {},
    )
    .await;
    let img = Image::opaque("cut", &[noise(6 << 20, 11)]);
    s.up.push(&img, "library/app", "v1").await;
    let layer = &img.blobs[1].0;

    // One plain GET of the whole blob: the mirror resumes behind it.
    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    let ranges = resumed(&s.proxy, layer);
    assert!(
        ranges.iter().any(|r| r.starts_with("bytes=")),
        "no Range GET after the cut: {:#?}",
        blob_gets(&s.proxy, layer)
    );
    let before = answered(&s.proxy).len();
    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    assert_eq!(
        answered(&s.proxy).len(),
        before,
        "the resumed blob was cached"
    );
    assert_fsck_clean(&s.mirror.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_mid_blob_is_resumed_once_it_is_back() {
    let mut s = setup(
        Options {
            hold_first_blob_get_after: Some(1 << 20),
            ..Options::default()
        },
        |_| {},
    )
    .await;
    // Larger than what loopback socket buffers hold, so the kill cuts the body.
    let img = Image::opaque("killed", &[noise(24 << 20, 12)]);
    s.up.push(&img, "library/app", "v1").await;
    let (layer, bytes) = img.blobs[1].clone();
    let (status, _, _) = get_manifest(&s.mirror.base, REPO, "v1").await;
    assert_eq!(status, 200);

    let base = s.mirror.base.clone();
    let pull = tokio::spawn(async move { get_blob(&base, REPO, &layer).await });
    s.proxy.wait_held(Duration::from_secs(60)).await;
    s.up.kill();
    s.up.restart();
    s.proxy.release();
    let got = tokio::time::timeout(Duration::from_secs(120), pull)
        .await
        .expect("the pull ends")
        .unwrap();
    let (status, body) = got.expect("the client's one GET is completed by the mirror");
    assert_eq!(status, 200);
    assert_eq!(body.len(), bytes.len());
    assert!(body == bytes, "the bytes of the resumed blob");
    assert!(
        !resumed(&s.proxy, &img.blobs[1].0).is_empty(),
        "resumed with Range: {:#?}",
        blob_gets(&s.proxy, &img.blobs[1].0)
    );
    assert_fsck_clean(&s.mirror.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_serves_cached_tags_and_blobs_and_502_for_what_is_not_cached() {
    let mut s = setup(Options::default(), |spec| spec.tag_ttl = "1s".into()).await;
    let img = Image::opaque("stale", &[noise(200_000, 13)]);
    s.up.push(&img, "library/app", "v1").await;
    s.up.push(&img, "library/other", "v1").await;
    let m = s.mirror.base.clone();
    let mirror = [("mirror", "docker.io")];
    pull_exact(&m, REPO, "v1", &img).await;

    // Down, answering 502 (the proxy cannot reach the killed upstream), then unreachable.
    s.up.kill();
    for phase in ["5xx", "unreachable"] {
        if phase == "unreachable" {
            s.proxy.set_down(true);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await; // past tag_ttl
        let errors = metric(&m, "kura_mirror_upstream_errors_total", &mirror).await;
        let stale = metric(
            &m,
            "kura_mirror_revalidations_total",
            &[("mirror", "docker.io"), ("result", "error")],
        )
        .await;
        pull_exact(&m, REPO, "v1", &img).await;
        pull_exact(&m, REPO, &img.digest.to_string(), &img).await;
        let r = common::client()
            .get(format!("{m}/v2/docker.io/library/other/manifests/v1"))
            .header("Accept", mirror_support::images::ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "{phase}: nothing cached, upstream down");
        let (code, message) = error_of(r).await;
        assert_eq!(code, "UNKNOWN", "{phase}");
        assert!(
            message.contains(&s.proxy.host),
            "{phase}: the message names the upstream: {message:?}"
        );
        let (status, _) = get_blob(&m, "docker.io/library/other", &noise_digest())
            .await
            .unwrap();
        assert_eq!(status, 502, "{phase}: uncached blob");
        let after = metrics(&m).await;
        assert!(
            value(&after, "kura_mirror_upstream_errors_total", &mirror) > errors,
            "{phase}"
        );
        assert!(
            value(
                &after,
                "kura_mirror_revalidations_total",
                &[("mirror", "docker.io"), ("result", "error")]
            ) > stale,
            "{phase}: a failed revalidation is counted"
        );
    }
    // Back up: the uncached image comes through.
    s.proxy.set_down(false);
    s.up.restart();
    pull_exact(&m, "docker.io/library/other", "v1", &img).await;
    assert_fsck_clean(&m).await;
}

/// A digest no upstream holds.
fn noise_digest() -> kura::digest::Digest {
    kura::digest::Digest::sha256_of(b"not upstream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_upstream_blob_is_never_served_whole_nor_recorded() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("corrupt", &[noise(3 << 20, 14)]);
    s.up.push(&img, "library/app", "v1").await;
    let m = &s.mirror.base;
    let (status, _, _) = get_manifest(m, REPO, "v1").await;
    assert_eq!(status, 200);

    s.proxy.set_corrupt(true);
    for (d, data) in &img.blobs {
        match get_blob(m, REPO, d).await {
            Err(_) => {} // the body was cut before its end
            Ok((status, body)) => assert!(
                status != 200 || body.len() < data.len(),
                "a corrupted blob {d} was served whole ({status}, {} bytes)",
                body.len()
            ),
        }
        assert!(!s.mirror.has_blob_file(d), "corrupted blob {d} stored");
    }
    assert!(
        metric(
            m,
            "kura_mirror_upstream_errors_total",
            &[("mirror", "docker.io")]
        )
        .await
            >= 1.0,
        "a digest mismatch is an upstream error"
    );
    assert_fsck_clean(m).await;
    // The next pull, uncorrupted, is right and cached.
    s.proxy.set_corrupt(false);
    pull_exact(m, REPO, "v1", &img).await;
    for (d, _) in &img.blobs {
        assert!(s.mirror.has_blob_file(d));
    }
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_pulls_of_one_uncached_blob_make_one_upstream_get() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("herd", &[noise(16 << 20, 15)]);
    s.up.push(&img, "library/app", "v1").await;
    let (layer, bytes) = img.blobs[1].clone();

    pull_at_once(&s.mirror.base, &layer, &bytes, 20).await;
    let gets = blob_gets(&s.proxy, &layer);
    assert_eq!(gets.len(), 1, "upstream GETs of the blob: {gets:#?}");
    assert_eq!(
        metric(
            &s.mirror.base,
            "kura_mirror_misses_total",
            &[("mirror", "docker.io"), ("kind", "blob")]
        )
        .await
            + metric(
                &s.mirror.base,
                "kura_mirror_hits_total",
                &[("mirror", "docker.io"), ("kind", "blob")]
            )
            .await,
        20.0,
        "every pull is a hit or a miss"
    );
    assert_fsck_clean(&s.mirror.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bytes_reach_the_first_client_before_the_upstream_transfer_ends() {
    let s = setup(
        Options {
            hold_first_blob_get_after: Some(1 << 20),
            ..Options::default()
        },
        |_| {},
    )
    .await;
    let img = Image::opaque("stream", &[noise(8 << 20, 16)]);
    s.up.push(&img, "library/app", "v1").await;
    let (layer, bytes) = img.blobs[1].clone();

    let url = format!("{}/v2/{REPO}/blobs/{layer}", s.mirror.base);
    let mut r = common::client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.proxy.wait_held(Duration::from_secs(30)).await;
    // The upstream is stalled after 1 MiB: what the client has now was streamed, not buffered.
    let mut got = Vec::new();
    while got.len() < 256 << 10 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .expect("bytes reach the client while the upstream transfer is stalled")
            .unwrap()
            .expect("body goes on");
        got.extend_from_slice(&chunk);
    }
    s.proxy.release();
    while let Some(chunk) = r.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert!(got == bytes, "{} bytes", got.len());
    assert_eq!(blob_gets(&s.proxy, &layer).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_a_blob_cut_mid_transfer_all_get_every_byte() {
    let s = setup(
        Options {
            cut_first_blob_get_after: Some(1 << 20),
            ..Options::default()
        },
        |_| {},
    )
    .await;
    let img = Image::opaque("herd-cut", &[noise(8 << 20, 17)]);
    s.up.push(&img, "library/app", "v1").await;
    let (layer, bytes) = img.blobs[1].clone();

    pull_at_once(&s.mirror.base, &layer, &bytes, 8).await;
    let gets = blob_gets(&s.proxy, &layer);
    let whole = gets.iter().filter(|g| g.range.is_none()).count();
    assert_eq!(
        whole, 1,
        "one GET of the whole blob, then Range GETs: {gets:#?}"
    );
    assert!(!resumed(&s.proxy, &layer).is_empty(), "{gets:#?}");
    assert_fsck_clean(&s.mirror.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_or_failing_upstream_serves_cached_tags_and_errors_for_the_rest() {
    let s = setup(Options::default(), |spec| spec.tag_ttl = "1s".into()).await;
    let img = Image::opaque("limited", &[noise(50_000, 18)]);
    s.up.push(&img, "library/app", "v1").await;
    s.up.push(&img, "library/other", "v1").await;
    let m = &s.mirror.base;
    pull_exact(m, REPO, "v1", &img).await;

    for status in [429, 503] {
        s.proxy.set_answer(Some(status));
        tokio::time::sleep(Duration::from_millis(1500)).await; // past tag_ttl
        let asked = answered(&s.proxy).len();
        pull_exact(m, REPO, "v1", &img).await;
        assert!(
            answered(&s.proxy).len() > asked,
            "{status}: the tag was revalidated"
        );
        let (code, _, _) = get_manifest(m, "docker.io/library/other", "v1").await;
        assert!(
            code >= 400 && code != 404,
            "{status}: uncached answered {code}"
        );
    }
    s.proxy.set_answer(None);
    pull_exact(m, "docker.io/library/other", "v1", &img).await;
    assert_fsck_clean(m).await;
}

/// `n` clients pull blob `layer` of `REPO` from `base` at once; each must get `bytes` whole.
async fn pull_at_once(base: &str, layer: &Digest, bytes: &[u8], n: usize) {
    let pulls: Vec<_> = (0..n)
        .map(|_| {
            let (base, layer) = (base.to_string(), layer.clone());
            tokio::spawn(async move { get_blob(&base, REPO, &layer).await })
        })
        .collect();
    for (i, p) in pulls.into_iter().enumerate() {
        let (status, body) = tokio::time::timeout(Duration::from_secs(120), p)
            .await
            .expect("pull ends")
            .unwrap()
            .unwrap_or_else(|e| panic!("pull {i}: {e}"));
        assert_eq!(status, 200, "pull {i}");
        assert!(body == bytes, "pull {i}: {} bytes", body.len());
    }
}
