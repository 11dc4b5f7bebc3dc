//! Faults on a cluster of `kura serve` children sharing one PostgreSQL database and one bucket:
//! a node killed in the middle of a chunked push, and PostgreSQL stopped and started again
//! while clients push. Every loop is bounded in count and time.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::client;
use common::cluster::{self, Node};
use common::pg::TestDb;
use common::pg_private::PrivatePg;
use common::rt;
use common::s3::{data, delete_prefix, s3_config};
use common::s3_ops::{MIB, get_ok, path_of};
use kura::digest::Digest;

/// The offset node `n` reports for the upload at `loc`.
async fn offset(n: &Node, loc: &str) -> u64 {
    let r = client().get(n.url(loc)).send().await.unwrap();
    assert_eq!(r.status(), 204, "upload status on {}", n.base);
    let range = r.headers()["Range"].to_str().unwrap();
    range.rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1
}

async fn patch(n: &Node, loc: &str, start: usize, chunk: &[u8]) -> String {
    let r = client()
        .patch(n.url(loc))
        .header(
            "Content-Range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "PATCH at {start} on {}", n.base);
    path_of(r.headers()["Location"].to_str().unwrap())
}

/// Starts a `PATCH` of `total` bytes at `start` on `n` and sends only `sent` of them (the
/// connection stays open, as while a client streams a large chunk).
fn begin_patch(
    n: &Node,
    loc: &str,
    start: usize,
    total: &[u8],
    sent: usize,
) -> std::net::TcpStream {
    let addr = n.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: {start}-{}\r\nContent-Length: {}\r\n\r\n",
        start + total.len() - 1,
        total.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&total[..sent]).unwrap();
    s.flush().unwrap();
    s
}

