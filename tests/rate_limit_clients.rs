//! Rate limits by client on the real `kura serve` binary: a per-user limit across client IPs;
//! `X-Forwarded-For` believed only from a trusted proxy, for the limits and the failed-login
//! lockout alike; the token endpoint's limits per IP and per user. Rates of `1/h` make every
//! count exact.

mod auth_support;
mod common;
mod rate_limit_support;

use auth_support::{basic, basic_of, http, push_image};
use rate_limit_support::*;

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
async fn the_upload_session_cap_per_client_follows_the_same_client_decision() {
    let tmp = tempfile::tempdir().unwrap();
    // No rate limit at all: the trusted proxies alone decide who the client is.
    let (_kura, base, _) = serve(
        tmp.path(),
        "trusted_proxies = [\"127.0.0.1\"]\n\n[limits]\nmax_upload_sessions_per_client = 1",
        None,
    );
    let start = |xff: &'static str| {
        let base = base.clone();
        async move {
            http()
                .post(format!("{base}/v2/team/app/blobs/uploads/"))
                .header("X-Forwarded-For", xff)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(start("192.0.2.1").await, 202);
    assert_eq!(
        start("192.0.2.1").await,
        429,
        "the client's one session is open"
    );
    assert_eq!(
        start("192.0.2.2").await,
        202,
        "another client behind the proxy"
    );
}
