//! Operating kura: metrics, health, read-only mode, config checks, webhooks, graceful shutdown.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::*;
use kura::digest::Digest;
use serde_json::Value;

async fn metrics(base: &str) -> prometheus_parse::Scrape {
    let r = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let s = TestServer::start().await;
    let before = metrics(&s.base).await;
    push_image(&s, "metered", "v1", &[b"counted layer"]).await;
    client()
        .get(s.url("/v2/metered/manifests/v1"))
        .send()
        .await
        .unwrap();
    let after = metrics(&s.base).await;
    for x in after
        .samples
        .iter()
        .filter(|x| x.metric.contains("requests"))
    {
        eprintln!("{} {:?} {:?}", x.metric, x.labels, x.value);
    }
    for x in after
        .samples
        .iter()
        .filter(|x| x.metric.contains("requests"))
    {
        eprintln!("{} {:?} {:?}", x.metric, x.labels, x.value);
    }
    let route = [
        ("route", "/v2/<name>/manifests/<reference>"),
        ("method", "PUT"),
        ("status", "201"),
    ];
    assert!(
        value(&after, "kura_http_requests_total", &route)
            >= value(&before, "kura_http_requests_total", &route) + 1.0,
        "manifest PUT counter moved"
    );
    assert!(
        value(&after, "kura_http_received_bytes_total", &[])
            > value(&before, "kura_http_received_bytes_total", &[])
    );
    assert!(value(&after, "kura_blobs", &[]) >= 3.0);
    assert!(value(&after, "kura_repositories", &[]) >= 1.0);
    assert!(value(&after, "kura_meta_commit_duration_seconds_count", &[]) > 0.0);
    assert!(
        after
            .samples
            .iter()
            .any(|x| x.metric == "kura_http_request_duration_seconds"
                && matches!(&x.value, prometheus_parse::Value::Histogram(b) if !b.is_empty()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() {
    let s = TestServer::start().await;
    let r = client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0,
        "probe file removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_refuses_pushes_and_serves_pulls() {
    let s = TestServer::start().await;
    let (_, d) = push_image(&s, "ro", "v1", &[b"before"]).await;
    let c = client();
    let r = c
        .post(s.url("/admin/read-only?enabled=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["read_only"], true);
    let r = c.post(s.url("/v2/ro/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("UNSUPPORTED") && body.contains("read-only"),
        "{body}"
    );
    let r = c
        .delete(s.url(&format!("/v2/ro/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = c.get(s.url("/v2/ro/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    c.post(s.url("/admin/read-only?enabled=false"))
        .send()
        .await
        .unwrap();
    push_image(&s, "ro", "v2", &[b"after"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_flag_starts_the_server_refusing_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_kura(dir.path(), &["--read-only"]);
    let r = client()
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("kura.toml");
    std::fs::write(
        &good,
        r#"
addr = "127.0.0.1:5001"
[gc]
grace = "2h"
[[notifications.endpoints]]
name = "audit"
url = "http://hooks.example:8080/events"
headers = { Authorization = "Bearer s3cret" }
actions = ["push", "delete"]
"#,
    )
    .unwrap();
    let (ok, out, err) = kura_cmd(&["config", "check", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("addr = \"127.0.0.1:5001\""), "{out}");
    assert!(out.contains("grace = \"2h\""), "{out}");
    assert!(!out.contains("s3cret"), "secret printed: {out}");
    assert!(out.contains("********"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "adress = \"typo\"\n").unwrap();
    let (ok, _, err) = kura_cmd(&["config", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("adress"), "{err}");
    std::fs::write(&bad, "[gc]\ngrace = \"soon\"\n").unwrap();
    let (ok, _, err) = kura_cmd(&["config", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("grace"), "{err}");
    let (ok, _, err) = kura_cmd(&["config", "check", "/nonexistent/kura.toml"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kura.toml");
    std::fs::write(&f, "workers = 3\n[gc]\ngrace = \"2h\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["config", "check", f.to_str().unwrap()])
        .env("KURA_GC__GRACE", "15m")
        .env("KURA_WORKERS", "7")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("grace = \"15m\""), "{text}");
    assert!(text.contains("workers = 7"), "{text}");
}

/// A webhook receiver on 127.0.0.1:`port` recording every delivery's content type and events.
struct Receiver {
    events: Arc<Mutex<Vec<(String, Value)>>>,
    handle: actix_web::dev::ServerHandle,
}

fn start_receiver(listener: TcpListener) -> Receiver {
    let events: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let ev = events.clone();
    let server = HttpServer::new(move || {
        let ev = ev.clone();
        App::new().route(
            "/events",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let ev = ev.clone();
                async move {
                    let ct = req
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    for e in v["events"].as_array().unwrap() {
                        ev.lock().unwrap().push((ct.clone(), e.clone()));
                    }
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver { events, handle }
}

fn hook_config(dir: &std::path::Path, port: u16) -> String {
    let f = dir.join("kura.toml");
    std::fs::write(
        &f,
        format!(
            r#"
[[notifications.endpoints]]
name = "test"
url = "http://127.0.0.1:{port}/events"
backoff = "100ms"
max_backoff = "300ms"
timeout = "2s"
"#
        ),
    )
    .unwrap();
    f.to_str().unwrap().to_string()
}

async fn wait_for(events: &Arc<Mutex<Vec<(String, Value)>>>, n: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if events.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events.lock().unwrap().clone()
}

/// Pushes a one-layer image to `repo:v1` over HTTP; returns the manifest digest.
async fn push_small(base: &str, repo: &str) -> Digest {
    let c = client();
    let cfg = b"{}".to_vec();
    let layer = b"hooked layer".to_vec();
    for data in [&cfg, &layer] {
        let d = Digest::sha256_of(data);
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let m = image_manifest(
        &(Digest::sha256_of(&cfg), 2),
        &[(Digest::sha256_of(&layer), layer.len())],
        serde_json::json!({}),
    );
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    Digest::sha256_of(&m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_push_pull_and_delete_events() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx = start_receiver(listener);
    let dir = tempfile::tempdir().unwrap();
    let cfg = hook_config(dir.path(), port);
    let (mut child, base) = spawn_kura(dir.path(), &["--config", &cfg]);
    let d = push_small(&base, "hooks/app").await;
    let r = client()
        .get(format!("{base}/v2/hooks/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .delete(format!("{base}/v2/hooks/app/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // 2 blob pushes, 1 manifest push, 1 pull, 1 delete.
    let got = wait_for(&rx.events, 5).await;
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(
        got.iter()
            .all(|(ct, _)| ct == "application/vnd.docker.distribution.events.v1+json")
    );
    let manifest_push = got
        .iter()
        .map(|g| &g.1)
        .find(|e| e["action"] == "push" && e["target"]["tag"] == "v1")
        .expect("manifest push");
    assert_eq!(manifest_push["target"]["digest"], d.to_string());
    assert_eq!(manifest_push["target"]["repository"], "hooks/app");
    assert_eq!(
        manifest_push["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest_push["request"]["method"], "PUT");
    assert!(
        manifest_push["source"]["instanceID"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(manifest_push["timestamp"].as_str().is_some());
    assert!(
        got.iter()
            .any(|(_, e)| e["action"] == "pull" && e["target"]["digest"] == d.to_string().as_str())
    );
    assert!(
        got.iter().any(
            |(_, e)| e["action"] == "delete" && e["target"]["digest"] == d.to_string().as_str()
        )
    );
    child.kill().unwrap();
    child.wait().unwrap();
    rx.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_wait_out_a_dead_receiver_and_a_kura_restart() {
    // Reserve a port for the receiver, but do not listen yet: deliveries fail.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = hook_config(dir.path(), port);
    let (mut child, base) = spawn_kura(dir.path(), &["--config", &cfg]);
    push_small(&base, "late/app").await;
    // Let the events reach the queue table, then stop kura gracefully.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    child.wait().unwrap();
    // Restart kura, then bring the receiver up: the queued events arrive.
    let (mut child, _base) = spawn_kura(dir.path(), &["--config", &cfg]);
    let rx = start_receiver(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let got = wait_for(&rx.events, 3).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got.iter()
            .all(|(_, e)| e["action"] == "push" && e["target"]["repository"] == "late/app")
    );
    child.kill().unwrap();
    child.wait().unwrap();
    rx.handle.stop(false).await;
}

/// (action, repository, digest or tag) of an event.
fn event_key(e: &Value) -> (String, String, String) {
    let t = &e["target"];
    let what = t["tag"]
        .as_str()
        .filter(|_| e["action"] == "delete")
        .or(t["digest"].as_str())
        .unwrap_or_default();
    (
        e["action"].as_str().unwrap_or_default().to_string(),
        t["repository"].as_str().unwrap_or_default().to_string(),
        what.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_of_acknowledged_writes_survive_kill_9() {
    // The receiver is down while kura runs, so nothing is delivered before the kill.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = hook_config(dir.path(), port);
    let (mut child, base) = spawn_kura_guarded(dir.path(), &["--config", &cfg]);
    let c = client();
    let mut expected = Vec::new();
    let k = |a: &str, r: &str, d: &str| (a.to_string(), r.to_string(), d.to_string());
    // An image pushed (two blobs and the manifest), its layer mounted elsewhere, a tag and a
    // blob deleted; the kill comes right after the last acknowledgement.
    let d = push_small(&base, "acked/app").await;
    let layer = Digest::sha256_of(b"hooked layer");
    expected.push(k(
        "push",
        "acked/app",
        &Digest::sha256_of(b"{}").to_string(),
    ));
    expected.push(k("push", "acked/app", &layer.to_string()));
    expected.push(k("push", "acked/app", &d.to_string()));
    let r = c
        .post(format!(
            "{base}/v2/acked/copy/blobs/uploads/?mount={layer}&from=acked/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    expected.push(k("mount", "acked/copy", &layer.to_string()));
    let r = c
        .delete(format!("{base}/v2/acked/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    expected.push(k("delete", "acked/app", "v1"));
    let r = c
        .delete(format!("{base}/v2/acked/copy/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    expected.push(k("delete", "acked/copy", &layer.to_string()));
    child.kill();
    // Restart, then bring the receiver up: every acknowledged write's event arrives.
    let (_child, _base) = spawn_kura_guarded(dir.path(), &["--config", &cfg]);
    let rx = start_receiver(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let got = wait_for(&rx.events, expected.len()).await;
    let mut got: Vec<_> = got.iter().map(|(_, e)| event_key(e)).collect();
    // In the order the writes were acknowledged.
    assert_eq!(got, expected);
    // And nothing more arrives (no duplicates).
    tokio::time::sleep(Duration::from_millis(300)).await;
    got = rx
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| event_key(e))
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    rx.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_kura(dir.path(), &[]);
    let c = client();
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::sha256_of(&data);
    let r = c
        .post(format!("{base}/v2/term/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(&loc)
        .header("Content-Range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A second chunk streams slowly while SIGTERM arrives: the server finishes it first.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let slow = {
        let loc = loc.clone();
        tokio::spawn(async move {
            client()
                .patch(&loc)
                .header("Content-Range", "1000000-4999999")
                .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
                .send()
                .await
        })
    };
    tx.send(Ok(data[1_000_000..4_000_000].to_vec()))
        .await
        .unwrap();
    // Wait until the server is visibly in the middle of this request: it has written at least
    // one block of it to the session's file.
    let id = loc.rsplit('/').next().unwrap().to_string();
    let file = dir.path().join("uploads").join(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&file).map_or(0, |m| m.len()) <= 1_000_000 {
        assert!(
            Instant::now() < deadline,
            "the server never started on the second chunk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = tx.send(Ok(data[4_000_000..5_000_000].to_vec())).await;
    drop(tx);
    let r = slow.await.unwrap();
    assert!(
        sent.is_ok(),
        "second half not accepted: {r:?} (server: {:?})",
        child.wait()
    );
    let r = r.unwrap();
    assert_eq!(
        r.status(),
        202,
        "the in-flight chunk is finished during graceful shutdown"
    );
    assert!(
        child.wait().unwrap().success(),
        "kura exits cleanly on SIGTERM"
    );
    // After a restart the session holds both acknowledged chunks and completes.
    let (mut child, base) = spawn_kura(dir.path(), &[]);
    let loc = loc.replace(&loc[..loc.find("/v2/").unwrap()], &base);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-4999999");
    let r = c
        .put(format!("{loc}?digest={d}"))
        .header("Content-Range", "5000000-5999999")
        .body(data[5_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = c
        .get(format!("{base}/v2/term/blobs/{d}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&got), d);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
