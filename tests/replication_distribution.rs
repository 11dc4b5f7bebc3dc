//! Push-mode replication to another OCI registry: Distribution (`docker-registry` 2.8, the
//! Debian package), which has no referrers API and refuses tag deletes.

mod common;
mod replication_support;

use common::spawn_kura_guarded;
use replication_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_deletes_reach_a_distribution_registry_with_identical_digests() {
    let (da, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_d, d) = spawn_distribution(dd.path()).await;
    let cfg = config_file(
        da.path(),
        &format!(
            "[[replication.push]]\nname = \"distribution\"\nurl = \"{d}\"\nprefix = \"copy/\"\n\
             backoff = \"100ms\"\nmax_backoff = \"500ms\"\n"
        ),
    );
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    let (index, children) = push_index(&a, "team/app", "v1").await;
    let sig = push_referrer(&a, "team/app", INDEX, &index).await;
    let sig = sig.0.to_string();
    wait_for(30, "the referrer at Distribution", || {
        manifest_digest(&d, "copy/team/app", &sig)
    })
    .await;
    assert_eq!(
        manifest_digest(&d, "copy/team/app", "v1").await,
        Some(index.0.to_string())
    );
    for c in &children {
        let c = c.0.to_string();
        assert_eq!(manifest_digest(&d, "copy/team/app", &c).await, Some(c));
    }
    let delete = |reference: String| {
        let a = a.clone();
        async move {
            let r = http()
                .delete(format!("{a}/v2/team/app/manifests/{reference}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "DELETE {reference}");
        }
    };
    delete(sig.clone()).await;
    wait_for(30, "the referrer deleted at Distribution", || {
        let (d, sig) = (d.clone(), sig.clone());
        async move {
            manifest_digest(&d, "copy/team/app", &sig)
                .await
                .is_none()
                .then_some(())
        }
    })
    .await;
    // Distribution refuses tag deletes (400): the event is dropped and reported, and the
    // events after it still flow.
    delete("v1".into()).await;
    let after = push_image(&a, "team/app", "after", Some("v2")).await;
    let got = wait_for(30, "v2 at Distribution", || {
        manifest_digest(&d, "copy/team/app", "v2")
    })
    .await;
    assert_eq!(got, after.0.to_string());
    let st = status(&a).await;
    assert_eq!(st["push"][0]["dropped"], 1, "{st}");
    assert_eq!(st["push"][0]["pending"], 0, "{st}");
    let message = st["push"][0]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("400"), "{message}");
}
