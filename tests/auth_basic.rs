//! Basic authentication from an htpasswd file (no `[auth.token]`): skopeo and oci-client push
//! and pull with credentials, access rules (403 `DENIED`, filtered `_catalog`, admin endpoints),
//! the Basic challenge, failed-login limiting, mounts and anonymous pull.

mod auth_support;
mod common;

use auth_support::{
    AuthServer, auth_config, basic, basic_of, catalog, error_code, http, oci_layout, push_blob,
    push_image, pw, skopeo,
};
use kura::digest::Digest;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_with_basic_credentials_through_the_binary_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, auth_file) = auth_config(tmp.path(), "");
    let htpasswd = tmp.path().join("htpasswd");
    // The rules come from --auth-config, the users from --htpasswd (overriding the file's).
    let (child, url) = common::spawn_kura(
        &tmp.path().join("root"),
        &[
            "--auth-config",
            auth_file.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
        ],
    );
    let _kura = auth_support::KillOnDrop(child);
    let host = url.trim_start_matches("http://").to_string();
    let layout = tmp.path().join("layout");
    let digest = oci_layout(&layout, "basic");
    let src = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{host}/team/app:v1");
    let bob = format!("bob:{}", pw("bob"));
    let carol = format!("carol:{}", pw("carol"));

    // Without credentials, and with a wrong password, the push is refused.
    let out = skopeo(&["copy", "--dest-tls-verify=false", &src, &dest]).await;
    assert!(!out.success, "anonymous push succeeded");
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:wrong",
        &src,
        &dest,
    ])
    .await;
    assert!(!out.success, "push with a wrong password succeeded");
    // carol may only pull team/*.
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &carol,
        &src,
        &dest,
    ])
    .await;
    assert!(!out.success, "pull-only user pushed");
    assert!(
        out.stderr.contains("denied") || out.stderr.contains("403"),
        "{}",
        out.stderr
    );

    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &bob,
        &src,
        &dest,
    ])
    .await;
    assert!(out.success, "{}", out.stderr);
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &carol,
        &dest,
    ])
    .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        Digest::sha256_of(out.stdout.as_bytes()).to_string(),
        digest,
        "pulled manifest differs"
    );
    let pulled = tmp.path().join("pulled");
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &carol,
        &dest,
        &format!("oci:{}:v1", pulled.display()),
    ])
    .await;
    assert!(out.success, "{}", out.stderr);
}

/// Whether an oci-client error is a 403 `DENIED` (it reports those in two shapes).
fn denied(err: &oci_client::errors::OciDistributionError) -> bool {
    let e = format!("{err:?}");
    e.contains("DENIED") || e.contains("code: Denied")
}

