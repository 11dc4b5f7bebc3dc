//! Leadership of the cluster's background roles under faults: three `kura serve` children on
//! one PostgreSQL database and one bucket; the node leading a role is killed (SIGKILL) while it
//! works, and another takes the role over and finishes the work. Every loop is bounded in
//! count and time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{self, Node, wait_leader};
use common::pg::TestDb;
use common::rt;
use common::s3::{data, delete_prefix, s3_config};
use common::s3_ops::{Pushed, assert_serves, keys, push_blob_at, push_image_at};
use futures_util::StreamExt;
use kura::digest::Digest;
use serde_json::{Value, json};

/// One row count of `sql` (with `digests` as `$1` when it names it), on a thread of its own
/// (the synchronous client may not block a runtime's thread).
fn count(db: &TestDb, sql: &str, digests: &[String]) -> i64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = db.client();
            let row = if sql.contains("$1") {
                c.query_one(sql, &[&digests])
            } else {
                c.query_one(sql, &[])
            };
            row.unwrap().get(0)
        })
        .join()
        .unwrap()
    })
}

/// Garbage: `n` repositories `junk/r<i>` each holding one untagged manifest (over a config and
/// a layer of its own), and `n` unreferenced blobs in `junk/strays`, pushed round-robin on
/// `bases`. Returns every blob digest involved (manifests included).
async fn make_garbage(bases: &[String], n: usize) -> Vec<String> {
    let made = futures_util::stream::iter(0..n)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            async move {
                let repo = format!("junk/r{i}");
                let config = format!("{{\"junk\":{i}}}").into_bytes();
                let layer = data(300 + i, 7_000 + i as u64);
                let cd = push_blob_at(&base, &repo, &config).await;
                let ld = push_blob_at(&base, &repo, &layer).await;
                let m = common::image_manifest(
                    &(cd.clone(), config.len()),
                    &[(ld.clone(), layer.len())],
                    json!({}),
                );
                let md = Digest::sha256_of(&m);
                let r = common::client()
                    .put(format!("{base}/v2/{repo}/manifests/{md}"))
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(m)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "untagged manifest in {repo}");
                let stray = data(200 + i, 9_000 + i as u64);
                let sd = push_blob_at(&base, "junk/strays", &stray).await;
                [cd, ld, md, sd].map(|d| d.to_string())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    made.into_iter().flatten().collect()
}

/// Pushes tagged images `live/app:t<i>` to `bases` in turn until `stop` (at most 200):
/// the acknowledged ones.
async fn push_until(bases: Vec<String>, stop: Arc<AtomicBool>) -> Vec<Pushed> {
    let mut out = Vec::new();
    for i in 0..200 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let base = &bases[i % bases.len()];
        let layers = [
            data(1_000 + i, 100 + i as u64),
            data(500 + i, 500 + i as u64),
        ];
        out.push(push_image_at(base, "live/app", &format!("t{i}"), &layers).await);
    }
    out
}

/// Repositories of garbage (each an untagged manifest, its two blobs and a stray blob).
const GARBAGE: usize = 240;

