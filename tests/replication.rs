//! Push-mode replication between real kura processes on loopback: every manifest push and
//! delete of a matching repository reaches the target with identical digests (every platform,
//! referrers), a target that was down catches up, events queued when the source is killed are
//! delivered after its restart, credentials reach a target behind token auth, and two
//! registries replicating to each other do not echo; `GET /admin/replication` shows pending
//! events and errors. Pull mode is in `replication_pull.rs`.

mod auth_support;
mod common;
mod replication_support;

use common::{kura_cmd, spawn_kura_guarded};
use replication_support::*;
use serde_json::Value;

/// A source config replicating `team/*` to `target`, retrying fast.
fn push_config(target: &str) -> String {
    format!(
        "[[replication.push]]\nname = \"dr\"\nurl = \"{target}\"\nrepositories = [\"team/*\"]\n\
         backoff = \"100ms\"\nmax_backoff = \"500ms\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_the_target_with_every_platform_and_referrers_under_identical_digests() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_b, b) = spawn_kura_guarded(db.path(), &[]);
    let cfg = config_file(da.path(), &push_config(&b));
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    // Pushed first and not matching `team/*`: had it been queued, it would arrive first.
    push_image(&a, "other/app", "not replicated", Some("v1")).await;
    let (index, children) = push_index(&a, "team/app", "v1").await;
    let sig = push_referrer(&a, "team/app", INDEX, &index).await;
    let sig_digest = sig.0.to_string();
    wait_for(30, "the referrer at the target", || {
        manifest_digest(&b, "team/app", &sig_digest)
    })
    .await;
    assert_eq!(
        manifest_digest(&b, "team/app", "v1").await,
        Some(index.0.to_string())
    );
    for c in &children {
        let d = c.0.to_string();
        assert_eq!(manifest_digest(&b, "team/app", &d).await, Some(d));
    }
    assert_eq!(
        referrers(&b, "team/app", &index.0.to_string()).await,
        vec![sig_digest]
    );
    assert_eq!(manifest_digest(&b, "other/app", "v1").await, None);
    let st = status(&a).await;
    assert_eq!(st["push"][0]["name"], "dr");
    assert_eq!(st["push"][0]["pending"], 0);
    assert_eq!(st["push"][0]["replicated"], 4, "{st}");
    assert!(st["push"][0]["last_success"].is_string(), "{st}");
    let metrics = http().get(format!("{a}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("kura_replication_manifests_total{direction=\"push\",name=\"dr\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_replicating_to_each_other_do_not_echo_pushes() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let ca = config_file(da.path(), &push_config(&b));
    let cb = config_file(db.path(), &push_config(&a));
    let (_a, _) = spawn_at(da.path(), &format!("127.0.0.1:{pa}"), Some(&ca));
    let (_b, _) = spawn_at(db.path(), &format!("127.0.0.1:{pb}"), Some(&cb));
    let pushed = push_image(&a, "team/app", "ping", Some("v1")).await;
    let got = wait_for(30, "the image at B", || {
        manifest_digest(&b, "team/app", "v1")
    })
    .await;
    assert_eq!(got, pushed.0.to_string());
    // B's own event of the replicated push goes back to A, which has it: nothing is written.
    wait_for(30, "B's echo applied", || {
        let b = b.clone();
        async move {
            let st = status(&b).await;
            (st["push"][0]["replicated"] == 1 && st["push"][0]["pending"] == 0).then_some(())
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for base in [&a, &b] {
        let st = status(base).await;
        assert_eq!(st["push"][0]["replicated"], 1, "{base}: {st}");
        assert_eq!(st["push"][0]["pending"], 0, "{base}: {st}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_of_tags_and_manifests_are_replicated() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_b, b) = spawn_kura_guarded(db.path(), &[]);
    let cfg = config_file(da.path(), &push_config(&b));
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    let one = push_image(&a, "team/app", "one", Some("one")).await;
    let two = push_image(&a, "team/app", "two", Some("two")).await;
    let two_digest = two.0.to_string();
    wait_for(30, "both tags at the target", || {
        let b = b.clone();
        async move { (tags(&b, "team/app").await == ["one", "two"]).then_some(()) }
    })
    .await;
    for reference in ["one", two_digest.as_str()] {
        let r = http()
            .delete(format!("{a}/v2/team/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "DELETE {reference}");
    }
    wait_for(30, "the deletes at the target", || {
        let (b, d) = (b.clone(), two_digest.clone());
        async move {
            manifest_digest(&b, "team/app", &d)
                .await
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(tags(&b, "team/app").await, Vec::<String>::new());
    // The tag's revision stays (only the tag was deleted), as at the source.
    let d = one.0.to_string();
    assert_eq!(manifest_digest(&b, "team/app", &d).await, Some(d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_was_down_catches_up_and_the_status_shows_its_error() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_addr = format!("127.0.0.1:{}", free_port());
    let (mut b_proc, b) = spawn_at(db.path(), &b_addr, None);
    let cfg = config_file(da.path(), &push_config(&b));
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    b_proc.kill();
    let one = push_image(&a, "team/app", "one", Some("one")).await;
    let two = push_image(&a, "team/app", "two", Some("two")).await;
    let st = wait_for(30, "2 pending events and an error", || {
        let a = a.clone();
        async move {
            let st = status(&a).await;
            (st["push"][0]["pending"] == 2 && st["push"][0]["last_error"].is_object()).then_some(st)
        }
    })
    .await;
    assert!(st["push"][0]["last_success"].is_null(), "{st}");
    assert!(st["push"][0]["last_error"]["time"].is_string(), "{st}");
    let (ok, out, err) = kura_cmd(&["replication", "status", "--url", &a]);
    assert!(ok, "{err}");
    assert!(
        out.contains("push dr -> ") && out.contains(": 2 pending"),
        "{out}"
    );
    assert!(out.contains("last error at "), "{out}");
    let metrics = http().get(format!("{a}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("kura_replication_pending{target=\"dr\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kura_replication_errors_total{direction=\"push\",name=\"dr\"}"),
        "{metrics}"
    );
    let (_b, _) = spawn_at(db.path(), &b_addr, None);
    for (tag, d) in [("one", &one.0), ("two", &two.0)] {
        let got = wait_for(30, "the image at the target", || {
            manifest_digest(&b, "team/app", tag)
        })
        .await;
        assert_eq!(got, d.to_string());
    }
    wait_for(10, "an empty queue and a success", || {
        let a = a.clone();
        async move {
            let st = status(&a).await;
            (st["push"][0]["pending"] == 0 && st["push"][0]["last_success"].is_string())
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pending_when_the_source_is_killed_are_delivered_after_its_restart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_addr = format!("127.0.0.1:{}", free_port());
    let b = format!("http://{b_addr}");
    let cfg = config_file(da.path(), &push_config(&b));
    let (mut a_proc, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    let one = push_image(&a, "team/app", "one", Some("one")).await;
    let two = push_image(&a, "team/app", "two", Some("two")).await;
    let st = status(&a).await;
    assert_eq!(st["push"][0]["pending"], 2, "{st}");
    a_proc.kill(); // SIGKILL: nothing is flushed on the way out
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    assert_eq!(status(&a).await["push"][0]["pending"], 2);
    let (_b, _) = spawn_at(db.path(), &b_addr, None);
    for (tag, d) in [("one", &one.0), ("two", &two.0)] {
        let got = wait_for(30, "the image at the target", || {
            manifest_digest(&b, "team/app", tag)
        })
        .await;
        assert_eq!(got, d.to_string());
    }
}

/// The digest of `reference` at a token-authenticated kura `base`, read as `user`.
async fn digest_as(base: &str, user: &str, repo: &str, reference: &str) -> Option<String> {
    let t: Value = http()
        .get(format!(
            "{base}/auth/token?service=kura&scope=repository:{repo}:pull"
        ))
        .basic_auth(user, Some(auth_support::pw(user)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http()
        .head(format!("{base}/v2/{repo}/manifests/{reference}"))
        .bearer_auth(t["token"].as_str().unwrap())
        .header("Accept", IMAGE)
        .send()
        .await
        .unwrap();
    r.headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_behind_token_auth_gets_pushes_with_the_configured_credentials_only() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, auth_file) = auth_support::auth_config(db.path(), "[token]\nlifetime = \"1m\"\n");
    let auth_file = auth_file.display().to_string();
    let (_b, b) = spawn_kura_guarded(&db.path().join("root"), &["--auth-config", &auth_file]);
    let target = |name: &str, password: &str| {
        format!(
            "[[replication.push]]\nname = \"{name}\"\nurl = \"{b}\"\nusername = \"bob\"\n\
             password = \"{password}\"\nbackoff = \"100ms\"\nmax_backoff = \"500ms\"\n"
        )
    };
    let toml = target("dr", auth_support::pw("bob")) + &target("wrong", "not-the-password");
    let cfg = config_file(da.path(), &toml);
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    let pushed = push_image(&a, "team/app", "signed in", Some("v1")).await;
    let got = wait_for(30, "the image at the target", || {
        digest_as(&b, "alice", "team/app", "v1")
    })
    .await;
    assert_eq!(got, pushed.0.to_string());
    let st = wait_for(30, "the refused target's error", || {
        let a = a.clone();
        async move {
            let st = status(&a).await;
            st["push"][1]["last_error"].is_object().then_some(st)
        }
    })
    .await;
    assert_eq!(st["push"][1]["name"], "wrong");
    assert_eq!(st["push"][1]["pending"], 1, "{st}");
    let message = st["push"][1]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("authentication"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_cached_by_a_mirror_is_not_replicated() {
    let (du, da, db) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (_u, u) = spawn_kura_guarded(du.path(), &[]);
    let upstream = push_image(&u, "library/x", "upstream", Some("v1")).await;
    let (_b, b) = spawn_kura_guarded(db.path(), &[]);
    let toml = format!(
        "[[mirrors]]\nname = \"up\"\nprefix = \"mirror/\"\nupstream = \"{u}\"\n\
         [[replication.push]]\nname = \"dr\"\nurl = \"{b}\"\nbackoff = \"100ms\"\n"
    );
    let cfg = config_file(da.path(), &toml);
    let (_a, a) = spawn_kura_guarded(da.path(), &["--config", &cfg]);
    // Cached through the mirror, then a push: events are applied in order, so had the cached
    // manifest been queued it would be at B before the push.
    let r = http()
        .get(format!("{a}/v2/mirror/library/x/manifests/v1"))
        .header("Accept", IMAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cached = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(cached, upstream.0.to_string());
    assert_eq!(
        tags(&a, "mirror/library/x").await,
        ["v1"],
        "cached in A's tables"
    );
    let pushed = push_image(&a, "team/app", "pushed", Some("v1")).await;
    let got = wait_for(30, "the push at B", || {
        manifest_digest(&b, "team/app", "v1")
    })
    .await;
    assert_eq!(got, pushed.0.to_string());
    assert_eq!(manifest_digest(&b, "mirror/library/x", "v1").await, None);
    assert_eq!(status(&a).await["push"][0]["replicated"], 1);
}

#[test]
fn config_check_prints_replication_with_secrets_masked_and_refuses_unsafe_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "[[replication.push]]\nname = \"dr\"\nurl = \"https://dr.example.com\"\nusername = \"bot\"\npassword = \"hunter2\"\n\
         [[replication.pull]]\nname = \"hub\"\nurl = \"https://registry-1.docker.io\"\nrepositories = [\"library/alpine\"]\ntoken = \"s3cret\"\n",
    );
    let (ok, out, err) = kura_cmd(&["config", "check", &cfg]);
    assert!(ok, "{err}");
    assert!(
        out.contains("[[replication.push]]") && out.contains("username = \"bot\""),
        "{out}"
    );
    assert!(!out.contains("hunter2") && !out.contains("s3cret"), "{out}");
    let bad = config_file(
        dir.path(),
        "[[replication.push]]\nname = \"dr\"\nurl = \"http://dr.example.com\"\n",
    );
    let (ok, _, err) = kura_cmd(&["config", "check", &bad]);
    assert!(!ok && err.contains("needs insecure = true"), "{err}");
    let into_mirror = config_file(
        dir.path(),
        "[[mirrors]]\nname = \"docker.io\"\nprefix = \"docker.io/\"\nupstream = \"https://registry-1.docker.io\"\n\
         [[replication.pull]]\nname = \"hub\"\nurl = \"https://registry-1.docker.io\"\n\
         repositories = [\"library/alpine\"]\nprefix = \"docker.io/\"\n",
    );
    let (ok, _, err) = kura_cmd(&["config", "check", &into_mirror]);
    assert!(
        !ok && err.contains("under the prefix \"docker.io/\" of mirror"),
        "{err}"
    );
}
