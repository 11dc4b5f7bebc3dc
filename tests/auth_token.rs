//! Bearer tokens (the Docker token flow): the challenge, kura's token endpoint and the access
//! it grants, skopeo and oci-client pushing and pulling through it, refused tokens (expired,
//! wrongly signed, wrong audience, wrong scope), external issuers and anonymous tokens.

mod auth_support;
mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_support::{
    AuthServer, auth_config, basic, basic_of, claims, error_code, http, oci_layout, push_blob,
    push_image, pw, skopeo,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value, json};

const SERVICE: &str = "kura-test";
const ISSUER: &str = "kura-test-issuer";
const EXTERNAL: &str = "external-auth";

/// Key files: kura's signing key and an external issuer's key pair.
struct Keys {
    kura_key: String,
    external_key: String,
}

fn write_keys(dir: &Path) -> Keys {
    let kura = rcgen::KeyPair::generate().unwrap();
    let ext = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("kura.key"), kura.serialize_pem()).unwrap();
    std::fs::write(dir.join("external.pub"), ext.public_key_pem()).unwrap();
    Keys {
        kura_key: kura.serialize_pem(),
        external_key: ext.serialize_pem(),
    }
}

/// The `[token]` section: kura's key from a file, one trusted external issuer.
fn token_section(dir: &Path, extra: &str) -> String {
    format!(
        "{extra}\n[token]\nservice = {SERVICE:?}\nissuer = {ISSUER:?}\nlifetime = \"2m\"\n\
         signing_key = {:?}\n[[token.trusted]]\nissuer = {EXTERNAL:?}\npublic_key = {:?}\n",
        dir.join("kura.key").display().to_string(),
        dir.join("external.pub").display().to_string(),
    )
}