fn oci() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_and_pulls_with_basic_auth_and_pull_only_users_cannot_push() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    let reference: Reference = format!("{}/team/oci:v1", s.addr).parse().unwrap();
    let layers = vec![ImageLayer::new(
        b"oci-client layer".to_vec(),
        IMAGE_LAYER_MEDIA_TYPE.to_string(),
        None,
    )];
    let config = Config::new(
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let bob = RegistryAuth::Basic("bob".into(), pw("bob").into());
    let carol = RegistryAuth::Basic("carol".into(), pw("carol").into());

    // carol (pull only) is refused with 403.
    let err = oci()
        .push(&reference, &layers, config.clone(), &carol, None)
        .await
        .err()
        .expect("pull-only user pushed");
    assert!(denied(&err), "{err:?}");
    // Anonymous is refused.
    assert!(
        oci()
            .push(
                &reference,
                &layers,
                config.clone(),
                &RegistryAuth::Anonymous,
                None
            )
            .await
            .is_err()
    );

    oci()
        .push(&reference, &layers, config, &bob, None)
        .await
        .expect("bob pushes");
    let image = oci()
        .pull(&reference, &carol, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("carol pulls");
    assert_eq!(image.layers[0].data.as_ref(), b"oci-client layer");
    // dave has no rule at all: 403 on pull.
    let dave = RegistryAuth::Basic("dave".into(), pw("dave").into());
    let err = oci()
        .pull(&reference, &dave, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .err()
        .expect("user without rights pulled");
    assert!(denied(&err), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_only_user_gets_403_on_writes_and_catalog_lists_only_pullable_repositories() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    let alice = basic_of("alice");
    for repo in ["team/app", "team/db", "other/secret"] {
        push_image(&s.base, repo, "v1", &alice).await;
    }

    let carol = basic_of("carol");
    let r = push_blob(&s.base, "team/app", b"carol's blob", &carol).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    let r = http()
        .delete(s.url("/v2/team/app/manifests/v1"))
        .header("Authorization", basic_of("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "bob has no delete right");
    let r = http()
        .get(s.url("/v2/other/secret/manifests/v1"))
        .header("Authorization", &carol)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    let r = http()
        .get(s.url("/v2/team/app/tags/list"))
        .header("Authorization", &carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    assert_eq!(catalog(&s.base, &carol).await, ["team/app", "team/db"]);
    assert_eq!(
        catalog(&s.base, &basic_of("bob")).await,
        ["team/app", "team/db"]
    );
    assert!(catalog(&s.base, &basic_of("dave")).await.is_empty());
    assert_eq!(
        catalog(&s.base, &alice).await,
        ["other/secret", "team/app", "team/db"]
    );
    // Pagination runs over the filtered list.
    let r = http()
        .get(s.url("/v2/_catalog?n=1"))
        .header("Authorization", &carol)
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["team/app"]));
    assert!(link.contains("last=team%2Fapp"), "{link}");
    let r = http()
        .get(s.url("/v2/_catalog?n=1&last=team%2Fapp"))
        .header("Authorization", &carol)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["team/db"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_get_401_with_a_basic_challenge_while_health_stays_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    for (path, auth) in [
        ("/v2/", None),
        ("/v2/", Some(basic("alice", "wrong"))),
        ("/v2/", Some(basic("nobody", "x"))),
        ("/v2/", Some("Bearer abc".to_string())),
        ("/v2/team/app/tags/list", None),
        ("/v2/_catalog", None),
    ] {
        let mut req = http().get(s.url(path));
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} {auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"kura\"");
        assert_eq!(error_code(r).await, "UNAUTHORIZED");
    }
    let r = http()
        .get(s.url("/v2/"))
        .header("Authorization", basic_of("dave"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "/v2/ needs a login, not a right");
    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = http().get(s.url(open)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_refused_with_429_even_with_the_right_password() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "max_failed_logins = 5\nlockout = \"1m\"");
    let s = AuthServer::start(&cfg, None).await;
    let get = |auth: String| {
        let url = s.url("/v2/");
        async move {
            http()
                .get(url)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(basic_of("alice")).await.status(), 200);
    for i in 0..5 {
        assert_eq!(
            get(basic("alice", &format!("guess{i}"))).await.status(),
            401
        );
    }
    let r = get(basic_of("alice")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    // Open endpoints are not affected.
    assert_eq!(
        http().get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_are_verified_at_most_max_failed_logins_times() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "max_failed_logins = 5\nlockout = \"1m\"");
    let s = AuthServer::start(&cfg, None).await;
    let client = http();
    let tries = (0..40).map(|i| {
        let req = client
            .get(s.url("/v2/"))
            .header("Authorization", basic("alice", &format!("guess{i}")));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let verified = statuses.iter().filter(|&&c| c == 401).count();
    let refused = statuses.iter().filter(|&&c| c == 429).count();
    assert_eq!(verified + refused, 40, "{statuses:?}");
    assert!(
        verified <= 5,
        "{verified} wrong passwords were verified: {statuses:?}"
    );
    assert!(verified >= 1, "{statuses:?}");
    // The right password is refused too while locked out.
    let r = client
        .get(s.url("/v2/"))
        .header("Authorization", basic_of("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_right_passwords_from_one_client_are_not_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "max_failed_logins = 2\nlockout = \"1m\"");
    let s = AuthServer::start(&cfg, None).await;
    let client = http();
    // A cold credential cache: every request of the burst may need bcrypt.
    let tries = (0..20).map(|_| {
        let req = client
            .get(s.url("/v2/"))
            .header("Authorization", basic_of("bob"));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(tries).await;
    assert!(statuses.iter().all(|&c| c == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_admin_right() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    let post = |auth: Option<String>| {
        let url = s.url("/admin/gc?dry_run=true");
        async move {
            let mut r = http().post(url);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some(basic_of("bob"))).await, 403);
    assert_eq!(post(Some(basic_of("alice"))).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_needs_pull_on_the_source_and_falls_back_to_a_plain_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    let data = b"a blob to mount";
    let d = Digest::sha256_of(data);
    for repo in ["other/secret", "team/src"] {
        assert_eq!(
            push_blob(&s.base, repo, data, &basic_of("alice"))
                .await
                .status(),
            201
        );
    }
    let mount = |from: &str| {
        let url = s.url(&format!(
            "/v2/team/dst/blobs/uploads/?mount={d}&from={from}"
        ));
        async move {
            http()
                .post(url)
                .header("Authorization", basic_of("bob"))
                .send()
                .await
                .unwrap()
        }
    };
    // bob cannot pull other/secret: no mount, an upload session instead.
    let r = mount("other/secret").await;
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/blobs/uploads/")
    );
    let r = http()
        .head(s.url(&format!("/v2/team/dst/blobs/{d}")))
        .header("Authorization", basic_of("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the blob must not have been mounted");
    // From a repository bob may pull, the mount happens.
    let r = mount("team/src").await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pull_lets_anyone_pull_but_not_push() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "anonymous_pull = true");
    let s = AuthServer::start(&cfg, None).await;
    push_image(&s.base, "team/app", "v1", &basic_of("alice")).await;
    let r = http()
        .get(s.url("/v2/team/app/manifests/v1"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http().get(s.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = push_blob(&s.base, "team/app", b"anon", "").await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"kura\"");
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/app:v1", s.addr),
    ])
    .await;
    assert!(out.success, "anonymous skopeo pull: {}", out.stderr);
}

/// `kura gc` asks a secured server with an admin's credentials, and is refused without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_gc_uses_admin_credentials_against_a_secured_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_, auth_file) = auth_config(dir.path(), "");
    let data_dir = dir.path().join("data");
    let (child, base) = common::spawn_kura(
        &data_dir,
        &[
            "--auth-config",
            auth_file.to_str().unwrap(),
            "--gc-interval",
            "0s",
        ],
    );
    let _guard = auth_support::KillOnDrop(child);
    let root = data_dir.to_str().unwrap().to_string();
    let r = root.clone();
    let (ok, _, err) =
        tokio::task::spawn_blocking(move || common::kura_cmd(&["gc", "--root", &r, "--dry-run"]))
            .await
            .unwrap();
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    let creds = format!("alice:{}", pw("alice"));
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        common::kura_cmd(&["gc", "--root", &root, "--dry-run", "--creds", &creds])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("would remove"), "{out}");
    let _ = base;
}
