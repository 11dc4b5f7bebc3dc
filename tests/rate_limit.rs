//! Rate limits (`[policies.rate_limit]`) on the real `kura serve` binary: a burst then 429
//! `TOOMANYREQUESTS` with `Retry-After`; classes independent; a per-user limit across client
//! IPs; `X-Forwarded-For` believed only from a trusted proxy, for the limits and the failed-login
//! lockout alike; concurrent clients admitted exactly up to the burst; the token endpoint;
//! a live reload; the metrics; configuration errors. Rates of `1/h` make every count exact
//! (nothing refills during a test), so nothing here depends on timing.

mod auth_support;
mod common;

use std::path::Path;

use auth_support::{RULES, USERS, basic, basic_of, http, push_image, write_users};
use serde_json::Value;

/// Starts `kura serve` with `policies` (the body of `[policies.rate_limit]` and below) and,
/// when `auth` is set, an `[auth]` section (the test users and rules) with `auth` added to it.
fn serve(
    dir: &Path,
    policies: &str,
    auth: Option<&str>,
) -> (common::KillOnDrop, String, std::path::PathBuf) {
    let config = dir.join("kura.toml");
    write_config(&config, dir, policies, auth);
    let (kura, base) =
        common::spawn_kura_guarded(&dir.join("root"), &["--config", config.to_str().unwrap()]);
    (kura, base, config)
}

fn write_config(config: &Path, dir: &Path, policies: &str, auth: Option<&str>) {
    let mut text = format!("[policies.rate_limit]\n{policies}\n");
    if let Some(extra) = auth {
        let htpasswd = dir.join("htpasswd");
        write_users(&htpasswd, USERS);
        let rules = RULES.replace("[groups]", "[auth.groups]");
        let rules = rules.replace("[[rules]]", "[[auth.rules]]");
        text = format!(
            "[auth]\nhtpasswd = {:?}\n{extra}\n{rules}\n{text}",
            htpasswd.display().to_string()
        );
    }
    std::fs::write(config, text).unwrap();
}

