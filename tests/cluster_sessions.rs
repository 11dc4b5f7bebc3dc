//! Upload sessions on a cluster: two in-process nodes over one PostgreSQL database and one
//! bucket; a client may send each request of one upload to either node.

mod common;

use common::pg::TestDb;
use common::s3::{data, delete_prefix, s3_config};
use common::s3_ops::{MIB, close_upload, get_ok, path_of};
use common::{TestServer, client};
use futures_util::{FutureExt as _, StreamExt as _};
use kura::digest::Digest;

/// `PATCH`es `chunk` at `start` of the upload at `loc` on node `base`; returns the next
/// location, asserting the `202` and the range it acknowledges.
async fn patch(base: &str, loc: &str, start: usize, chunk: &[u8]) -> String {
    let end = start + chunk.len() - 1;
    let r = client()
        .patch(format!("{base}{loc}"))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("{start}-{end}"))
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let range = r
        .headers()
        .get("Range")
        .map(|v| v.to_str().unwrap().to_string());
    let next = r
        .headers()
        .get("Location")
        .map(|v| path_of(v.to_str().unwrap()));
    assert_eq!(
        status,
        202,
        "PATCH {start}-{end} on {base}: {:?}",
        r.text().await
    );
    assert_eq!(range.as_deref(), Some(format!("0-{end}").as_str()));
    next.expect("Location")
}

/// Opens an upload of `c/app` on `node`; returns its location.
async fn open_upload(node: &TestServer) -> String {
    let r = client()
        .post(node.url("/v2/c/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "POST on {}", node.base);
    path_of(r.headers()["Location"].to_str().unwrap())
}

/// The offset node `base` reports for the upload at `loc` (`GET`, `Range: 0-<last>`).
async fn status(base: &str, loc: &str) -> u64 {
    let r = client().get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), 204, "upload status on {base}");
    let range = r.headers()["Range"].to_str().unwrap().to_string();
    range.rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1
}

/// Runs `body` with a fresh database's URL on a runtime of its own (the database is made and
/// dropped with the synchronous client, outside the runtime).
fn with_db<F: std::future::Future<Output = ()>>(body: impl FnOnce(String) -> F) {
    let db = TestDb::new();
    common::rt().block_on(body(db.url.clone()));
}

#[test]
fn an_upload_continued_alternately_on_two_nodes_verifies() {
    with_db(alternating_upload);
}

