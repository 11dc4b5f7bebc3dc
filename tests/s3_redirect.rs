//! `307` redirects of blob GETs to presigned URLs of the gateway (Ceph RGW; tests/common/s3.rs),
//! with and without authentication, and kura's own client pulling through them.

mod auth_support;
mod client_support;
mod common;

use common::s3::{BUCKET, data, gateway, s3_config};
use common::s3_ops::*;
use common::{TestServer, client};
use kura::config::StorageConfig;
use kura::digest::Digest;

// ---------------------------------------------------------------------------------------
// Redirects to presigned URLs
// ---------------------------------------------------------------------------------------

/// A bucket config with `[storage] redirect = true` and `redirect_expiry = "2m"`.
fn redirecting(test: &str) -> StorageConfig {
    StorageConfig {
        redirect: true,
        redirect_expiry: std::time::Duration::from_secs(120),
        ..s3_config(test)
    }
}

/// A kura server on `storage` with htpasswd authentication and the test access rules.
struct AuthS3Server {
    base: String,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl AuthS3Server {
    async fn start(storage: &StorageConfig) -> AuthS3Server {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = auth_support::auth_config(dir.path(), "");
        let registry =
            kura::registry::Registry::open_with(&dir.path().join("root"), storage).unwrap();
        let opts = kura::server::ServerOptions {
            workers: Some(2),
            auth: kura::auth::Auth::from_config(&auth).unwrap(),
            ..kura::server::ServerOptions::default()
        };
        let (server, addr) = kura::server::bind_with(registry, "127.0.0.1:0", &opts).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        AuthS3Server {
            base: format!("http://{addr}"),
            handle,
            _dir: dir,
        }
    }
}

impl Drop for AuthS3Server {
    fn drop(&mut self) {
        std::mem::drop(self.handle.stop(false));
    }
}

/// Asserts `r` is a `307` to a presigned URL of blob `d` on the gateway; returns the URL.
fn presigned_location(r: &reqwest::Response, prefix: &str, d: &Digest) -> String {
    assert_eq!(r.status(), 307, "{:?}", r.headers());
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let object = format!(
        "{}/{BUCKET}/{prefix}/blobs/sha256/{}?",
        gateway().endpoint.trim_end_matches('/'),
        d.hex()
    );
    assert!(loc.starts_with(&object), "{loc} is not {object}...");
    assert!(loc.contains("X-Amz-Signature="), "{loc} is not presigned");
    assert!(
        loc.contains("X-Amz-Expires=120&"),
        "{loc}: not the configured expiry"
    );
    loc
}

/// Fetches `url` with a fresh client and no credentials; the body of a 200.
async fn fetch_plain(url: &str) -> Vec<u8> {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_sends_blob_gets_to_a_presigned_gateway_url_and_answers_heads_itself() {
    let cfg = redirecting("redirect");
    let s = TestServer::start_on(&cfg).await;
    let big = data(5 * MIB + 11, 50);
    let d = common::push_blob(&s, "team/app", &big).await;
    let small = common::push_blob(&s, "team/app", b"small").await;

    let r = client()
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    let loc = presigned_location(&r, &cfg.prefix, &d);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "a redirect has no body"
    );
    // A plain client with no credentials gets exactly the blob from the gateway, and ranges
    // of it (a resumed download).
    assert!(
        fetch_plain(&loc).await == big,
        "presigned URL served other bytes"
    );
    let r = reqwest::Client::new()
        .get(&loc)
        .header("Range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), big[5242870..5242890]);
    let r = client()
        .get(s.url(&format!("/v2/team/app/blobs/{small}")))
        .send()
        .await
        .unwrap();
    let loc = presigned_location(&r, &cfg.prefix, &small);
    assert_eq!(fetch_plain(&loc).await, b"small");

    // HEAD is kura's own answer.
    let r = client()
        .head(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        r.headers()["content-length"],
        big.len().to_string().as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());

    // No redirect for what the repository does not hold: the link check comes first.
    for url in [
        format!("/v2/team/other/blobs/{d}"),
        format!("/v2/team/app/blobs/{}", Digest::sha256_of(b"never pushed")),
    ] {
        let r = client().get(s.url(&url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{url}");
        assert!(r.headers().get("location").is_none(), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redirect_blob_gets_are_served_by_kura() {
    let cfg = s3_config("no-redirect");
    assert!(!cfg.redirect, "redirects are off by default");
    let s = TestServer::start_on(&cfg).await;
    let big = data(5 * MIB + 11, 51);
    let d = common::push_blob(&s, "team/app", &big).await;
    let r = client()
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert!(r.bytes().await.unwrap() == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_follow_authorization_and_carry_no_kura_credentials() {
    use auth_support::{basic_of, pw};
    let cfg = redirecting("redirect-auth");
    let s = AuthS3Server::start(&cfg).await;
    let layer = data(MIB + 5, 52);
    let r = auth_support::push_blob(&s.base, "team/app", &layer, &basic_of("bob")).await;
    assert_eq!(r.status(), 201);
    let d = Digest::sha256_of(&layer);
    let url = format!("{}/v2/team/app/blobs/{d}", s.base);

    // Anonymous: 401 with a challenge, and no URL of the object.
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none(), "{:?}", r.headers());
    assert!(r.headers().get("www-authenticate").is_some());
    // A user with no rule for the repository: 403, no URL either.
    let r = client()
        .get(&url)
        .header("Authorization", basic_of("dave"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none(), "{:?}", r.headers());

    // A puller: a presigned URL that names none of the caller's credentials.
    for user in ["carol", "bob"] {
        let auth = basic_of(user);
        let r = client()
            .get(&url)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        let loc = presigned_location(&r, &cfg.prefix, &d);
        let token = auth.trim_start_matches("Basic ");
        for secret in [user, pw(user), token] {
            assert!(!loc.contains(secret), "{loc} carries {secret:?}");
        }
        assert!(fetch_plain(&loc).await == layer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_client_pulls_an_image_through_redirects_with_authentication() {
    use client_support::{Client, p, reachable, read_blob, single_image};
    let cfg = redirecting("redirect-client");
    let s = AuthS3Server::start(&cfg).await;
    let host = client_support::host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let image = format!("{host}/team/app:v1");
    let c = Client::new();
    c.ok(&["login", &host, "-u", "bob", "-p", auth_support::pw("bob")])
        .await;
    c.ok(&["push", p(&src.dir), &image]).await;

    // Every blob of the image is answered with a redirect.
    let blobs = reachable(&src.dir, digest);
    assert_eq!(blobs.len(), 4);
    let manifest: serde_json::Value = serde_json::from_slice(&read_blob(&src.dir, digest)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    for l in layers.iter().chain([&manifest["config"]]) {
        let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
        let r = client()
            .get(format!("{}/v2/team/app/blobs/{d}", s.base))
            .header("Authorization", auth_support::basic_of("bob"))
            .send()
            .await
            .unwrap();
        presigned_location(&r, &cfg.prefix, &d);
    }

    let dest = tmp.path().join("pulled");
    let out = c.ok(&["pull", "--json", &image, p(&dest)]).await;
    assert_eq!(out.events_of("done")[0]["digest"], digest);
    assert_eq!(reachable(&dest, digest), blobs);
    for b in &blobs {
        assert!(
            read_blob(&dest, b) == read_blob(&src.dir, b),
            "{b} pulled with other bytes"
        );
    }
}

// ---------------------------------------------------------------------------------------
