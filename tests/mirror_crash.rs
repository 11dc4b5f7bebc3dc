//! The mirror itself killed (SIGKILL) in the middle of caching a blob: after a restart the store
//! is consistent (fsck clean), nothing half-written is served, and the blob is fetched again.

mod client_support;
mod common;
mod mirror_support;

use std::time::Duration;

use client_support::noise;
use client_support::proxy::Options;
use mirror_support::images::{Image, get_blob, pull_exact};
use mirror_support::*;

const REPO: &str = "docker.io/library/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_killed_mid_blob_restarts_consistent_and_fetches_the_blob_again() {
    let mut s = setup(
        Options {
            hold_first_blob_get_after: Some(1 << 20),
            ..Options::default()
        },
        |_| {},
    )
    .await;
    let img = Image::opaque("crash", &[noise(8 << 20, 60)]);
    s.up.push(&img, "library/app", "v1").await;
    let layer = img.blobs[1].0.clone();

    let base = s.mirror.base.clone();
    let l = layer.clone();
    let pull = tokio::spawn(async move { get_blob(&base, REPO, &l).await });
    s.proxy.wait_held(Duration::from_secs(30)).await;
    s.mirror.restart(); // SIGKILL while the blob streams in
    s.proxy.release();
    let cut = tokio::time::timeout(Duration::from_secs(60), pull)
        .await
        .expect("the cut pull ends")
        .unwrap();
    assert!(
        !matches!(&cut, Ok((200, body)) if body.len() == img.blobs[1].1.len()),
        "a pull from a killed process cannot have completed"
    );
    assert!(!s.mirror.has_blob_file(&layer), "half a blob recorded");
    assert_fsck_clean(&s.mirror.base).await;

    pull_exact(&s.mirror.base, REPO, "v1", &img).await;
    assert_eq!(
        blob_gets(&s.proxy, &layer).len(),
        2,
        "fetched again after the restart"
    );
    assert_fsck_clean(&s.mirror.base).await;
}
