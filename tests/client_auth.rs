//! Authentication and TLS. kura has no authentication yet, so these tests put a small proxy
//! (tests/client_support/proxy.rs) in front of a kura server that demands basic or bearer
//! credentials, with a Docker-token-spec endpoint; and one that serves HTTPS with a
//! certificate from a test CA, on a non-loopback address so the client uses HTTPS.

mod client_support;
mod common;

use base64::Engine as _;
use client_support::proxy::{Auth, Options, Proxy, non_loopback_ip, tls_for};
use client_support::{Client, entry, p, reachable, single_image};
use common::TestServer;
use serde_json::Value;

fn config(c: &Client) -> Value {
    std::fs::read(c.config_file())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_authenticates_login_push_pull_and_mount() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(
        s.addr,
        Options {
            auth: Auth::Bearer {
                user: "alice".into(),
                pass: "s3cret".into(),
            },
            ..Options::default()
        },
    )
    .await;
    let host = proxy.host.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let image = format!("{host}/team/app:v1");
    let c = Client::new();

    // No credentials: the token server refuses, and so does the push.
    let out = c.run(&["push", p(&src.dir), &image]).await;
    assert!(!out.success);
    assert!(out.stderr.contains("authentication with"), "{}", out.stderr);

    // A wrong password is refused at login and nothing is stored.
    let out = c.run(&["login", &host, "-u", "alice", "-p", "wrong"]).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(config(&c)["auths"][&host].is_null());

    let out = c
        .run_stdin(
            &["login", &host, "-u", "alice", "--password-stdin"],
            "s3cret\n",
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let stored = config(&c)["auths"][&host]["auth"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(stored)
            .unwrap(),
        b"alice:s3cret"
    );

    // One token serves a whole push (HEADs, uploads, manifest), and one a whole pull.
    let before = proxy.token_requests().len();
    c.ok(&["push", "-q", p(&src.dir), &image]).await;
    let after_push = proxy.token_requests().len();
    assert_eq!(after_push - before, 1, "{:#?}", proxy.token_requests());
    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    assert_eq!(proxy.token_requests().len() - after_push, 1);
    assert_eq!(entry(&dest, Some("v1"))["digest"], digest);
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));
    // A mount needs pull on the source repository too: the challenge names both scopes.
    let out = c
        .ok(&["copy", "--json", &image, &format!("{host}/team/copy:v1")])
        .await;
    assert!(
        out.events_of("blob")
            .iter()
            .all(|e| e["action"] == "mounted"),
        "{}",
        out.stdout
    );

    let tokens = proxy.token_requests();
    assert!(
        tokens
            .iter()
            .all(|t| t.service.as_deref() == Some("kura-test"))
    );
    let granted: Vec<_> = tokens.iter().filter(|t| t.granted).collect();
    assert!(granted.iter().all(|t| t.user.as_deref() == Some("alice")));
    let has = |scope: &str| granted.iter().any(|t| t.scopes.iter().any(|s| s == scope));
    assert!(has("repository:team/app:pull,push"), "{tokens:#?}");
    assert!(
        granted.iter().any(
            |t| t.scopes.contains(&"repository:team/copy:pull,push".into())
                && t.scopes.contains(&"repository:team/app:pull".into())
        ),
        "{tokens:#?}"
    );
    let served: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| r.status != 401)
        .collect();
    assert!(served.iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))
    }));

    let out = c.ok(&["logout", &host]).await;
    assert!(out.stdout.contains(&host));
    assert!(config(&c)["auths"][&host].is_null());
    let out = c.run(&["pull", &image, p(&tmp.path().join("again"))]).await;
    assert!(!out.success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_credentials_come_from_the_docker_config() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(
        s.addr,
        Options {
            auth: Auth::Basic {
                user: "bob".into(),
                pass: "hunter2".into(),
            },
            ..Options::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let image = format!("{}/team/app:v1", proxy.host);
    let c = Client::new();

    let out = c.run(&["push", p(&src.dir), &image]).await;
    assert!(!out.success);
    assert!(out.stderr.contains("kura login"), "{}", out.stderr);

    // Credentials written as `docker login` writes them (the key may carry a scheme).
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
    std::fs::write(
        c.config_file(),
        serde_json::json!({"auths": {format!("http://{}", proxy.host): {"auth": auth}}})
            .to_string(),
    )
    .unwrap();
    c.ok(&["push", "-q", p(&src.dir), &image]).await;
    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    let digest = desc["digest"].as_str().unwrap();
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));
    let served: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| r.status != 401)
        .collect();
    assert!(!served.is_empty());
    assert!(
        served
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Basic {auth}")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registry_is_trusted_with_ca_cert() {
    let s = TestServer::start().await;
    let ip = non_loopback_ip();
    let (ca_pem, tls) = tls_for(&ip.to_string());
    let proxy = Proxy::start(
        s.addr,
        Options {
            tls: Some(tls),
            bind: format!("{ip}:0"),
            ..Options::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let image = format!("{}/team/tls:v1", proxy.host);
    let c = Client::new();

    // Not a loopback registry, so HTTPS; the test CA is not trusted by default.
    let out = c.run(&["push", p(&src.dir), &image]).await;
    assert!(!out.success);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    assert!(
        proxy.seen().is_empty(),
        "no request got through the TLS handshake"
    );

    c.ok(&["push", "-q", "--ca-cert", p(&ca), p(&src.dir), &image])
        .await;
    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", "--ca-cert", p(&ca), &image, p(&dest)])
        .await;
    let digest = desc["digest"].as_str().unwrap();
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));
    assert!(!proxy.seen().is_empty());
}
