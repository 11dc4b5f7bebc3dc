//! Interrupted transfers: an upload whose server is killed (kill -9) mid-way resumes, after
//! the restart, from the offset the server reports; a download cut mid-body resumes with
//! `Range`; a download whose bytes do not match their digest is refused and leaves no blob.

mod client_support;
mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use client_support::proxy::{Options, Proxy};
use client_support::{
    Client, Layout, entry, host_of, noise, p, reachable, single_image, spawn_server,
};
use common::TestServer;
use serde_json::Value;

/// The largest file in `dir` (upload sessions live in `<root>/uploads/`).
fn largest_file(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_resumes_after_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let (mut server, host) = spawn_server(&root, "127.0.0.1:0");

    const SIZE: usize = 96 << 20;
    let layout = Layout::new(&tmp.path().join("src"));
    let big = noise(SIZE, 7);
    let desc = layout.image("amd64", &[(&[("big", &big)], false)]);
    layout.tag(&desc, "v1");
    let manifest: Value = serde_json::from_slice(&client_support::read_blob(
        &layout.dir,
        desc["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layer = manifest["layers"][0].clone();
    let layer_size = layer["size"].as_u64().unwrap();

    // The client pushes in 1 MiB chunks; it is killed nothing, only the server is.
    let c = Client::new();
    let image = format!("{host}/team/big:v1");
    let mut child = c
        .command(&[
            "push",
            "--json",
            "--jobs",
            "1",
            "--chunk-size",
            "1MiB",
            "--retries",
            "8",
            p(&layout.dir),
            &image,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<String>>()
    });

    // Kill the server once the upload session holds at least 8 MiB.
    let uploads = root.join("uploads");
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen_before_kill = loop {
        let n = largest_file(&uploads);
        if n >= 8 << 20 {
            break n;
        }
        assert!(Instant::now() < deadline, "the upload never reached 8 MiB");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        seen_before_kill < layer_size,
        "the kill must land mid-upload ({seen_before_kill} of {layer_size})"
    );

    // Restart on the same root and port; the client, retrying, finds its session there.
    let (mut server, host2) = spawn_server(&root, &host);
    assert_eq!(host2, host);
    let status = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the push finishes after the restart")
    .unwrap()
    .unwrap();
    let lines = lines.join().unwrap();
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(status.success(), "push failed: {lines:#?}");

    let resumes: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "resume" && e["digest"] == layer["digest"])
        .collect();
    assert_eq!(resumes.len(), 1, "{lines:#?}");
    let offset = resumes[0]["offset"].as_u64().unwrap();
    assert!(
        offset >= seen_before_kill && offset < layer_size,
        "resumed at {offset}: not from the server's offset (>= {seen_before_kill} held at the kill)"
    );
    let blob = events
        .iter()
        .find(|e| e["event"] == "blob" && e["digest"] == layer["digest"])
        .unwrap();
    assert_eq!(blob["action"], "uploaded");
    assert_eq!(blob["resumed_at"], serde_json::json!([offset]));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "done" && e["digest"] == desc["digest"])
    );

    // What the restarted server holds is the image, byte for byte.
    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    let digest = desc["digest"].as_str().unwrap();
    assert_eq!(reachable(&dest, digest), reachable(&layout.dir, digest));
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_resumes_an_interrupted_download_with_range() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let c = Client::new();
    c.ok(&[
        "push",
        "-q",
        p(&src.dir),
        &format!("{}/team/app:v1", host_of(&s.base)),
    ])
    .await;

    let proxy = Proxy::start(
        s.addr,
        Options {
            cut_first_blob_get_after: Some(1 << 20),
            ..Options::default()
        },
    )
    .await;
    let dest = tmp.path().join("pulled");
    let out = c
        .ok(&[
            "pull",
            "--json",
            "--jobs",
            "1",
            &format!("{}/team/app:v1", proxy.host),
            p(&dest),
        ])
        .await;
    let resumes: Vec<Value> = out.events_of("resume");
    assert_eq!(resumes.len(), 1, "{}", out.stdout);
    let offset = resumes[0]["offset"].as_u64().unwrap();
    assert!(offset > 0, "{}", out.stdout);
    let ranged: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| r.range.as_deref() == Some(&format!("bytes={offset}-")))
        .collect();
    assert_eq!(ranged.len(), 1, "the client asked for the rest with Range");
    assert_eq!(ranged[0].status, 206);
    assert_eq!(entry(&dest, Some("v1"))["digest"], digest);
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_download_is_refused_and_leaves_no_blob() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, _) = single_image(&tmp.path().join("src"));
    let c = Client::new();
    c.ok(&[
        "push",
        "-q",
        p(&src.dir),
        &format!("{}/team/app:v1", host_of(&s.base)),
    ])
    .await;
    let proxy = Proxy::start(
        s.addr,
        Options {
            corrupt_blob_gets: true,
            ..Options::default()
        },
    )
    .await;
    let dest = tmp.path().join("pulled");
    let out = c
        .run(&["pull", &format!("{}/team/app:v1", proxy.host), p(&dest)])
        .await;
    assert!(!out.success);
    assert!(out.stderr.contains("content has digest"), "{}", out.stderr);
    // Nothing unverified was left: no blob files, no temporary files, no index entry.
    let blobs = dest.join("blobs/sha256");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dest.join("index.json").exists());
}
