//! How the pull-through cache logs in to its upstream: Basic, the Docker token flow with
//! credentials (the token asked for the upstream's repository name), a static bearer token;
//! and `kura config check` masking the mirrors' secrets. (kura's own `[auth.token]` upstream is
//! what every other mirror test pulls through.) The upstream here is an anonymous kura behind
//! the test proxy, which does the authentication.

mod client_support;
mod common;
mod mirror_support;

use client_support::noise;
use client_support::proxy::{Auth, Options, Proxy, non_loopback_ip};
use common::{KillOnDrop, kura_cmd, spawn_kura_guarded};
use mirror_support::images::{Image, pull_exact};
use mirror_support::*;

const REPO: &str = "docker.io/library/app";

/// An anonymous upstream holding `library/app:v1`, behind a proxy demanding `auth`, and a
/// mirror of it with `spec`'s credentials.
async fn behind(
    auth: Auth,
    creds: MirrorSpec,
) -> (KillOnDrop, tempfile::TempDir, Proxy, Mirror, Image) {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_kura_guarded(dir.path(), &[]);
    let img = Image::opaque("auth", &[noise(200_000, 40)]);
    img.push(&base, "library/app", "v1", None).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(
        addr,
        Options {
            auth,
            ..Options::default()
        },
    )
    .await;
    let mirror = Mirror::start(&[MirrorSpec {
        upstream: format!("http://{}", proxy.host),
        ..creds
    }]);
    (child, dir, proxy, mirror, img)
}