/// `GET path` with an optional `X-Forwarded-For` and Authorization.
async fn get(base: &str, path: &str, xff: Option<&str>, auth: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .get(format!("{base}{path}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json");
    if let Some(x) = xff {
        req = req.header("X-Forwarded-For", x);
    }
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

const MANIFEST: &str = "/v2/team/app/manifests/v1";

async fn pull(base: &str, xff: Option<&str>, auth: Option<&str>) -> u16 {
    get(base, MANIFEST, xff, auth).await.status().as_u16()
}

/// The error code and Retry-After of a 429, after checking its status.
async fn refusal(r: reqwest::Response) -> (String, u64, Value) {
    assert_eq!(r.status(), 429);
    let retry = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After in whole seconds");
    let body: Value = r.json().await.unwrap();
    let code = body["errors"][0]["code"].as_str().unwrap().to_string();
    (code, retry, body["errors"][0].clone())
}

/// The value of the sample `series` (name and labels) in the metrics `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

async fn metrics(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_limit_spans_client_ips_and_other_users_keep_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(
        tmp.path(),
        "trusted_proxies = [\"127.0.0.1\"]\npull = { per_ip = \"1/h\", per_user = \"1/h\", burst = 3 }",
        Some(""),
    );
    push_image(&base, "team/app", "v1", &basic_of("alice")).await;
    let alice = basic_of("alice");
    // Three IPs, one user: the user's burst is spent across them.
    assert_eq!(pull(&base, Some("198.51.100.1"), Some(&alice)).await, 200);
    assert_eq!(pull(&base, Some("198.51.100.1"), Some(&alice)).await, 200);
    assert_eq!(pull(&base, Some("198.51.100.2"), Some(&alice)).await, 200);
    let r = get(&base, MANIFEST, Some("198.51.100.3"), Some(&alice)).await;
    let (code, _, error) = refusal(r).await;
    assert_eq!(code, "TOOMANYREQUESTS");
    assert_eq!(error["detail"]["by"], "user");
    let msg = error["message"].as_str().unwrap();
    assert!(msg.contains("from user \"alice\""), "{msg}");
    // bob from that same fresh IP is fine until the IP's own burst is spent (alice's refused
    // request took one of its tokens).
    let bob = basic_of("bob");
    assert_eq!(pull(&base, Some("198.51.100.3"), Some(&bob)).await, 200);
    assert_eq!(pull(&base, Some("198.51.100.3"), Some(&bob)).await, 200);
    let (_, _, error) = refusal(get(&base, MANIFEST, Some("198.51.100.3"), Some(&bob)).await).await;
    assert_eq!(error["detail"]["by"], "ip", "{error}");
}

/// Fails a login from each of `wrong_from` (in turn), then returns the status of a right
/// login from `then`.
async fn lockout_probe(base: &str, wrong_from: &[&str], then: &str) -> u16 {
    for x in wrong_from {
        let r = get(base, "/v2/", Some(x), Some(&basic("alice", "wrong"))).await;
        assert_eq!(r.status(), 401, "wrong password from {x}");
    }
    get(base, "/v2/", Some(then), Some(&basic_of("alice")))
        .await
        .status()
        .as_u16()
}

const LOCKOUT: &str = "anonymous_pull = true\nmax_failed_logins = 2\nlockout = \"1h\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_changes_neither_limits_nor_lockout() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(
        tmp.path(),
        "trusted_proxies = [\"10.0.0.0/8\"]\npull = { per_ip = \"1/h\", burst = 2 }",
        Some(LOCKOUT),
    );
    push_image(&base, "team/app", "v1", &basic_of("alice")).await;
    // 127.0.0.1 is no trusted proxy: every request is 127.0.0.1's, whatever it claims.
    assert_eq!(pull(&base, Some("192.0.2.1"), None).await, 200);
    assert_eq!(pull(&base, Some("192.0.2.2"), None).await, 200);
    let r = get(&base, MANIFEST, Some("192.0.2.3"), None).await;
    let (_, _, error) = refusal(r).await;
    let msg = error["message"].as_str().unwrap();
    assert!(msg.contains("client IP 127.0.0.1"), "{msg}");
    // The lockout counts the failures of every claimed address against 127.0.0.1.
    let status = lockout_probe(&base, &["192.0.2.1", "192.0.2.2"], "192.0.2.3").await;
    assert_eq!(
        status, 429,
        "the right password from a 'new' address is locked out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_keys_limits_and_lockout_on_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(
        tmp.path(),
        "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\npull = { per_ip = \"1/h\", burst = 2 }",
        Some(LOCKOUT),
    );
    push_image(&base, "team/app", "v1", &basic_of("alice")).await;
    // The right-most untrusted address is the client; a forged left-most entry is ignored.
    let a = "6.6.6.6, 192.0.2.1, 10.1.1.1";
    assert_eq!(pull(&base, Some(a), None).await, 200);
    assert_eq!(pull(&base, Some("192.0.2.1"), None).await, 200);
    let (_, _, error) = refusal(get(&base, MANIFEST, Some("7.7.7.7, 192.0.2.1"), None).await).await;
    let msg = error["message"].as_str().unwrap();
    assert!(msg.contains("client IP 192.0.2.1"), "{msg}");
    // Other clients behind the proxy, and the proxy itself, have their own buckets.
    assert_eq!(pull(&base, Some("192.0.2.2"), None).await, 200);
    assert_eq!(pull(&base, None, None).await, 200);
    // The lockout follows the same decision: one client locked, another not.
    let status = lockout_probe(&base, &["198.51.100.1", "198.51.100.1"], "198.51.100.1").await;
    assert_eq!(status, 429, "the locked-out client");
    let other = get(
        &base,
        "/v2/",
        Some("198.51.100.2"),
        Some(&basic_of("alice")),
    )
    .await;
    assert_eq!(other.status(), 200, "a client the lockout does not concern");
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
async fn the_token_endpoint_is_limited_per_ip_and_per_user() {
    let tmp = tempfile::tempdir().unwrap();
    let (_kura, base, _) = serve(
        tmp.path(),
        "trusted_proxies = [\"127.0.0.1\"]\ntoken = { per_ip = \"1/h\", per_user = \"1/h\", burst = 2 }",
        Some("[auth.token]\nservice = \"kura\""),
    );
    let token = |xff: &'static str, user: &'static str| {
        let base = base.clone();
        async move {
            get(
                &base,
                "/auth/token?service=kura&scope=repository:team/app:pull",
                Some(xff),
                Some(&basic_of(user)),
            )
            .await
        }
    };
    assert_eq!(token("192.0.2.1", "alice").await.status(), 200);
    assert_eq!(token("192.0.2.2", "alice").await.status(), 200);
    // alice's two tokens are spent, from a fresh address too.
    let (code, _, error) = refusal(token("192.0.2.3", "alice").await).await;
    assert_eq!(code, "TOOMANYREQUESTS");
    assert_eq!(error["detail"]["by"], "user");
    // The OAuth2 form is the same endpoint and the same bucket.
    let r = http()
        .post(format!("{base}/auth/token"))
        .header("X-Forwarded-For", "192.0.2.4")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=alice&password=alice-pw&service=kura&client_id=test")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(r).await.0, "TOOMANYREQUESTS");
    // 192.0.2.1 has one token left: bob takes it; the next is refused per IP.
    assert_eq!(token("192.0.2.1", "bob").await.status(), 200);
    let (_, _, error) = refusal(token("192.0.2.1", "bob").await).await;
    assert_eq!(error["detail"]["class"], "token");
    assert_eq!(error["detail"]["by"], "ip");
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
