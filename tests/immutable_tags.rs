//! Immutable tags (`[[policies.immutable]]`): a matching tag is created once, then neither
//! moved nor deleted (nor removed with its manifest); re-pushing the same digest is accepted.
//! Enforced in the write transaction of the change, so concurrent pushes of one tag with two
//! digests end with exactly one winner; a live reload adding a rule applies at once.

mod common;
mod import_support;

use std::sync::Arc;

use common::{TestServer, client, error_code, image_manifest, push_blob, put_manifest};
use kura::digest::Digest;
use kura::names::{Reference, RepoName};
use kura::policy::{Policies, PoliciesConfig, immutable::ImmutableRule};
use serde_json::json;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn immutable(repos: &[&str], tags: &[&str]) -> Policies {
    Policies::compile(&PoliciesConfig {
        immutable: vec![ImmutableRule {
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }],
        ..PoliciesConfig::default()
    })
    .unwrap()
}

/// Pushes a config and a layer unique to `seed` into `repo`; returns a manifest naming them.
async fn manifest(s: &TestServer, repo: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"seed\":{seed:?}}}");
    let layer = format!("layer {seed}");
    let cd = push_blob(s, repo, config.as_bytes()).await;
    let ld = push_blob(s, repo, layer.as_bytes()).await;
    image_manifest(&(cd, config.len()), &[(ld, layer.len())], json!({}))
}