fn creds(user: &str, pass: &str, token: &str) -> MirrorSpec {
    MirrorSpec {
        username: user.into(),
        password: pass.into(),
        token: token.into(),
        ..MirrorSpec::docker_io("")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_upstream_gets_the_configured_credentials() {
    let auth = Auth::Basic {
        user: "hub-user".into(),
        pass: "hub-pass".into(),
    };
    let (_up, _dir, proxy, mirror, img) = behind(auth, creds("hub-user", "hub-pass", "")).await;
    pull_exact(&mirror.base, REPO, "v1", &img).await;
    let ok: Vec<_> = answered(&proxy);
    assert!(!ok.is_empty());
    let expected = format!("Basic {}", base64_of("hub-user:hub-pass"));
    assert!(
        ok.iter()
            .all(|s| s.authorization.as_deref() == Some(expected.as_str())),
        "{ok:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_upstream_gets_a_token_for_the_upstream_repository_name() {
    let auth = Auth::Bearer {
        user: "hub-user".into(),
        pass: "access-token".into(),
    };
    let (_up, _dir, proxy, mirror, img) = behind(auth, creds("hub-user", "access-token", "")).await;
    pull_exact(&mirror.base, REPO, "v1", &img).await;
    let tokens = proxy.token_requests();
    assert!(!tokens.is_empty(), "the mirror fetched a token");
    for t in &tokens {
        assert!(t.granted, "{t:?}");
        assert_eq!(t.user.as_deref(), Some("hub-user"));
        assert_eq!(t.service.as_deref(), Some("kura-test"));
        assert!(
            t.scopes
                .iter()
                .all(|s| s.starts_with("repository:library/app:")),
            "scopes name the upstream repository: {t:?}"
        );
    }
    assert!(answered(&proxy).iter().all(|s| {
        s.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_bearer_token_is_sent_as_configured() {
    let auth = Auth::StaticBearer("static-tok-123".into());
    let (_up, _dir, proxy, mirror, img) = behind(auth, creds("", "", "static-tok-123")).await;
    pull_exact(&mirror.base, REPO, "v1", &img).await;
    let ok = answered(&proxy);
    assert!(!ok.is_empty());
    assert!(
        ok.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer static-tok-123")),
        "{ok:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_upstream_credentials_fail_the_pull_and_cache_nothing() {
    let auth = Auth::Basic {
        user: "hub-user".into(),
        pass: "hub-pass".into(),
    };
    let (_up, _dir, _proxy, mirror, img) = behind(auth, creds("hub-user", "wrong", "")).await;
    let (status, _, _) = mirror_support::images::get_manifest(&mirror.base, REPO, "v1").await;
    assert!(
        status >= 400,
        "pull with wrong upstream credentials answered {status}"
    );
    assert!(!mirror.has_blob_file(&img.digest));
    assert!(!catalog(&mirror.base).await.contains(&REPO.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_non_loopback_upstream_needs_insecure_and_never_carries_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, base) = spawn_kura_guarded(dir.path(), &[]);
    let img = Image::opaque("insecure", &[noise(20_000, 41)]);
    img.push(&base, "library/app", "v1", None).await;
    let upstream = base.trim_start_matches("http://").parse().unwrap();
    let bind = format!("{}:0", non_loopback_ip());
    let open = Proxy::start(
        upstream,
        Options {
            bind: bind.clone(),
            ..Options::default()
        },
    )
    .await;
    let spec = MirrorSpec {
        upstream: format!("http://{}", open.host),
        ..creds("", "", "")
    };

    // Without `insecure`: refused at start, or refused without a request.
    if let Ok(mirror) = Mirror::try_start(std::slice::from_ref(&spec)) {
        let (status, _, _) = mirror_support::images::get_manifest(&mirror.base, REPO, "v1").await;
        assert!(
            status >= 400,
            "plain http to {} answered {status}",
            open.host
        );
        assert!(open.seen().is_empty(), "{:#?}", open.seen());
    }
    let mirror = Mirror::start(&[MirrorSpec {
        insecure: true,
        ..spec
    }]);
    pull_exact(&mirror.base, REPO, "v1", &img).await;
    assert!(!answered(&open).is_empty());

    // Even with `insecure`, a password is not sent in clear to a host that is not loopback.
    let auth = Auth::Basic {
        user: "hub-user".into(),
        pass: "hub-pass".into(),
    };
    let guarded = Proxy::start(
        upstream,
        Options {
            auth,
            bind,
            ..Options::default()
        },
    )
    .await;
    let mirror = Mirror::start(&[MirrorSpec {
        upstream: format!("http://{}", guarded.host),
        insecure: true,
        ..creds("hub-user", "hub-pass", "")
    }]);
    let r = common::client()
        .get(format!("{}/v2/{REPO}/manifests/v1", mirror.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let (code, message) = error_of(r).await;
    assert_eq!(code, "UNKNOWN");
    assert!(message.contains("plain HTTP"), "{message}");
    assert!(
        guarded.seen().iter().all(|s| s.authorization.is_none()),
        "{:#?}",
        guarded.seen()
    );
}

#[test]
fn config_check_masks_mirror_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kura.toml");
    let basic = MirrorSpec {
        tag_ttl: "10m".into(),
        max_bytes: 5 << 30,
        upstream: "http://127.0.0.1:5000".into(),
        ..creds("hub-user", "pw-SECRET-1", "")
    };
    let bearer = MirrorSpec {
        name: "ghcr.io".into(),
        prefix: "ghcr.io/".into(),
        upstream: "http://127.0.0.1:5001".into(),
        ..creds("", "", "tok-SECRET-2")
    };
    std::fs::write(&file, basic.toml() + &bearer.toml()).unwrap();
    let (ok, out, err) = kura_cmd(&["config", "check", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("[[mirrors]]") && out.contains("docker.io/"),
        "{out}"
    );
    assert!(!out.contains("SECRET"), "secrets are masked: {out}");
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_token_is_replaced_by_a_new_one() {
    let mut s = setup(Options::default(), |_| {}).await;
    let a = Image::opaque("before", &[noise(10_000, 42)]);
    let b = Image::opaque("after", &[noise(10_000, 43)]);
    s.up.push(&a, "library/app", "v1").await;
    s.up.push(&b, "library/app", "v2").await;
    pull_exact(&s.mirror.base, REPO, "v1", &a).await;
    // The upstream forgets its key (as after a key rotation): the mirror's token is now invalid.
    s.up.restart_with_new_key();
    pull_exact(&s.mirror.base, REPO, "v2", &b).await;
    let tokens = s
        .proxy
        .seen()
        .iter()
        .filter(|r| r.target.starts_with("/auth/token"))
        .count();
    assert!(tokens >= 2, "a new token was fetched: {tokens}");
}

/// An `[auth]` section for a mirror in `dir`: Basic users `hubpull` (may pull `docker.io/*`)
/// and `libpull` (may pull `library/*`), kura's own tokens.
fn mirror_access(dir: &std::path::Path) -> String {
    let mut h = String::new();
    for (u, p) in [("hubpull", "pw1"), ("libpull", "pw2")] {
        let hash = bcrypt::hash(p, 4).unwrap().replacen("$2b$", "$2y$", 1);
        h.push_str(&format!("{u}:{hash}\n"));
    }
    std::fs::write(dir.join("htpasswd"), h).unwrap();
    format!(
        "[auth]\nhtpasswd = {:?}\n[auth.token]\nservice = \"mirror\"\n\
         [[auth.rules]]\nusers = [\"hubpull\"]\nrepositories = [\"docker.io/*\"]\nactions = [\"pull\"]\n\
         [[auth.rules]]\nusers = [\"libpull\"]\nrepositories = [\"library/*\"]\nactions = [\"pull\"]\n",
        dir.join("htpasswd").display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_and_token_scopes_of_ns_requests_name_the_local_repository() {
    let s = setup(Options::default(), |_| {}).await;
    let img = Image::opaque("authz", &[noise(30_000, 44)]);
    s.up.push(&img, "library/app", "v1").await;
    let spec = MirrorSpec::docker_io(&format!("http://{}", s.proxy.host));
    let mirror = Mirror::try_start_with(&[spec], &[], mirror_access).unwrap();
    let m = &mirror.base;
    let paths = [
        "/v2/library/app/manifests/v1?ns=docker.io".to_string(),
        format!("/v2/library/app/blobs/{}?ns=docker.io", img.blobs[1].0),
        format!("/v2/{REPO}/manifests/v1"),
    ];
    for (user, pass, allowed) in [("hubpull", "pw1", true), ("libpull", "pw2", false)] {
        for path in &paths {
            let r = common::client()
                .get(format!("{m}{path}"))
                .basic_auth(user, Some(pass))
                .header("Accept", mirror_support::images::ACCEPT)
                .send()
                .await
                .unwrap();
            let want = if allowed { 200 } else { 403 };
            assert_eq!(r.status(), want, "{user} GET {path}");
        }
    }
    // containerd's token flow: the challenge names the local repository, and its token works.
    let r = common::client()
        .get(format!("{m}{}", paths[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let scope = format!("repository:{REPO}:pull");
    assert!(challenge.contains(&scope), "{challenge}");
    let r = common::client()
        .get(format!("{m}/auth/token?service=mirror&scope={scope}"))
        .basic_auth("hubpull", Some("pw1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: serde_json::Value = r.json().await.unwrap();
    let r = common::client()
        .get(format!("{m}{}", paths[0]))
        .bearer_auth(token["token"].as_str().unwrap())
        .header("Accept", mirror_support::images::ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
