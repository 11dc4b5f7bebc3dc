//! The event outbox, without HTTP: a write made through a `Registry::with_event` handle queues
//! its webhook event in its own metadata transaction, so once the write returns the event is in
//! the `notifications` table; a write that fails queues nothing.

use bytes::Bytes;
use kura::config::EndpointConfig;
use kura::digest::Digest;
use kura::events::{EventContext, RequestInfo};
use kura::meta::notifications;
use kura::names::{Reference, RepoName};
use kura::registry::{Outbox, Registry};
use serde_json::{Value, json};

fn endpoint(name: &str, actions: &[&str], repositories: &[&str]) -> EndpointConfig {
    EndpointConfig {
        name: name.into(),
        url: "http://127.0.0.1:9/unused".into(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
        repositories: repositories.iter().map(|s| s.to_string()).collect(),
        ..EndpointConfig::default()
    }
}

fn ctx() -> Option<EventContext> {
    Some(EventContext {
        request: RequestInfo {
            id: "req-1".into(),
            method: "PUT".into(),
            ..RequestInfo::default()
        },
        actor: Some("alice".into()),
        base_url: "http://registry.test".into(),
    })
}

/// Every queued event of `endpoint`, oldest first.
fn queued(reg: &Registry, endpoint: &str) -> Vec<Value> {
    reg.meta()
        .read(|t| notifications::pending(t, endpoint, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|(_, e)| serde_json::from_slice(&e).unwrap())
        .collect()
}

fn body(data: &[u8]) -> futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>> {
    futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

fn manifest(config: &Digest, config_len: usize, layer: &Digest, layer_len: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_len}],
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_has_its_event_queued_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.install_outbox(Outbox::new(
        vec![
            endpoint("all", &[], &[]),
            endpoint("deletes", &["delete"], &[]),
            endpoint("team", &[], &["team/"]),
        ],
        "registry.test:5000".into(),
    ))
    .unwrap();
    let w = reg.with_event(ctx());
    let (app, other) = (
        RepoName::parse("team/app").unwrap(),
        RepoName::parse("other/app").unwrap(),
    );
    let (config, layer) = (b"{}".to_vec(), vec![7u8; 100_000]);
    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
    // A small blob in one request, a large one through a session.
    w.put_blob(&app, &cd, body(&config)).await.unwrap();
    let id = w.start_upload(&app, "ip:127.0.0.1").await.unwrap();
    w.finish_upload(&app, &id, &ld, None, body(&layer))
        .await
        .unwrap();
    assert!(w.mount(&other, &app, &ld).await.unwrap());
    let m = manifest(&cd, config.len(), &ld, layer.len());
    let md = Digest::sha256_of(&m);
    let tag = Reference::parse("v1").unwrap();
    w.put_manifest(&app, &tag, None, Bytes::from(m.clone()))
        .await
        .unwrap();
    w.delete_manifest(&app, &tag).await.unwrap();
    w.delete_blob(&other, &ld).await.unwrap();

    let all = queued(&reg, "all");
    let summary: Vec<(String, String, String)> = all
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"]["repository"].as_str().unwrap().to_string(),
                e["target"]["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let s = |a: &str, r: &str, d: &str| (a.to_string(), r.to_string(), d.to_string());
    assert_eq!(
        summary,
        vec![
            s("push", "team/app", &cd.to_string()),
            s("push", "team/app", &ld.to_string()),
            s("mount", "other/app", &ld.to_string()),
            s("push", "team/app", &md.to_string()),
            s("delete", "team/app", ""),
            s("delete", "other/app", &ld.to_string()),
        ]
    );
    let push = &all[3];
    assert_eq!(push["target"]["tag"], "v1");
    assert_eq!(push["target"]["size"], m.len());
    assert_eq!(
        push["target"]["url"],
        format!("http://registry.test/v2/team/app/manifests/{md}")
    );
    assert_eq!(all[4]["target"]["tag"], "v1");
    assert_eq!(all[2]["target"]["size"], layer.len());
    assert_eq!(push["actor"]["name"], "alice");
    assert_eq!(push["request"]["id"], "req-1");
    assert_eq!(push["source"]["addr"], "registry.test:5000");
    assert!(push["source"]["instanceID"].as_str().unwrap().len() > 10);
    // The endpoints' filters decide which rows each gets.
    let deletes: Vec<String> = queued(&reg, "deletes")
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deletes, ["delete", "delete"]);
    assert!(
        queued(&reg, "team")
            .iter()
            .all(|e| e["target"]["repository"] == "team/app")
    );
    assert_eq!(queued(&reg, "team").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_or_a_handle_without_request_queues_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.install_outbox(Outbox::new(vec![endpoint("all", &[], &[])], "x".into()))
        .unwrap();
    let app = RepoName::parse("app").unwrap();
    let w = reg.with_event(ctx());
    // A manifest naming blobs the repository lacks is refused: no event.
    let missing = Digest::sha256_of(b"nowhere");
    let m = manifest(&missing, 7, &missing, 7);
    let err = w
        .put_manifest(&app, &Reference::parse("v1").unwrap(), None, Bytes::from(m))
        .await;
    assert!(err.is_err());
    // A blob whose bytes do not match its digest is refused: no event.
    assert!(w.put_blob(&app, &missing, body(b"other")).await.is_err());
    // Deleting what is not there: no event.
    assert!(w.delete_blob(&app, &missing).await.is_err());
    assert!(queued(&reg, "all").is_empty());
    // Writes through a handle that carries no request (gc, fsck, the CLI) queue nothing.
    let d = Digest::sha256_of(b"plain");
    reg.put_blob(&app, &d, body(b"plain")).await.unwrap();
    assert!(queued(&reg, "all").is_empty());
    w.put_blob(&app, &d, body(b"plain")).await.unwrap();
    assert_eq!(queued(&reg, "all").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_queues_get_only_manifest_pushes_and_deletes_of_matching_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let outbox = Outbox::new(Vec::new(), "x".into())
        .with_replication(vec![("replication:dr".into(), vec!["team/*".into()])]);
    reg.install_outbox(outbox).unwrap();
    let w = reg.with_event(ctx());
    let tag = Reference::parse("v1").unwrap();
    let mut digests = Vec::new();
    for repo in ["other/app", "team/app"] {
        let repo = RepoName::parse(repo).unwrap();
        let (config, layer) = (b"{}".to_vec(), format!("layer of {repo}").into_bytes());
        let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
        w.put_blob(&repo, &cd, body(&config)).await.unwrap();
        w.put_blob(&repo, &ld, body(&layer)).await.unwrap();
        let m = manifest(&cd, config.len(), &ld, layer.len());
        digests.push(Digest::sha256_of(&m));
        w.put_manifest(&repo, &tag, None, Bytes::from(m))
            .await
            .unwrap();
        w.delete_manifest(&repo, &tag).await.unwrap();
        w.delete_blob(&repo, &ld).await.unwrap();
    }
    assert_eq!(
        queued(&reg, "replication:dr"),
        vec![
            json!({"action": "push", "repository": "team/app", "digest": digests[1].to_string(), "tag": "v1"}),
            json!({"action": "delete", "repository": "team/app", "tag": "v1"}),
        ]
    );
}