async fn delete(s: &TestServer, repo: &str, reference: &str) -> reqwest::Response {
    client()
        .delete(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .send()
        .await
        .unwrap()
}

async fn tag_digest(s: &TestServer, repo: &str, tag: &str) -> Option<String> {
    let r = client()
        .head(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Accept", OCI)
        .send()
        .await
        .unwrap();
    (r.status() == 200).then(|| {
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_tag_cannot_move_but_the_same_digest_can_be_pushed_again() {
    let s = TestServer::start().await;
    s.registry.set_policies(immutable(&["prod/*"], &["v*"]));
    let (a, b) = (
        manifest(&s, "prod/app", "a").await,
        manifest(&s, "prod/app", "b").await,
    );
    assert_eq!(
        put_manifest(&s, "prod/app", "v1.0", OCI, &a).await.status(),
        201
    );
    // A CI retry of the same push.
    assert_eq!(
        put_manifest(&s, "prod/app", "v1.0", OCI, &a).await.status(),
        201
    );
    let r = put_manifest(&s, "prod/app", "v1.0", OCI, &b).await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("tag v1.0 of prod/app is immutable") && msg.contains("v*"),
        "{msg}"
    );
    assert_eq!(
        tag_digest(&s, "prod/app", "v1.0").await.unwrap(),
        Digest::sha256_of(&a).to_string()
    );
    // Tags outside the patterns, and repositories outside them, move freely.
    assert_eq!(
        put_manifest(&s, "prod/app", "latest", OCI, &a)
            .await
            .status(),
        201
    );
    assert_eq!(
        put_manifest(&s, "prod/app", "latest", OCI, &b)
            .await
            .status(),
        201
    );
    let (c, d) = (
        manifest(&s, "prod/team/app", "c").await,
        manifest(&s, "prod/team/app", "d").await,
    );
    assert_eq!(
        put_manifest(&s, "prod/team/app", "v1", OCI, &c)
            .await
            .status(),
        201
    );
    assert_eq!(
        put_manifest(&s, "prod/team/app", "v1", OCI, &d)
            .await
            .status(),
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_tag_and_the_manifest_it_names_cannot_be_deleted() {
    let s = TestServer::start().await;
    s.registry.set_policies(immutable(&["**"], &["release-*"]));
    let a = manifest(&s, "team/app", "a").await;
    let da = Digest::sha256_of(&a).to_string();
    assert_eq!(
        put_manifest(&s, "team/app", "release-1", OCI, &a)
            .await
            .status(),
        201
    );
    assert_eq!(
        put_manifest(&s, "team/app", "scratch", OCI, &a)
            .await
            .status(),
        201
    );

    let r = delete(&s, "team/app", "release-1").await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    let r = delete(&s, "team/app", &da).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    // The registry call the web UI's delete actions and the CLI make is refused the same way.
    let repo = RepoName::parse("team/app").unwrap();
    let e = s
        .registry
        .delete_manifest(&repo, &Reference::Digest(da.parse().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.code, kura::error::Code::Denied);
    assert_eq!(tag_digest(&s, "team/app", "release-1").await.unwrap(), da);
    assert_eq!(tag_digest(&s, "team/app", "scratch").await.unwrap(), da);
    // A mutable tag on it still goes.
    assert_eq!(delete(&s, "team/app", "scratch").await.status(), 202);
    assert!(tag_digest(&s, "team/app", "scratch").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_through_the_registry_as_replication_pulls_make_them_are_refused_too() {
    let s = TestServer::start().await;
    s.registry
        .set_policies(immutable(&["mirror-of/**"], &["v*"]));
    let (a, b) = (
        manifest(&s, "mirror-of/x", "a").await,
        manifest(&s, "mirror-of/x", "b").await,
    );
    let repo = RepoName::parse("mirror-of/x").unwrap();
    let tag = Reference::Tag("v2".into());
    s.registry
        .put_manifest(&repo, &tag, Some(OCI), a.clone().into())
        .await
        .unwrap();
    let e = s
        .registry
        .put_manifest(&repo, &tag, Some(OCI), b.into())
        .await
        .unwrap_err();
    assert_eq!(e.code, kura::error::Code::Denied);
    assert_eq!(
        tag_digest(&s, "mirror-of/x", "v2").await.unwrap(),
        Digest::sha256_of(&a).to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_immutable_tag_with_two_digests_have_exactly_one_winner() {
    let s = Arc::new(TestServer::start().await);
    s.registry.set_policies(immutable(&["race/*"], &["v*"]));
    let (a, b) = (
        manifest(&s, "race/app", "a").await,
        manifest(&s, "race/app", "b").await,
    );
    for i in 0..25 {
        let tag = format!("v{i}");
        let push = |body: Vec<u8>| {
            let (s, tag) = (s.clone(), tag.clone());
            tokio::spawn(async move {
                let r = put_manifest(&s, "race/app", &tag, OCI, &body).await;
                (r.status().as_u16(), body)
            })
        };
        let (ra, rb) = (push(a.clone()), push(b.clone()));
        let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(statuses, [201, 403], "round {i}");
        let winner = if ra.0 == 201 { &ra.1 } else { &rb.1 };
        assert_eq!(
            tag_digest(&s, "race/app", &tag).await.unwrap(),
            Digest::sha256_of(winner).to_string(),
            "round {i}: the tag names the winner's push"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reload_adding_an_immutable_rule_applies_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("kura.toml");
    std::fs::write(&file, "").unwrap();
    let cfg = kura::config::Config::load(Some(&file), json!({})).unwrap();
    let reloader = Arc::new(kura::ops::reload::Reloader::new(
        kura::ops::reload::Source {
            config: Some(file.clone()),
            auth_config: None,
            overrides: json!({}),
        },
        cfg,
        None,
    ));
    let opts = kura::server::ServerOptions {
        reloader: Some(reloader.clone()),
        ..Default::default()
    };
    let s = TestServer::start_with_options(None, opts).await;
    reloader.set_registry(s.registry.clone());
    let (a, b, c) = (
        manifest(&s, "prod/app", "a").await,
        manifest(&s, "prod/app", "b").await,
        manifest(&s, "prod/app", "c").await,
    );
    assert_eq!(
        put_manifest(&s, "prod/app", "v1", OCI, &a).await.status(),
        201
    );
    assert_eq!(
        put_manifest(&s, "prod/app", "v1", OCI, &b).await.status(),
        201
    );

    std::fs::write(
        &file,
        "[[policies.immutable]]\nrepositories = [\"prod/**\"]\ntags = [\"v*\"]\n",
    )
    .unwrap();
    let r = client().post(s.url("/admin/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert!(
        report["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "policies"),
        "{report}"
    );
    let r = put_manifest(&s, "prod/app", "v1", OCI, &c).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    assert_eq!(delete(&s, "prod/app", "v1").await.status(), 403);
    assert_eq!(
        tag_digest(&s, "prod/app", "v1").await.unwrap(),
        Digest::sha256_of(&b).to_string()
    );
}

#[test]
fn an_import_cannot_move_an_immutable_tag_of_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = import_support::DistTree::new(&tmp.path().join("dist"));
    let root = tmp.path().join("root");
    let config = tmp.path().join("kura.toml");
    std::fs::write(
        &config,
        format!(
            "root = {:?}\n\n[[policies.immutable]]\ntags = [\"v*\"]\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (first, _, _) = tree.image("app", "one");
    tree.tag("app", "v1", &first);
    let (ok, report, err) = import_support::import(&tree.root, &["--config", cfg]);
    assert!(ok, "{err}");
    assert_eq!(report["tags_new"], 1, "{report}");
    // The source's v1 moves; importing it again may not move the destination's.
    let (second, _, _) = tree.image("app", "two");
    tree.tag("app", "v1", &second);
    let out = import_support::import_cmd(&tree.root, &["--config", cfg])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tag v1 of app is immutable"), "{stderr}");
    let registry = kura::registry::Registry::open(&root).unwrap();
    let v1 = registry
        .meta()
        .read(|t| kura::meta::tags::get(t, "app", "v1"))
        .unwrap();
    assert_eq!(v1, Some(first.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_uis_delete_action_is_refused_for_an_immutable_tag() {
    let s = TestServer::start().await;
    s.registry.set_policies(immutable(&["**"], &["v*"]));
    let a = manifest(&s, "app", "a").await;
    assert_eq!(put_manifest(&s, "app", "v1", OCI, &a).await.status(), 201);
    // The confirmation page starts an anonymous session and carries its CSRF token.
    let page = client()
        .get(s.url("/ui/delete-tag?name=app&tag=v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let html = page.text().await.unwrap();
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
    let csrf = re.captures(&html).expect("a CSRF field")[1].to_string();
    let r = client()
        .post(s.url("/ui/delete-tag"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&name=app&tag=v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("tag v1 of app is immutable"), "{body}");
    assert!(tag_digest(&s, "app", "v1").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_cache_follows_its_upstream_whatever_the_immutable_rules_say() {
    let upstream = TestServer::start().await;
    let cfg = kura::mirror::MirrorConfig {
        name: "up".into(),
        prefix: "up/".into(),
        upstream: upstream.base.clone(),
        // Every pull by tag revalidates it upstream.
        tag_ttl: std::time::Duration::ZERO,
        ..kura::mirror::MirrorConfig::default()
    };
    let mirrors = Arc::new(kura::mirror::Mirrors::new(&[cfg]).unwrap());
    let mirror = TestServer::start_with_options(
        None,
        kura::server::ServerOptions {
            mirrors: Some(mirrors),
            ..Default::default()
        },
    )
    .await;
    mirror.registry.set_policies(immutable(&["**"], &["v*"]));
    let (a, b) = (
        manifest(&upstream, "app", "a").await,
        manifest(&upstream, "app", "b").await,
    );
    assert_eq!(
        put_manifest(&upstream, "app", "v1", OCI, &a).await.status(),
        201
    );
    let da = Digest::sha256_of(&a).to_string();
    assert_eq!(tag_digest(&mirror, "up/app", "v1").await.unwrap(), da);
    // Upstream moves the tag: the cache follows.
    assert_eq!(
        put_manifest(&upstream, "app", "v1", OCI, &b).await.status(),
        201
    );
    let db = Digest::sha256_of(&b).to_string();
    assert_eq!(tag_digest(&mirror, "up/app", "v1").await.unwrap(), db);
    // Upstream deletes it: so does the cache.
    assert_eq!(delete(&upstream, "app", "v1").await.status(), 202);
    assert!(tag_digest(&mirror, "up/app", "v1").await.is_none());
    let left = mirror
        .registry
        .meta()
        .read(|t| kura::meta::tags::get(t, "up/app", "v1"))
        .unwrap();
    assert_eq!(left, None);
    // Clients still cannot write there.
    assert_eq!(delete(&mirror, "up/app", &db).await.status(), 403);
}