#[test]
fn a_push_resumes_on_another_node_after_its_node_is_killed() {
    let db = TestDb::new();
    let storage = s3_config("cluster-kill");
    let mut nodes = cluster::start(2, &storage, &db.url);
    let work = tempfile::tempdir().unwrap();
    let blob = data(21 * MIB + 7, 11);
    let chunk = 6 * MIB;
    rt().block_on(async {
        let r = client()
            .post(nodes[0].url("/v2/k/app/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let mut loc = path_of(r.headers()["Location"].to_str().unwrap());
        // Two chunks acknowledged by node 0 (two parts sent), a third one half-streamed
        // (another part in flight) when node 0 is killed.
        for i in 0..2 {
            loc = patch(
                &nodes[0],
                &loc,
                i * chunk,
                &blob[i * chunk..(i + 1) * chunk],
            )
            .await;
        }
        let acked = 2 * chunk;
        let third = &blob[acked..acked + chunk];
        let open = {
            let (n, l) = (&nodes[0], loc.clone());
            let third = third.to_vec();
            begin_patch(n, &l, acked, &third, 5 * MIB)
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        nodes[0].proc.kill();
        drop(open);
        // The client asks node 1 where the session is and continues from there.
        let at = offset(&nodes[1], &loc).await;
        assert_eq!(at, acked as u64, "node 1 reports what node 0 acknowledged");
        let mut pos = at as usize;
        while pos < blob.len() {
            let end = (pos + chunk).min(blob.len());
            loc = patch(&nodes[1], &loc, pos, &blob[pos..end]).await;
            pos = end;
        }
        let d = Digest::sha256_of(&blob);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = client()
            .put(format!("{}{loc}{sep}digest={d}", nodes[1].base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "PUT on node 1: {:?}", r.text().await);
        let got = get_ok(&nodes[1].url(&format!("/v2/k/app/blobs/{d}"))).await;
        assert!(got == blob, "the resumed blob differs");
    });
    let cfg = cluster::config_file(work.path(), &storage, &db.url);
    cluster::fsck_clean(&cfg);
    drop(nodes);
    delete_prefix(&storage.prefix);
}

/// One image push (config, layer, manifest tagged `t<i>`): the manifest's digest, or the
/// status of the first request that failed (0: no answer).
async fn push_one(base: &str, i: usize) -> Result<Vec<u8>, u16> {
    let http = reqwest::Client::builder()
        // While PostgreSQL is down a request gets 503 at once; the bound is for the worst.
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let config = format!("{{\"i\":{i}}}").into_bytes();
    let layer = data(2000 + i, i as u64);
    for b in [&config, &layer] {
        let d = Digest::sha256_of(b);
        let r = http
            .post(format!("{base}/v2/load/app/blobs/uploads/?digest={d}"))
            .body(b.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => {}
            Ok(r) => return Err(r.status().as_u16()),
            Err(_) => return Err(0),
        }
    }
    let manifest = common::image_manifest(
        &(Digest::sha256_of(&config), config.len()),
        &[(Digest::sha256_of(&layer), layer.len())],
        serde_json::json!({}),
    );
    let r = http
        .put(format!("{base}/v2/load/app/manifests/t{i}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await;
    match r {
        Ok(r) if r.status() == 201 => Ok(manifest),
        Ok(r) => Err(r.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// Waits (at most 60 s) until every node answers `/readyz` with 200.
async fn wait_ready(nodes: &[Node]) {
    let until = Instant::now() + Duration::from_secs(60);
    for n in nodes {
        loop {
            let r = client().get(n.url("/readyz")).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < until,
                "{} not ready 60 s after PostgreSQL restarted",
                n.base
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[test]
fn pushes_fail_cleanly_while_postgres_is_down_and_succeed_after() {
    let pg = PrivatePg::start();
    let storage = s3_config("cluster-pg-restart");
    let nodes = cluster::start(2, &storage, &pg.url());
    let work = tempfile::tempdir().unwrap();
    let rt = rt();
    let outcomes = rt.block_on(async {
        // Background load across the whole outage: pushes on both nodes, one after another,
        // until told to stop (at most 400 of them).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
        let loader = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut out = Vec::new();
                for i in 1000..1400 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    out.push(("load", i, push_one(&bases[i % 2], i).await));
                }
                out
            }
        });
        let mut outcomes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut i = 0;
        // Before: pushes succeed. During: they fail with a 5xx. After: they succeed again.
        for phase in ["before", "down", "after"] {
            match phase {
                "down" => pg.down(),
                "after" => {
                    pg.up();
                    wait_ready(&nodes).await;
                }
                _ => {}
            }
            assert!(Instant::now() < deadline, "the pushes took over 240 s");
            // Six at once, three on each node.
            let batch = (i..i + 6).map(|j| push_one(&nodes[j % 2].base, j));
            let done = futures_util::future::join_all(batch).await;
            outcomes.extend(done.into_iter().enumerate().map(|(k, o)| (phase, i + k, o)));
            i += 6;
            if phase == "down" {
                // The background load meets the outage too.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let load = tokio::time::timeout(Duration::from_secs(150), loader)
            .await
            .expect("the load stops within 150 s")
            .unwrap();
        assert!(
            load.iter().any(|(_, _, o)| o.is_ok()),
            "no background push succeeded"
        );
        outcomes.extend(load);
        outcomes
    });
    for (phase, i, out) in &outcomes {
        match (*phase, out) {
            ("down", Err(s)) => assert!((500..600).contains(s), "push {i} while down: {s}"),
            ("down", Ok(_)) => panic!("push {i} succeeded while PostgreSQL was down"),
            // Across the stop and start: either outcome, but a failure is a 5xx.
            ("load", Err(s)) => assert!((500..600).contains(s), "background push {i}: {s}"),
            (p, Err(s)) => panic!("push {i} {p} the outage failed with {s}"),
            _ => {}
        }
    }
    rt.block_on(async {
        // What was acknowledged is served by every node; a push that failed while
        // PostgreSQL was down left no tag. (A background push failing as PostgreSQL stopped
        // may have committed before its answer was lost: its tag, if any, names it whole.)
        for n in &nodes {
            let tags: serde_json::Value =
                serde_json::from_slice(&get_ok(&n.url("/v2/load/app/tags/list")).await).unwrap();
            let tags: Vec<&str> = tags["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect();
            for (phase, i, o) in &outcomes {
                let tag = format!("t{i}");
                let listed = tags.contains(&tag.as_str());
                match o {
                    Ok(m) => {
                        assert!(listed, "acknowledged {tag} not listed on {}", n.base);
                        let got = get_ok(&n.url(&format!("/v2/load/app/manifests/{tag}"))).await;
                        assert!(got == *m, "manifest {tag} on {}", n.base);
                    }
                    Err(_) if *phase == "down" => {
                        assert!(
                            !listed,
                            "{tag}, refused while down, is listed on {}",
                            n.base
                        )
                    }
                    Err(_) if listed => {
                        let r = client()
                            .get(n.url(&format!("/v2/load/app/manifests/{tag}")))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200, "listed {tag} on {}", n.base);
                    }
                    Err(_) => {}
                }
            }
        }
    });
    let cfg = cluster::config_file(work.path(), &storage, &pg.url());
    cluster::fsck_clean(&cfg);
    drop(nodes);
    delete_prefix(&storage.prefix);
}
