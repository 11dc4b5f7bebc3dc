//! Rate limits (`[policies.rate_limit]`) on the real `kura serve` binary: a burst then 429
//! `TOOMANYREQUESTS` with `Retry-After`; classes independent; concurrent clients admitted
//! exactly up to the burst; a live reload; the metrics; configuration errors. Per-user limits,
//! trusted proxies and the token endpoint are in `rate_limit_clients.rs`. Rates of `1/h` make
//! every count exact (nothing refills during a test), so nothing here depends on timing.

mod auth_support;
mod common;
mod rate_limit_support;

use auth_support::{http, push_image};
use rate_limit_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_admitted_then_429_toomanyrequests_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(tmp.path(), "pull = { per_ip = \"1/h\", burst = 3 }", None);
    push_image(&base, "team/app", "v1", "").await;
    for n in 0..3 {
        assert_eq!(pull(&base, None, None).await, 200, "pull {n} of the burst");
    }
    let (code, retry, error) = refusal(get(&base, MANIFEST, None, None).await).await;
    assert_eq!(code, "TOOMANYREQUESTS");
    // An empty 1/h bucket has its next token in an hour, give or take the test's run time.
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    let msg = error["message"].as_str().unwrap();
    assert!(
        msg.contains("too many pull requests from client IP 127.0.0.1"),
        "{msg}"
    );
    assert!(
        msg.contains("per-IP limit is 1/h with a burst of 3"),
        "{msg}"
    );
    assert_eq!(error["detail"]["class"], "pull");
    assert_eq!(error["detail"]["by"], "ip");
    // HEAD and blob GETs are pulls too.
    let blob = get(&base, "/v2/team/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", None, None).await;
    assert_eq!(blob.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_pull_counts_against_the_same_limit() {
    // The router decodes percent-escapes (other than %2F, %25, +) before it matches, so
    // `/v2/team/%61pp/%6Danifests/v1` *is* a manifest GET of team/app: it must be classed a
    // pull like the plain spelling, not slip past the limit.
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(tmp.path(), "pull = { per_ip = \"1/h\", burst = 2 }", None);
    push_image(&base, "team/app", "v1", "").await;
    let encoded = "/v2/team/%61pp/%6Danifests/v1";
    for n in 0..2 {
        let r = get(&base, encoded, None, None).await;
        assert_eq!(r.status(), 200, "encoded pull {n} is served");
    }
    assert_eq!(pull(&base, None, None).await, 429, "the burst is spent");
    let (code, _, error) = refusal(get(&base, encoded, None, None).await).await;
    assert_eq!(code, "TOOMANYREQUESTS");
    assert_eq!(error["detail"]["class"], "pull");
    let blob = "/v2/team/app/%62lobs/sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(get(&base, blob, None, None).await.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_are_independent_an_exhausted_pull_limit_leaves_pushes_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(
        tmp.path(),
        "pull = { per_ip = \"1/h\", burst = 1 }\npush = { per_ip = \"1/h\", burst = 6 }",
        None,
    );
    // One image: two blob uploads and a manifest PUT, three pushes.
    push_image(&base, "team/app", "v1", "").await;
    assert_eq!(pull(&base, None, None).await, 200);
    assert_eq!(pull(&base, None, None).await, 429);
    // Pulls exhausted: pushes go on, up to their own burst.
    push_image(&base, "team/app", "v2", "").await;
    let (code, _, error) = refusal(
        http()
            .post(format!("{base}/v2/team/app/blobs/uploads/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, "TOOMANYREQUESTS");
    assert_eq!(error["detail"]["class"], "push");
    // Listing is in no class.
    let tags = get(&base, "/v2/team/app/tags/list", None, None).await;
    assert_eq!(tags.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_are_admitted_exactly_up_to_the_burst() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(tmp.path(), "pull = { per_ip = \"1/h\", burst = 20 }", None);
    push_image(&base, "team/app", "v1", "").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0, 0);
                for _ in 0..10 {
                    match pull(&base, None, None).await {
                        200 => ok += 1,
                        429 => refused += 1,
                        s => panic!("unexpected status {s}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (o, r) = t.await.unwrap();
        ok += o;
        refused += r;
    }
    // Nothing refills at 1/h: burst + rate × elapsed is the burst.
    assert_eq!((ok, refused), (20, 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_new_limits_in_force_and_a_bad_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, config) = serve(tmp.path(), "pull = { per_ip = \"1/h\", burst = 1 }", None);
    push_image(&base, "team/app", "v1", "").await;
    assert_eq!(pull(&base, None, None).await, 200);
    assert_eq!(pull(&base, None, None).await, 429);
    let burst = "kura_rate_limit_burst{class=\"pull\",by=\"ip\"}";
    assert_eq!(sample(&metrics(&base).await, burst), Some(1.0));

    write_config(
        &config,
        tmp.path(),
        "pull = { per_ip = \"1/h\", burst = 3 }",
        None,
    );
    let r = http()
        .post(format!("{base}/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert!(
        report["applied"]
            .as_array()
            .unwrap()
            .contains(&"policies".into()),
        "{report}"
    );
    for n in 0..3 {
        assert_eq!(
            pull(&base, None, None).await,
            200,
            "pull {n} under the new burst"
        );
    }
    assert_eq!(pull(&base, None, None).await, 429);
    assert_eq!(sample(&metrics(&base).await, burst), Some(3.0));

    // A broken limit is refused whole, naming the key; the running limits stay.
    write_config(&config, tmp.path(), "pull = { per_ip = \"lots\" }", None);
    let r = http()
        .post(format!("{base}/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.contains("policies.rate_limit.pull.per_ip"), "{text}");
    assert_eq!(pull(&base, None, None).await, 429);

    // Removing the section lifts the limit.
    std::fs::write(&config, "").unwrap();
    let r = http()
        .post(format!("{base}/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(pull(&base, None, None).await, 200);
    assert!(!metrics(&base).await.contains("kura_rate_limit_burst{"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_refusals_by_class_and_key_and_show_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(
        tmp.path(),
        "pull = { per_ip = \"1/h\", burst = 1 }\npush = { per_ip = \"120/m\", per_user = \"10/s\", burst = 20 }",
        None,
    );
    assert_eq!(pull(&base, None, None).await, 404);
    for _ in 0..3 {
        assert_eq!(pull(&base, None, None).await, 429);
    }
    let text = metrics(&base).await;
    let series = |name: &str, class: &str, by: &str| {
        sample(
            &text,
            &format!("kura_{name}{{class=\"{class}\",by=\"{by}\"}}"),
        )
    };
    assert_eq!(
        series("rate_limited_total", "pull", "ip"),
        Some(3.0),
        "{text}"
    );
    let per_second = series("rate_limit_per_second", "pull", "ip").unwrap();
    assert!((per_second - 1.0 / 3600.0).abs() < 1e-12, "{per_second}");
    assert_eq!(series("rate_limit_burst", "pull", "ip"), Some(1.0));
    assert_eq!(series("rate_limit_per_second", "push", "ip"), Some(2.0));
    assert_eq!(series("rate_limit_per_second", "push", "user"), Some(10.0));
    assert_eq!(series("rate_limit_burst", "push", "user"), Some(20.0));
    assert_eq!(series("rate_limited_total", "push", "ip"), None);
    assert!(
        !text.contains("class=\"token\""),
        "token is unlimited:\n{text}"
    );
}

#[test]
fn invalid_rate_limits_are_refused_at_start_naming_the_key_and_config_check_shows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        "[policies.rate_limit]\ntrusted_proxies = [\"10.0.0.0/8\"]\npull = { per_ip = \"50/s\", per_user = \"200/s\", burst = 100 }\n",
    )
    .unwrap();
    let (ok, out, err) = common::kura_cmd(&["config", "check", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    for want in [
        "trusted_proxies = [\"10.0.0.0/8\"]",
        "per_ip = \"50/s\"",
        "per_user = \"200/s\"",
        "burst = 100",
    ] {
        assert!(out.contains(want), "no {want:?} in\n{out}");
    }
    for (section, key) in [
        (
            "pull = { per_ip = \"50/d\" }",
            "policies.rate_limit.pull.per_ip",
        ),
        (
            "push = { per_user = \"0/s\" }",
            "policies.rate_limit.push.per_user",
        ),
        (
            "token = { per_ip = \"1/s\", burst = 0 }",
            "policies.rate_limit.token.burst",
        ),
        (
            "trusted_proxies = [\"proxy.local\"]",
            "policies.rate_limit.trusted_proxies",
        ),
        ("pull = { per_ip = \"1/s\", rate = 3 }", "rate"),
    ] {
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, format!("[policies.rate_limit]\n{section}\n")).unwrap();
        let (ok, _, err) = common::kura_cmd(&["config", "check", bad.to_str().unwrap()]);
        assert!(!ok && err.contains(key), "{section}: {err}");
        let root = tmp.path().join("root");
        let (ok, _, err) = common::kura_cmd(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--root",
            root.to_str().unwrap(),
            "--config",
            bad.to_str().unwrap(),
        ]);
        assert!(
            !ok && err.contains(key),
            "serve started with {section}: {err}"
        );
    }
}
