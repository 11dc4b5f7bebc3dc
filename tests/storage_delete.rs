//! `[storage] delete`: a registry can refuse client deletes (as Distribution's
//! `storage.delete.enabled = false`), and every answer carries `X-Content-Type-Options: nosniff`.

mod common;

use common::*;

async fn server(deletes: bool) -> TestServer {
    TestServer::start_with_options(
        None,
        kura::server::ServerOptions {
            deletes,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_switched_off_answer_405_unsupported_and_remove_nothing() {
    let s = server(false).await;
    let c = client();
    let (_, digest) = push_image(&s, "team/app", "v1", &[b"layer"]).await;
    let layer = push_blob(&s, "team/app", b"loose").await;
    for path in [
        "/v2/team/app/manifests/v1".to_string(),
        format!("/v2/team/app/manifests/{digest}"),
        format!("/v2/team/app/blobs/{layer}"),
    ] {
        let r = c.delete(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(error_code(r).await, "UNSUPPORTED", "{path}");
    }
    let r = c
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the tag is still there");
    let r = c
        .head(s.url(&format!("/v2/team/app/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the blob link is still there");
    // Cancelling one's own upload is not a delete of content.
    let r = c
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with('/') {
        s.url(&loc)
    } else {
        loc
    };
    let r = c.delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_on_by_default() {
    let s = server(true).await;
    let (_, _) = push_image(&s, "team/app", "v1", &[b"layer"]).await;
    let r = client()
        .delete(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_nosniff() {
    let s = server(false).await;
    let c = client();
    let layer = push_blob(&s, "team/app", b"<html><script>alert(1)</script>").await;
    let cases = [
        ("GET", format!("/v2/team/app/blobs/{layer}")),
        ("HEAD", format!("/v2/team/app/blobs/{layer}")),
        ("GET", "/v2/".to_string()),
        ("GET", "/v2/nope/manifests/latest".to_string()),
        ("GET", "/v2/NOT..valid/tags/list".to_string()),
        ("DELETE", format!("/v2/team/app/blobs/{layer}")),
        ("GET", "/healthz".to_string()),
        ("GET", "/metrics".to_string()),
        ("GET", "/nothing-here".to_string()),
    ];
    for (method, path) in cases {
        let r = c
            .request(method.parse().unwrap(), s.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{method} {path} -> {}",
            r.status()
        );
    }
}

#[test]
fn storage_delete_is_read_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kura.toml");
    std::fs::write(&f, "[storage]\ndelete = false\n").unwrap();
    let (ok, out, err) = kura_cmd(&["config", "check", f.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("[storage]\ndelete = false"), "{out}");
    std::fs::write(&f, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["config", "check", f.to_str().unwrap()])
        .env("KURA_STORAGE__DELETE", "false")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("[storage]\ndelete = false"));
}