async fn alternating_upload(url: String) {
    let db = url;
    let storage = s3_config("cluster-sessions");
    let a = TestServer::start_node(&storage, &db).await;
    let b = TestServer::start_node(&storage, &db).await;
    // Chunks across the 5 MiB part size, so parts and tails are written by both nodes.
    let blob = data(12 * MIB + 123, 7);
    let cuts = [0, 3 * MIB, 7 * MIB, 10 * MIB, blob.len()];
    let r = client()
        .post(a.url("/v2/c/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = path_of(r.headers()["Location"].to_str().unwrap());
    // A, B, A: each node appends after the other one did.
    for (i, node) in [&a, &b, &a].into_iter().enumerate() {
        let (s, e) = (cuts[i], cuts[i + 1]);
        loc = patch(&node.base, &loc, s, &blob[s..e]).await;
        let other = if std::ptr::eq(node, &a) { &b } else { &a };
        assert_eq!(
            status(&other.base, &loc).await,
            e as u64,
            "status on the other node"
        );
    }
    // The last chunk and the digest on B.
    let d = Digest::sha256_of(&blob);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = client()
        .put(format!("{}{loc}{sep}digest={d}", b.base))
        .header("Content-Range", format!("{}-{}", cuts[3], blob.len() - 1))
        .body(blob[cuts[3]..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "PUT on B: {:?}", r.text().await);
    for node in [&a, &b] {
        let got = get_ok(&node.url(&format!("/v2/c/app/blobs/{d}"))).await;
        assert!(got == blob, "blob served by {} differs", node.base);
    }
    // The session is over on both nodes, including the one that holds a slot for it.
    let r = client().get(a.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 404, "status of a finished session on A");
    delete_prefix(&storage.prefix);
}

#[test]
fn a_session_cancelled_on_one_node_is_unknown_on_the_other() {
    with_db(cancel_on_other_node);
}

async fn cancel_on_other_node(url: String) {
    let db = url;
    let storage = s3_config("cluster-cancel");
    let a = TestServer::start_node(&storage, &db).await;
    let b = TestServer::start_node(&storage, &db).await;
    let loc = open_upload(&a).await;
    let loc = patch(&a.base, &loc, 0, b"first").await;
    let loc = patch(&b.base, &loc, 5, b"second").await;
    let r = client().delete(b.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204, "cancel on B");
    // A loaded the session before B cancelled it: its slot must not answer for it.
    let r = client()
        .patch(a.url(&loc))
        .header("Content-Range", "11-15")
        .body("third")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "PATCH on A after the cancel on B");
    let r = client().get(a.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 404, "status on A after the cancel on B");
    let keys = common::s3_ops::keys(&storage.prefix, "uploads").await;
    assert!(keys.is_empty(), "the cancelled session left {keys:?}");
    delete_prefix(&storage.prefix);
}

#[test]
fn a_session_finished_on_another_node_frees_its_slot_on_the_node_that_opened_it() {
    with_db(slot_freed_elsewhere);
}

async fn slot_freed_elsewhere(db: String) {
    let storage = s3_config("cluster-session-cap");
    let a = TestServer::start_node(&storage, &db).await;
    let b = TestServer::start_node(&storage, &db).await;
    // One open session per client on A.
    a.registry
        .set_session_limits(kura::registry::SessionLimits {
            total: 100,
            per_client: 1,
        });
    let post = || async {
        client()
            .post(a.url("/v2/c/app/blobs/uploads/"))
            .send()
            .await
            .unwrap()
    };
    let r = post().await;
    assert_eq!(r.status(), 202);
    let loc = path_of(r.headers()["Location"].to_str().unwrap());
    assert_eq!(
        post().await.status(),
        429,
        "the cap holds while the session is open"
    );
    // The client finishes that session on B.
    let blob = b"finished on B".to_vec();
    let d = Digest::sha256_of(&blob);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = client()
        .put(format!("{}{loc}{sep}digest={d}", b.base))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A learns the session is over when it next needs the slot.
    assert_eq!(
        post().await.status(),
        202,
        "A still counts the session B finished"
    );
    delete_prefix(&storage.prefix);
}

/// Sends `PATCH 0-<len-1>` of `chunk` to the upload at `loc` on `base`, the second half of
/// the body only once `go` fires; returns the status.
async fn stalled_patch(
    base: String,
    loc: String,
    chunk: Vec<u8>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> u16 {
    let half = chunk.len() / 2;
    let (first, second) = (chunk[..half].to_vec(), chunk[half..].to_vec());
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        futures_util::stream::once(async move {
            let _ = go.await;
            Ok(second)
        }),
    );
    client()
        .patch(format!("{base}{loc}"))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("0-{}", chunk.len() - 1))
        .header("Content-Length", chunk.len().to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn requests_on_one_session_sent_to_two_nodes_at_once_take_turns() {
    with_db(same_session_on_two_nodes_at_once);
}

async fn same_session_on_two_nodes_at_once(db: String) {
    let storage = s3_config("cluster-session-turns");
    let a = TestServer::start_node(&storage, &db).await;
    let b = TestServer::start_node(&storage, &db).await;
    let loc = open_upload(&a).await;
    // Two different first chunks of one session, one through each node, overlapping: A's
    // body stalls half-way until B answered (or 3 s passed, when B waits its turn).
    let (on_a, on_b) = (data(2 * MIB, 1), data(2 * MIB, 2));
    let (go, wait) = tokio::sync::oneshot::channel();
    let first = tokio::spawn(stalled_patch(
        a.base.clone(),
        loc.clone(),
        on_a.clone(),
        wait,
    ));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = tokio::spawn(stalled_patch(
        b.base.clone(),
        loc.clone(),
        on_b.clone(),
        tokio::sync::oneshot::channel().1,
    ));
    let mut second = second.fuse();
    let early = tokio::select! {
        s = &mut second => Some(s.unwrap()),
        _ = tokio::time::sleep(std::time::Duration::from_secs(3)) => None,
    };
    let _ = go.send(());
    let status_a = first.await.unwrap();
    let status_b = match early {
        Some(s) => s,
        None => second.await.unwrap(),
    };
    // Both started at offset 0: one is accepted, the other finds the session moved on
    // (416, OCI distribution spec, "Pushing a blob in chunks": out-of-order chunks).
    let mut statuses = [status_a, status_b];
    statuses.sort();
    assert_eq!(
        statuses,
        [202, 416],
        "A answered {status_a}, B answered {status_b}{}",
        if early.is_some() {
            " while A was still sending"
        } else {
            ""
        }
    );
    let won = if status_a == 202 { on_a } else { on_b };
    for node in [&a, &b] {
        assert_eq!(status(&node.base, &loc).await, won.len() as u64);
    }
    let d = Digest::sha256_of(&won);
    close_upload(&b.base, &loc, &d).await;
    assert!(get_ok(&a.url(&format!("/v2/c/app/blobs/{d}"))).await == won);
    delete_prefix(&storage.prefix);
}

#[test]
fn the_collector_on_one_node_keeps_a_session_another_node_is_streaming_into() {
    with_db(purge_while_another_node_streams);
}

async fn purge_while_another_node_streams(db: String) {
    let storage = s3_config("cluster-session-purge");
    let a = TestServer::start_node(&storage, &db).await;
    let b = TestServer::start_node(&storage, &db).await;
    let loc = open_upload(&a).await;
    let chunk = data(2 * MIB, 3);
    let (go, wait) = tokio::sync::oneshot::channel();
    let streaming = tokio::spawn(stalled_patch(
        a.base.clone(),
        loc.clone(),
        chunk.clone(),
        wait,
    ));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // B's collector counts every session idle by age; A is streaming into this one.
    let opts = kura::gc::GcOptions {
        upload_max_age: std::time::Duration::ZERO,
        ..common::opts(0)
    };
    let report = common::gc(&b, opts).await;
    assert_eq!(
        report.uploads_purged, 0,
        "B purged a session A is streaming into: {:?}",
        report.items
    );
    let _ = go.send(());
    assert_eq!(streaming.await.unwrap(), 202);
    let d = Digest::sha256_of(&chunk);
    close_upload(&b.base, &loc, &d).await;
    assert!(get_ok(&b.url(&format!("/v2/c/app/blobs/{d}"))).await == chunk);
    delete_prefix(&storage.prefix);
}
