//! Authorization and the handlers act on one parse of the request: encoded query keys,
//! duplicate keys and empty values mean the same to both, and every route needs exactly the
//! action the documentation says (from outside, over HTTP).

mod auth_support;

use auth_support::{AuthServer, auth_config, basic_of, error_code, http, push_blob};
use kura::digest::Digest;

/// Starts a server with the test rules (alice all + admin, bob pull/push `team/*`, carol pull
/// `team/*`, dave nothing) and a blob `data` in `other/secret` and `team/src`.
async fn server_with_secret(data: &[u8]) -> (AuthServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    for repo in ["other/secret", "team/src"] {
        let r = push_blob(&s.base, repo, data, &basic_of("alice")).await;
        assert_eq!(r.status(), 201);
    }
    (s, tmp)
}

async fn post(s: &AuthServer, path: &str, user: &str) -> reqwest::Response {
    http()
        .post(s.url(path))
        .header("Authorization", basic_of(user))
        .send()
        .await
        .unwrap()
}

async fn blob_status(s: &AuthServer, repo: &str, d: &Digest, user: &str) -> u16 {
    http()
        .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
        .header("Authorization", basic_of(user))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_mount_keys_do_not_let_a_user_mount_a_repository_he_cannot_pull() {
    let data = b"the secret layer";
    let d = Digest::sha256_of(data);
    let (s, _tmp) = server_with_secret(data).await;
    let r = post(
        &s,
        &format!("/v2/team/b/blobs/uploads/?m%6Funt={d}&fr%6Fm=other/secret"),
        "bob",
    )
    .await;
    assert_eq!(r.status(), 202, "must be a plain upload, not a mount");
    assert_eq!(blob_status(&s, "team/b", &d, "bob").await, 404);
    // Fully encoded keys and values, too.
    let r = post(
        &s,
        &format!(
            "/v2/team/c/blobs/uploads/?%6D%6F%75%6E%74={}&%66rom=other%2Fsecret",
            d.to_string().replace(':', "%3A")
        ),
        "bob",
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(blob_status(&s, "team/c", &d, "bob").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_mount_keys_mount_from_a_repository_the_user_may_pull() {
    let data = b"a shared layer";
    let d = Digest::sha256_of(data);
    let (s, _tmp) = server_with_secret(data).await;
    let r = post(
        &s,
        &format!("/v2/team/b/blobs/uploads/?m%6Funt={d}&fr%6Fm=team%2Fsrc"),
        "bob",
    )
    .await;
    assert_eq!(r.status(), 201, "authorized and executed as the same mount");
    assert_eq!(blob_status(&s, "team/b", &d, "bob").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_query_keys_are_refused_with_400_before_anything_happens() {
    let data = b"a duplicated layer";
    let d = Digest::sha256_of(data);
    let (s, _tmp) = server_with_secret(data).await;
    let cases = [
        (
            format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/src&from=other/secret"),
            "NAME_INVALID",
        ),
        (
            format!("/v2/team/b/blobs/uploads/?mount={d}&from=other/secret&from=team/src"),
            "NAME_INVALID",
        ),
        (
            format!("/v2/team/b/blobs/uploads/?mount={d}&fr%6Fm=team/src&from=other/secret"),
            "NAME_INVALID",
        ),
        (
            format!("/v2/team/b/blobs/uploads/?mount={d}&m%6Funt={d}&from=team/src"),
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/team/b/blobs/uploads/?digest={d}&digest={d}"),
            "DIGEST_INVALID",
        ),
    ];
    for (path, code) in &cases {
        for user in ["bob", "alice"] {
            let r = post(&s, path, user).await;
            assert_eq!(r.status(), 400, "{user} {path}");
            assert_eq!(error_code(r).await, *code, "{user} {path}");
        }
    }
    assert_eq!(blob_status(&s, "team/b", &d, "alice").await, 404);
    let r = http()
        .get(s.url("/v2/_catalog?n=1&n=2"))
        .header("Authorization", basic_of("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_query_values_are_values_to_authorization_and_handler_alike() {
    let data = b"an empty-valued layer";
    let d = Digest::sha256_of(data);
    let (s, _tmp) = server_with_secret(data).await;
    // An empty mount digest is an invalid digest.
    let r = post(
        &s,
        "/v2/team/b/blobs/uploads/?mount=&from=team/src",
        "alice",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // An empty source is an invalid name for who may read everything...
    let r = post(
        &s,
        &format!("/v2/team/b/blobs/uploads/?mount={d}&from="),
        "alice",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "NAME_INVALID");
    // ...and no mount at all for who may not.
    let r = post(
        &s,
        &format!("/v2/team/b/blobs/uploads/?mount={d}&from="),
        "bob",
    )
    .await;
    assert_eq!(r.status(), 202);
    // `?mount` without `=` is the empty value.
    let r = post(&s, "/v2/team/b/blobs/uploads/?mount&from=team/src", "alice").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = post(&s, "/v2/team/b/blobs/uploads/?digest=", "bob").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_eq!(blob_status(&s, "team/b", &d, "alice").await, 404);
}

/// Who lacks and who holds each action on `team/app`: (denied user, allowed user).
fn users_for(action: &str) -> (&'static str, &'static str) {
    match action {
        "pull" => ("dave", "carol"),
        "push" => ("carol", "bob"),
        "delete" => ("bob", "alice"),
        "admin" => ("bob", "alice"),
        other => panic!("unknown action {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_method_needs_exactly_its_documented_action() {
    let data = b"a table layer";
    let d = Digest::sha256_of(data);
    let (s, _tmp) = server_with_secret(data).await;
    let m = "team/app/manifests/v1";
    let b = format!("team/app/blobs/{d}");
    let u = "team/app/blobs/uploads/0f2c8e14-0000-4000-8000-000000000000";
    let table: Vec<(&str, String, &str)> = vec![
        ("GET", format!("/v2/{m}"), "pull"),
        ("HEAD", format!("/v2/{m}"), "pull"),
        ("PUT", format!("/v2/{m}"), "push"),
        ("DELETE", format!("/v2/team/app/manifests/{d}"), "delete"),
        ("GET", format!("/v2/{b}"), "pull"),
        ("HEAD", format!("/v2/{b}"), "pull"),
        ("DELETE", format!("/v2/{b}"), "delete"),
        ("POST", "/v2/team/app/blobs/uploads/".into(), "push"),
        ("GET", format!("/v2/{u}"), "push"),
        ("PATCH", format!("/v2/{u}"), "push"),
        ("PUT", format!("/v2/{u}?digest={d}"), "push"),
        ("DELETE", format!("/v2/{u}"), "push"),
        ("GET", "/v2/team/app/tags/list".into(), "pull"),
        ("GET", format!("/v2/team/app/referrers/{d}"), "pull"),
        ("POST", "/admin/gc?dry_run=true".into(), "admin"),
        ("POST", "/admin/fsck".into(), "admin"),
        ("GET", "/admin/read-only".into(), "admin"),
    ];
    let send = |method: &str, path: &str, user: Option<&str>| {
        let mut r = http().request(method.parse().unwrap(), s.url(path));
        if let Some(u) = user {
            r = r.header("Authorization", basic_of(u));
        }
        async move { r.send().await.unwrap() }
    };
    for (method, path, action) in &table {
        let (denied, allowed) = users_for(action);
        let r = send(method, path, None).await;
        assert_eq!(r.status(), 401, "anonymous {method} {path}");
        let r = send(method, path, Some(denied)).await;
        assert_eq!(r.status(), 403, "{denied} lacks {action}: {method} {path}");
        if *method != "HEAD" {
            assert_eq!(error_code(r).await, "DENIED", "{method} {path}");
        }
        let r = send(method, path, Some(allowed)).await;
        let st = r.status().as_u16();
        assert!(
            st != 401 && st != 403,
            "{allowed} holds {action} but got {st}: {method} {path}"
        );
    }
    // Only a login: the base and the (filtered) catalog.
    for path in ["/v2/", "/v2/_catalog"] {
        assert_eq!(send("GET", path, None).await.status(), 401, "{path}");
        assert_eq!(
            send("GET", path, Some("dave")).await.status(),
            200,
            "{path}"
        );
    }
    // Open endpoints.
    for path in ["/healthz", "/metrics"] {
        assert_eq!(send("GET", path, None).await.status(), 200, "{path}");
    }
}
