//! Pull-mode replication between real kura processes on loopback: `kura sync` copies the
//! matching tags only (every platform, referrers) and nothing on a second run, offline and
//! through the server, and the periodic sync picks up a new upstream tag and a new signature.

mod common;
mod replication_support;

use common::{kura_cmd, spawn_kura_guarded};
use replication_support::*;

fn pull_config(upstream: &str, interval: &str) -> String {
    format!(
        "[[replication.pull]]\nname = \"hub\"\nurl = \"{upstream}\"\nrepositories = [\"library/alpine\"]\n\
         tags = [\"3.*\", \"latest\"]\nprefix = \"hub/\"\ninterval = \"{interval}\"\n"
    )
}

/// An upstream with `library/alpine` tags 3.18, 3.19 (images), latest (an index of two, with
/// a signature) and edge; returns the references to find locally (3.18, 3.19, latest and the
/// signature's digest) with their digests.
async fn seed_upstream(u: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tag in ["3.18", "3.19", "edge"] {
        let d = push_image(u, "library/alpine", tag, Some(tag)).await;
        if tag != "edge" {
            out.push((tag.to_string(), d.0.to_string()));
        }
    }
    let (latest, _) = push_index(u, "library/alpine", "latest").await;
    out.push(("latest".into(), latest.0.to_string()));
    let sig = push_referrer(u, "library/alpine", INDEX, &latest).await;
    out.push((sig.0.to_string(), sig.0.to_string()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_sync_copies_the_matching_tags_only_and_a_second_run_copies_nothing() {
    let (du, dl, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (_u, u) = spawn_kura_guarded(du.path(), &[]);
    let want = seed_upstream(&u).await;
    let cfg = config_file(dc.path(), &pull_config(&u, "0s"));
    let root = dl.path().display().to_string();
    let (ok, out, err) = kura_cmd(&["sync", "--root", &root, "--config", &cfg]);
    assert!(ok, "{out}{err}");
    // 3 tags: 2 images and an index with 2 children, each image a config and a layer; the
    // index's signature (an empty config and a signature blob).
    assert_eq!(
        out.trim(),
        "hub: 3 tags copied (6 manifests, 10 blobs), 0 up to date"
    );
    let (ok, out, err) = kura_cmd(&["sync", "--root", &root, "--config", &cfg]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        "hub: 0 tags copied (0 manifests, 0 blobs), 3 up to date"
    );
    let (_l, l) = spawn_kura_guarded(dl.path(), &["--config", &cfg]);
    assert_eq!(
        tags(&l, "hub/library/alpine").await,
        ["3.18", "3.19", "latest"]
    );
    for (reference, d) in &want {
        let got = manifest_digest(&l, "hub/library/alpine", reference).await;
        assert_eq!(got.as_ref(), Some(d));
    }
    let signatures = referrers(&l, "hub/library/alpine", &want[2].1).await;
    assert_eq!(signatures, vec![want[3].1.clone()]);
    let (ok, out, err) = kura_cmd(&["sync", "--url", &l, "--source", "hub"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        "hub: 0 tags copied (0 manifests, 0 blobs), 3 up to date"
    );
    let (ok, out, err) = kura_cmd(&["fsck", "--url", &l]);
    assert!(ok, "fsck: {out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_sync_picks_up_a_new_upstream_tag() {
    let (du, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_u, u) = spawn_kura_guarded(du.path(), &[]);
    let old = push_image(&u, "library/alpine", "3.18", Some("3.18")).await;
    let cfg = config_file(dl.path(), &pull_config(&u, "1s"));
    let (_l, l) = spawn_kura_guarded(dl.path(), &["--config", &cfg]);
    wait_for(30, "the first sync", || {
        let l = l.clone();
        async move { (tags(&l, "hub/library/alpine").await == ["3.18"]).then_some(()) }
    })
    .await;
    let new = push_image(&u, "library/alpine", "3.20", Some("3.20")).await;
    let got = wait_for(30, "the new tag", || {
        manifest_digest(&l, "hub/library/alpine", "3.20")
    })
    .await;
    assert_eq!(got, new.0.to_string());
    // A signature added upstream to a tag already up to date here is picked up too.
    let sig = push_referrer(&u, "library/alpine", IMAGE, &old).await;
    let sig = sig.0.to_string();
    wait_for(30, "the new signature", || {
        manifest_digest(&l, "hub/library/alpine", &sig)
    })
    .await;
    let signatures = referrers(&l, "hub/library/alpine", &old.0.to_string()).await;
    assert_eq!(signatures, vec![sig]);
    let st = status(&l).await;
    assert_eq!(st["pull"][0]["name"], "hub");
    assert!(st["pull"][0]["last_success"].is_string(), "{st}");
    assert!(st["pull"][0]["last_error"].is_null(), "{st}");
}