async fn server(extra: &str) -> (AuthServer, Keys, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let keys = write_keys(tmp.path());
    let (cfg, _) = auth_config(tmp.path(), &token_section(tmp.path(), extra));
    (AuthServer::start(&cfg, None).await, keys, tmp)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs `claims` with the PEM private key `key` (ES256).
fn sign(key: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Claims as kura would issue them to `sub`, granting `access`.
fn claims_for(sub: &str, access: Value) -> Value {
    json!({
        "iss": ISSUER, "sub": sub, "aud": SERVICE,
        "iat": now(), "nbf": now(), "exp": now() + 120, "jti": "t",
        "access": access,
    })
}

/// Fetches a token from kura's endpoint with `auth` (none when empty) for `scopes`.
async fn fetch_token(s: &AuthServer, auth: &str, scopes: &[&str]) -> reqwest::Response {
    let mut q = vec![("service", SERVICE.to_string())];
    q.extend(scopes.iter().map(|s| ("scope", s.to_string())));
    let mut req = http().get(s.url("/auth/token")).query(&q);
    if !auth.is_empty() {
        req = req.header("Authorization", auth);
    }
    req.send().await.unwrap()
}

async fn token(s: &AuthServer, auth: &str, scopes: &[&str]) -> String {
    let r = fetch_token(s, auth, scopes).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token"], v["access_token"]);
    v["token"].as_str().unwrap().to_string()
}

async fn get_with(s: &AuthServer, path: &str, auth: &str) -> reqwest::Response {
    let mut req = http()
        .get(s.url(path))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json");
    if !auth.is_empty() {
        req = req.header("Authorization", auth);
    }
    req.send().await.unwrap()
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_names_realm_service_and_scope_and_tokens_grant_the_intersection_with_the_rules()
{
    let (s, _, _tmp) = server("").await;
    let realm = format!("realm=\"http://{}/auth/token\"", s.addr);

    let r = get_with(&s, "/v2/", "").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        www_authenticate(&r),
        format!("Bearer {realm},service=\"{SERVICE}\"")
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = get_with(&s, "/v2/team/app/manifests/v1", "").await;
    assert_eq!(
        www_authenticate(&r),
        format!("Bearer {realm},service=\"{SERVICE}\",scope=\"repository:team/app:pull\"")
    );
    let r = push_blob(&s.base, "team/app", b"x", "").await;
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(&r).ends_with(",scope=\"repository:team/app:pull,push\""));
    let r = get_with(&s, "/v2/_catalog", "").await;
    assert!(www_authenticate(&r).ends_with(",scope=\"registry:catalog:*\""));

    // carol asks for push too, and for a repository she has no rule for: she gets pull on
    // team/app and the catalog, nothing more.
    let r = fetch_token(
        &s,
        &basic_of("carol"),
        &[
            "repository:team/app:pull,push",
            "repository:other/x:pull",
            "registry:catalog:*",
            "registry:admin:*",
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 120);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
    let c = claims(v["token"].as_str().unwrap());
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["sub"], "carol");
    assert_eq!(c["aud"], SERVICE);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 120);
    assert_eq!(
        c["access"],
        json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    // Scopes may also come space-separated in one parameter.
    let t = token(
        &s,
        &basic_of("bob"),
        &["repository:team/app:pull,push repository:team/db:pull"],
    )
    .await;
    assert_eq!(claims(&t)["access"].as_array().unwrap().len(), 2);

    // The endpoint refuses bad credentials, missing ones (no anonymous pull here), Bearer
    // credentials and another service.
    for auth in [basic("carol", "wrong"), String::new(), "Bearer x".into()] {
        let r = fetch_token(&s, &auth, &["repository:team/app:pull"]).await;
        assert_eq!(r.status(), 401, "{auth}");
        assert_eq!(www_authenticate(&r), "Basic realm=\"kura\"");
    }
    let r = http()
        .get(s.url("/auth/token?service=elsewhere&scope=repository:team/app:pull"))
        .header("Authorization", basic_of("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_only_token_gets_403_on_push_and_the_catalog_shows_only_pullable_repositories() {
    let (s, _, _tmp) = server("").await;
    for repo in ["team/app", "other/secret"] {
        push_image(&s.base, repo, "v1", &basic_of("alice")).await;
    }
    let carol = token(&s, &basic_of("carol"), &["repository:team/app:pull,push"]).await;
    let bearer = format!("Bearer {carol}");
    assert_eq!(
        get_with(&s, "/v2/team/app/manifests/v1", &bearer)
            .await
            .status(),
        200
    );
    let r = push_blob(&s.base, "team/app", b"carol", &bearer).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    // A repository she has no right to: 403 as well (her token was issued by kura).
    let r = get_with(&s, "/v2/other/secret/manifests/v1", &bearer).await;
    assert_eq!(r.status(), 403);

    // Without the catalog scope the token is insufficient (the client should ask again).
    let r = get_with(&s, "/v2/_catalog", &bearer).await;
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(&r).contains("error=\"insufficient_scope\""));
    let t = token(&s, &basic_of("carol"), &["registry:catalog:*"]).await;
    let r = get_with(&s, "/v2/_catalog", &format!("Bearer {t}")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["team/app"]));
    let t = token(&s, &basic_of("alice"), &["registry:catalog:*"]).await;
    let v: Value = get_with(&s, "/v2/_catalog", &format!("Bearer {t}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!(["other/secret", "team/app"]));

    // Admin endpoints: alice's token carries the admin scope, bob's cannot.
    let t = token(&s, &basic_of("alice"), &["registry:admin:*"]).await;
    let r = http()
        .post(s.url("/admin/gc?dry_run=true"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = token(&s, &basic_of("bob"), &["registry:admin:*"]).await;
    assert!(claims(&t)["access"].as_array().unwrap().is_empty());
    let r = http()
        .post(s.url("/admin/gc?dry_run=true"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_wrongly_signed_wrong_audience_and_wrong_scope_tokens_are_refused() {
    let (s, keys, _tmp) = server("").await;
    push_image(&s.base, "team/app", "v1", &basic_of("alice")).await;
    let pull = json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]);
    let path = "/v2/team/app/manifests/v1";
    let status = |token: String| {
        let s = &s;
        async move {
            let r = get_with(s, path, &format!("Bearer {token}")).await;
            let st = r.status().as_u16();
            let ch = r
                .headers()
                .get("www-authenticate")
                .map(|h| h.to_str().unwrap().to_string());
            (st, ch)
        }
    };

    // The control: a well-formed token signed with kura's key is accepted.
    let good = sign(&keys.kura_key, &claims_for("alice", pull.clone()));
    assert_eq!(status(good).await.0, 200);

    let mut expired = claims_for("alice", pull.clone());
    expired["exp"] = json!(now() - 600);
    expired["nbf"] = json!(now() - 900);
    expired["iat"] = json!(now() - 900);
    let mut wrong_aud = claims_for("alice", pull.clone());
    wrong_aud["aud"] = json!("another-registry");
    let mut wrong_iss = claims_for("alice", pull.clone());
    wrong_iss["iss"] = json!("someone");
    let mut not_yet = claims_for("alice", pull.clone());
    not_yet["nbf"] = json!(now() + 600);
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let refused = [
        ("expired", sign(&keys.kura_key, &expired)),
        ("wrong audience", sign(&keys.kura_key, &wrong_aud)),
        ("wrong issuer", sign(&keys.kura_key, &wrong_iss)),
        ("not yet valid", sign(&keys.kura_key, &not_yet)),
        (
            "wrongly signed",
            sign(&other_key, &claims_for("alice", pull.clone())),
        ),
        ("garbage", "a.b.c".to_string()),
    ];
    for (what, t) in refused {
        let (st, ch) = status(t).await;
        assert_eq!(st, 401, "{what}");
        let ch = ch.unwrap_or_default();
        assert!(ch.starts_with("Bearer realm="), "{what}: {ch}");
        assert!(ch.contains("error=\"invalid_token\""), "{what}: {ch}");
    }
    // A tampered payload breaks the signature.
    let good = sign(&keys.kura_key, &claims_for("carol", pull.clone()));
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let forged = claims_for(
        "carol",
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]),
    );
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged).unwrap());
    let r = push_blob(
        &s.base,
        "team/app",
        b"forged",
        &format!("Bearer {}", parts.join(".")),
    )
    .await;
    assert_eq!(r.status(), 401);

    // Wrong scope: a valid token for another repository. alice could get one for team/app,
    // so the answer is a 401 asking for the right scope.
    let other = json!([{"type": "repository", "name": "team/other", "actions": ["pull"]}]);
    let (st, ch) = status(sign(&keys.kura_key, &claims_for("alice", other.clone()))).await;
    assert_eq!(st, 401);
    let ch = ch.unwrap();
    assert!(ch.contains("scope=\"repository:team/app:pull\""), "{ch}");
    assert!(ch.contains("error=\"insufficient_scope\""), "{ch}");
    // The right repository but only pull, used to push: refused.
    let t = sign(&keys.kura_key, &claims_for("alice", pull.clone()));
    let r = push_blob(
        &s.base,
        "team/app",
        b"pushed with a pull token",
        &format!("Bearer {t}"),
    )
    .await;
    assert_eq!(r.status(), 401);
    // dave has no rights at all: a token for another scope is a plain denial.
    let (st, _) = status(sign(&keys.kura_key, &claims_for("dave", other))).await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_trusted_external_issuer_are_accepted_for_what_they_grant() {
    let (s, keys, _tmp) = server("").await;
    push_image(&s.base, "team/app", "v1", &basic_of("alice")).await;
    let mut c = claims_for(
        "someone-from-elsewhere",
        json!([
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]),
    );
    c["iss"] = json!(EXTERNAL);
    let t = sign(&keys.external_key, &c);
    let bearer = format!("Bearer {t}");
    assert_eq!(
        get_with(&s, "/v2/team/app/manifests/v1", &bearer)
            .await
            .status(),
        200
    );
    assert_eq!(
        push_blob(&s.base, "team/app", b"external push", &bearer)
            .await
            .status(),
        201
    );
    let v: Value = get_with(&s, "/v2/_catalog", &bearer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!(["team/app"]));
    // Not granted by the external token: refused, asking for the scope.
    let r = push_blob(&s.base, "team/db", b"x", &bearer).await;
    assert_eq!(r.status(), 401);
    // The external key cannot sign tokens in kura's own name.
    c["iss"] = json!(ISSUER);
    let r = get_with(
        &s,
        "/v2/team/app/manifests/v1",
        &format!("Bearer {}", sign(&keys.external_key, &c)),
    )
    .await;
    assert_eq!(r.status(), 401);
}

fn oci() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_and_pulls_through_the_token_flow() {
    let (s, _, _tmp) = server("").await;
    let reference: Reference = format!("{}/team/tokens:v1", s.addr).parse().unwrap();
    let layers = vec![ImageLayer::new(
        b"bearer layer".to_vec(),
        IMAGE_LAYER_MEDIA_TYPE.to_string(),
        None,
    )];
    let config = Config::new(
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let carol = RegistryAuth::Basic("carol".into(), pw("carol").into());
    let err = oci()
        .push(&reference, &layers, config.clone(), &carol, None)
        .await
        .err()
        .expect("pull-only user pushed");
    let e = format!("{err:?}");
    assert!(e.contains("DENIED") || e.contains("code: Denied"), "{e}");
    let wrong = RegistryAuth::Basic("bob".into(), "wrong".into());
    assert!(
        oci()
            .push(&reference, &layers, config.clone(), &wrong, None)
            .await
            .is_err()
    );

    let bob = RegistryAuth::Basic("bob".into(), pw("bob").into());
    oci()
        .push(&reference, &layers, config, &bob, None)
        .await
        .expect("bob pushes with a token");
    let image = oci()
        .pull(&reference, &carol, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("carol pulls with a token");
    assert_eq!(image.layers[0].data.as_ref(), b"bearer layer");
    let tags = oci()
        .list_tags(&reference, &carol, None, None)
        .await
        .expect("carol lists tags");
    assert_eq!(tags.tags, ["v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_through_the_token_flow_of_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    // No signing key configured: the binary generates one.
    let (_, auth_file) = auth_config(tmp.path(), "[token]\nlifetime = \"1m\"\n");
    let (child, url) = common::spawn_kura(
        &tmp.path().join("root"),
        &["--auth-config", auth_file.to_str().unwrap()],
    );
    let _kura = auth_support::KillOnDrop(child);
    let host = url.trim_start_matches("http://").to_string();
    let r = http().get(format!("{url}/v2/")).send().await.unwrap();
    assert!(www_authenticate(&r).starts_with("Bearer realm="));

    let layout = tmp.path().join("layout");
    let digest = oci_layout(&layout, "token flow");
    let src = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{host}/team/app:v1");
    let carol = format!("carol:{}", pw("carol"));
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
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("bob:{}", pw("bob")),
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
        kura::digest::Digest::sha256_of(out.stdout.as_bytes()).to_string(),
        digest
    );
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]).await;
    assert!(!out.success, "anonymous pull without anonymous_pull");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_tokens_pull_when_anonymous_pull_is_on_but_never_push() {
    let (s, _, _tmp) = server("anonymous_pull = true").await;
    push_image(&s.base, "team/app", "v1", &basic_of("alice")).await;
    let t = token(&s, "", &["repository:team/app:pull,push"]).await;
    let c = claims(&t);
    assert_eq!(c["sub"], "");
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
    );
    let bearer = format!("Bearer {t}");
    assert_eq!(
        get_with(&s, "/v2/team/app/manifests/v1", &bearer)
            .await
            .status(),
        200
    );
    let r = push_blob(&s.base, "team/app", b"anon", &bearer).await;
    assert_eq!(r.status(), 401, "anonymous callers are asked to log in");
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/app:v1", s.addr),
    ])
    .await;
    assert!(out.success, "anonymous skopeo pull: {}", out.stderr);
    // Basic credentials are accepted on every request in token mode too.
    let r = get_with(&s, "/v2/team/app/manifests/v1", &basic_of("carol")).await;
    assert_eq!(r.status(), 200);
}
