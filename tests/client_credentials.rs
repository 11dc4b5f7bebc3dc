//! The client sends credentials only where they belong: to the registry's own origin (scheme,
//! host, port) and the token realm it names. A blob download redirected to another server, or
//! an upload `Location` on another server (an object store, a CDN), gets no `Authorization`;
//! Basic credentials never go over plain HTTP to a non-loopback host.

mod client_support;
mod common;

use base64::Engine as _;
use client_support::proxy::{Auth, Options, Proxy, non_loopback_ip};
use client_support::{Client, p, reachable, single_image};
use common::TestServer;

/// Writes `user:pass` for `host` into the client's Docker config.
fn login(c: &Client, host: &str, user: &str, pass: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        c.config_file(),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

fn basic_bob() -> Auth {
    Auth::Basic {
        user: "bob".into(),
        pass: "hunter2".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_downloads_handed_to_another_host_carry_no_credentials() {
    let s = TestServer::start().await;
    // The "object store": no authentication, records what it is sent.
    let store = Proxy::start(s.addr, Options::default()).await;
    let registry = Proxy::start(
        s.addr,
        Options {
            auth: basic_bob(),
            hand_off_to: Some(format!("http://{}", store.host)),
            ..Options::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let image = format!("{}/team/app:v1", registry.host);
    let c = Client::new();
    login(&c, &registry.host, "bob", "hunter2");

    c.ok(&["push", "-q", p(&src.dir), &image]).await;
    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    let digest = desc["digest"].as_str().unwrap();
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));

    let handed: Vec<_> = store.seen();
    assert!(
        handed.iter().any(|r| r.target.contains("/blobs/uploads/")),
        "uploads went to the other host: {handed:?}"
    );
    assert!(
        handed
            .iter()
            .any(|r| r.method == "GET" && !r.target.contains("/uploads/")),
        "downloads went to the other host: {handed:?}"
    );
    let leaked: Vec<_> = handed
        .iter()
        .filter(|r| r.authorization.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to another host: {leaked:?}"
    );
    // The registry itself got them.
    assert!(registry.seen().iter().any(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_never_go_over_plain_http_to_a_non_loopback_host() {
    let s = TestServer::start().await;
    let ip = non_loopback_ip();
    let registry = Proxy::start(
        s.addr,
        Options {
            auth: basic_bob(),
            bind: format!("{ip}:0"),
            ..Options::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, _) = single_image(&tmp.path().join("src"));
    let image = format!("{}/team/app:v1", registry.host);
    let c = Client::new();
    login(&c, &registry.host, "bob", "hunter2");

    let out = c
        .run(&["push", "--insecure", &registry.host, p(&src.dir), &image])
        .await;
    assert!(!out.success, "pushed with Basic over plain HTTP");
    assert!(
        out.stderr.contains("plain HTTP"),
        "the error says why: {}",
        out.stderr
    );
    let sent: Vec<_> = registry
        .seen()
        .into_iter()
        .filter(|r| r.authorization.is_some())
        .collect();
    assert!(sent.is_empty(), "credentials sent in clear: {sent:?}");
}