#[test]
fn another_node_finishes_the_collection_when_the_gc_leader_is_killed_mid_run() {
    let db = TestDb::new();
    let storage = s3_config("cluster-gc-leader");
    let env = [
        ("KURA_GC__INTERVAL", "1s"),
        ("KURA_GC__GRACE", "6s"),
        ("KURA_GC__DELETE_UNTAGGED", "true"),
    ];
    let rt = rt();
    // The garbage is made on a node that does not collect, and has passed its grace when the
    // three collecting nodes start: the leader's first run meets all of it at once.
    let seed = cluster::start_node_with(&storage, &db.url, &[], &[("KURA_GC__INTERVAL", "0s")]);
    let garbage = rt.block_on(make_garbage(std::slice::from_ref(&seed.base), GARBAGE));
    drop(seed);
    let junk_sql = "SELECT count(*) FROM manifests WHERE repo LIKE 'junk/%'";
    let initial = count(&db, junk_sql, &[]);
    assert_eq!(initial, GARBAGE as i64, "junk manifests made");
    std::thread::sleep(Duration::from_secs(8));
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| cluster::start_node_with(&storage, &db.url, &[], &env))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let (pushed, survivors) = rt.block_on(async {
        let all: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&all, "gc", Duration::from_secs(30)).await;
        let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
        // Referenced images keep arriving on the other nodes throughout.
        let others: Vec<String> = (0..3).filter(|&i| i != leader).map(|i| bases[i].clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let loader = tokio::spawn(push_until(others.clone(), stop.clone()));
        // The leader is collecting once the junk manifests start to go: kill it when about
        // half are gone (at most 60 s).
        let until = Instant::now() + Duration::from_secs(60);
        let left = loop {
            let left = count(&db, junk_sql, &[]);
            if left <= initial / 2 {
                break left;
            }
            assert!(Instant::now() < until, "no collection began within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        nodes[leader].proc.kill();
        assert!(left > 0, "the leader finished before it was killed ({initial} junk manifests)");
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let rest: Vec<&Node> = survivors.iter().map(|&i| &nodes[i]).collect();
        wait_leader(&rest, "gc", Duration::from_secs(30)).await;
        // The new leader finishes: every junk manifest, blob row and object goes (90 s).
        let until = Instant::now() + Duration::from_secs(90);
        let rows_sql = "SELECT count(*) FROM blobs WHERE digest = ANY($1)";
        let garbage_keys: BTreeSet<String> = garbage
            .iter()
            .map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
            .collect();
        loop {
            let manifests = count(&db, junk_sql, &[]);
            let rows = count(&db, rows_sql, &garbage);
            let objects = keys(&storage.prefix, "blobs")
                .await
                .into_iter()
                .filter(|k| garbage_keys.contains(k))
                .count();
            if manifests == 0 && rows == 0 && objects == 0 {
                break;
            }
            assert!(
                Instant::now() < until,
                "garbage left 90 s after the kill: {manifests} manifests, {rows} rows, {objects} objects"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let pushed = tokio::time::timeout(Duration::from_secs(60), loader)
            .await
            .expect("the pushes stop within 60 s")
            .expect("every push during the collection succeeded");
        assert!(!pushed.is_empty(), "no push went on during the collection");
        (pushed, survivors)
    });
    rt.block_on(async {
        // Every acknowledged push is served whole by every surviving node.
        for &i in &survivors {
            for img in &pushed {
                assert_serves(&nodes[i].base, img).await;
            }
        }
    });
    cluster::fsck_clean(&cluster::config_file(work.path(), &storage, &db.url));
    drop(nodes);
    delete_prefix(&storage.prefix);
}

/// One delivery received by the webhook listener: the `X-Node` header naming the sender, when,
/// and its events.
struct Delivery {
    node: String,
    at: Instant,
    events: Vec<Value>,
}

/// A webhook endpoint on 127.0.0.1 (ephemeral port) recording every request, answering 200.
/// The listener thread ends with the test process.
fn listen() -> (u16, Arc<Mutex<Vec<Delivery>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let rec = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let (mut len, mut node, mut line) = (0usize, String::new(), String::new());
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                let (k, v) = line.split_once(':').unwrap_or((&line, ""));
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "x-node" => node = v.trim().to_string(),
                    _ => {}
                }
                line.clear();
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let at = Instant::now();
            rec.lock().unwrap().push(Delivery { node, at, events });
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// A config file giving node `i` the endpoint `hook` (push events only), sent with `X-Node: n<i>`.
fn hook_config(dir: &std::path::Path, i: usize, port: u16) -> String {
    let f = dir.join(format!("node{i}.toml"));
    let toml = format!(
        "[[notifications.endpoints]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/events\"\n\
         actions = [\"push\"]\nbackoff = \"100ms\"\nmax_backoff = \"500ms\"\ntimeout = \"2s\"\n\
         headers = {{ X-Node = \"n{i}\" }}\n"
    );
    std::fs::write(&f, toml).unwrap();
    f.display().to_string()
}

/// Waits (at most 60 s) until the queue of endpoint `hook` is empty: all delivered and dequeued.
async fn drained(db: &TestDb) {
    let until = Instant::now() + Duration::from_secs(60);
    let sql = "SELECT count(*) FROM notifications WHERE endpoint = 'hook'";
    while count(db, sql, &[]) > 0 {
        assert!(Instant::now() < until, "webhook queue not drained in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event ids delivered in `got`, with how many times each came, and the manifest digests
/// their push events name.
fn tally(got: &[Delivery]) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let (mut ids, mut manifests) = (BTreeMap::new(), BTreeSet::new());
    for e in got.iter().flat_map(|d| &d.events) {
        *ids.entry(e["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        if e["target"]["mediaType"] != "application/octet-stream" {
            manifests.insert(e["target"]["digest"].as_str().unwrap().to_string());
        }
    }
    (ids, manifests)
}

fn manifest_digest(img: &Pushed) -> String {
    Digest::sha256_of(&img.manifest).to_string()
}

#[test]
fn only_the_webhook_leader_delivers_and_a_new_leader_delivers_after_it_is_killed() {
    let db = TestDb::new();
    let storage = s3_config("cluster-hook-leader");
    let work = tempfile::tempdir().unwrap();
    let (port, got) = listen();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let cfg = hook_config(work.path(), i, port);
            cluster::start_node_with(&storage, &db.url, &["--config", &cfg], &[])
        })
        .collect();
    let rt = rt();
    rt.block_on(async {
        let all: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&all, "webhook:hook", Duration::from_secs(30)).await;
        // Phase 1: pushes spread over the three nodes; every event once, all sent by the leader.
        let mut first = Vec::new();
        for i in 0..12 {
            let layers = [data(700 + i, 40 + i as u64)];
            first.push(
                push_image_at(&nodes[i % 3].base, "hooked/app", &format!("a{i}"), &layers).await,
            );
        }
        drained(&db).await;
        let phase1 = std::mem::take(&mut *got.lock().unwrap());
        let (ids, manifests) = tally(&phase1);
        assert!(
            ids.values().all(|&n| n == 1),
            "a phase-1 event came twice: {ids:?}"
        );
        for img in &first {
            assert!(
                manifests.contains(&manifest_digest(img)),
                "no push event of {}",
                img.tag
            );
        }
        let senders: BTreeSet<&str> = phase1.iter().map(|d| d.node.as_str()).collect();
        assert_eq!(
            senders,
            BTreeSet::from([format!("n{leader}").as_str()]),
            "senders"
        );
        // Phase 2: the leader is killed while pushes go on on the other two nodes.
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let mut second = Vec::new();
        let mut killed_at = None;
        for i in 0..12 {
            if i == 3 {
                nodes[leader].proc.kill();
                killed_at = Some(Instant::now());
            }
            let base = &nodes[others[i % 2]].base;
            second.push(
                push_image_at(
                    base,
                    "hooked/app",
                    &format!("b{i}"),
                    &[data(800 + i, 60 + i as u64)],
                )
                .await,
            );
        }
        let killed_at = killed_at.expect("the leader was killed after 3 pushes");
        let rest: Vec<&Node> = others.iter().map(|&i| &nodes[i]).collect();
        let new = others[wait_leader(&rest, "webhook:hook", Duration::from_secs(30)).await];
        drained(&db).await;
        let phase2 = std::mem::take(&mut *got.lock().unwrap());
        let (ids, manifests) = tally(&phase2);
        for img in &second {
            assert!(
                manifests.contains(&manifest_digest(img)),
                "no push event of {}",
                img.tag
            );
        }
        // At least once across the leader's death: an event may come again only if it was
        // first sent before the kill (sent, not yet dequeued); after it, once each, by the new
        // leader alone.
        let (before, after): (Vec<&Delivery>, Vec<&Delivery>) =
            phase2.iter().partition(|d| d.at < killed_at);
        let early: BTreeSet<&str> = before
            .iter()
            .flat_map(|d| &d.events)
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        for (id, n) in &ids {
            assert!(
                *n == 1 || (*n == 2 && early.contains(id.as_str())),
                "event {id} came {n} times"
            );
        }
        let late: BTreeSet<&str> = after.iter().map(|d| d.node.as_str()).collect();
        assert_eq!(
            late,
            BTreeSet::from([format!("n{new}").as_str()]),
            "senders after the kill"
        );
        assert!(
            before.iter().all(|d| d.node == format!("n{leader}")),
            "senders before the kill"
        );
    });
    cluster::fsck_clean(&cluster::config_file(work.path(), &storage, &db.url));
    drop(nodes);
    delete_prefix(&storage.prefix);
}
