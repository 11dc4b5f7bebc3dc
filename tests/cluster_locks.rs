//! Cluster coordination on a real PostgreSQL (`tests/common/pg.rs`): several "nodes" (each a
//! `Registry` on the same database, and for blobs the same directory) in one process. Digest
//! locks exclude across nodes and go with their holder's session; exactly one node leads a
//! role and another takes over when it stops or its connection dies; a collector on one node
//! never unlinks a blob another node records again.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pg::TestDb;
use kura::cluster::{Leader, digest_key};
use kura::config::{MetadataConfig, MetadataKind, StorageConfig};
use kura::digest::Digest;
use kura::gc::GcOptions;
use kura::names::RepoName;
use kura::registry::Registry;

fn node(db: &TestDb, root: &Path) -> Registry {
    let metadata = MetadataConfig {
        kind: MetadataKind::Postgres,
        url: db.url.clone(),
        pool_size: 4,
    };
    let r = Registry::open_configured(root, &StorageConfig::default(), &metadata).expect("open");
    assert!(r.digest_locks().is_cluster());
    r
}

/// Polls `f` every 20 ms until it holds or `limit` passes; true if it held.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Sessions holding (`granted`) or waiting for the advisory lock of `digest`, in `db`.
fn digest_lock_sessions(db: &TestDb, digest: &str, granted: bool) -> Vec<i32> {
    let key = digest_key(digest) as u64;
    let (hi, lo) = ((key >> 32) as u32, key as u32);
    db.client()
        .query(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE d.datname = current_database() AND l.locktype = 'advisory'
               AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1 AND l.granted = $3",
            &[&hi, &lo, &granted],
        )
        .expect("read pg_locks")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn digest_of(text: &str) -> String {
    Digest::sha256_of(text.as_bytes()).to_string()
}

/// Takes `digest`'s lock on `r` in a thread; the receiver gets the moment it was granted. The
/// thread holds it until `release` is sent or dropped.
fn lock_in_thread(
    r: &Registry,
    digest: &str,
) -> (
    mpsc::Receiver<Instant>,
    mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (got_tx, got) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let (r, d) = (r.clone(), digest.to_string());
    let t = std::thread::spawn(move || {
        let _g = r.digest_locks().lock(&d).expect("lock");
        got_tx.send(Instant::now()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    });
    (got, release, t)
}

#[test]
fn a_digest_lock_held_on_one_node_blocks_the_same_digest_on_another() {
    let (db, dir) = (TestDb::new(), tempfile::tempdir().unwrap());
    let (a, b) = (node(&db, dir.path()), node(&db, dir.path()));
    let d = digest_of("contended");
    let held = a.digest_locks().lock(&d).unwrap();
    let (got, release, t) = lock_in_thread(&b, &d);
    // B's session is queued at the server behind A's.
    assert!(eventually(Duration::from_secs(10), || {
        digest_lock_sessions(&db, &d, false).len() == 1
    }));
    assert!(
        got.recv_timeout(Duration::from_millis(300)).is_err(),
        "node B locked a digest node A holds"
    );
    let released = Instant::now();
    drop(held);
    let granted = got
        .recv_timeout(Duration::from_secs(10))
        .expect("node B gets the lock once A releases it");
    assert!(granted >= released);
    drop(release);
    t.join().unwrap();
}

#[test]
fn different_digests_do_not_block_each_other() {
    let (db, dir) = (TestDb::new(), tempfile::tempdir().unwrap());
    let (a, b) = (node(&db, dir.path()), node(&db, dir.path()));
    let (d1, d2, d3) = (digest_of("one"), digest_of("two"), digest_of("three"));
    let _held = a.digest_locks().lock(&d1).unwrap();
    let (got, release, t) = lock_in_thread(&b, &d2);
    got.recv_timeout(Duration::from_secs(10))
        .expect("another digest is not blocked");
    drop(release);
    t.join().unwrap();
    // Several at once on the other node, and another on the same node (a second connection).
    let many = b
        .digest_locks()
        .lock_many([d2.as_str(), d3.as_str(), d2.as_str()])
        .unwrap();
    assert_eq!(digest_lock_sessions(&db, &d3, true).len(), 1);
    let (got, release, t) = lock_in_thread(&a, &digest_of("four"));
    got.recv_timeout(Duration::from_secs(10))
        .expect("a third digest on the first node is not blocked");
    drop((release, many));
    t.join().unwrap();
}

#[test]
fn a_lock_is_released_when_its_holder_drops_or_its_connection_dies() {
    let (db, dir) = (TestDb::new(), tempfile::tempdir().unwrap());
    let (a, b) = (node(&db, dir.path()), node(&db, dir.path()));
    let (d1, d2) = (digest_of("dropped"), digest_of("killed"));

    // Dropped: nothing stays held, and the other node gets it at once.
    let many = a
        .digest_locks()
        .lock_many([d1.as_str(), d2.as_str()])
        .unwrap();
    assert_eq!(digest_lock_sessions(&db, &d1, true).len(), 1);
    drop(many);
    assert!(digest_lock_sessions(&db, &d1, true).is_empty());
    assert!(digest_lock_sessions(&db, &d2, true).is_empty());
    let (got, release, t) = lock_in_thread(&b, &d1);
    got.recv_timeout(Duration::from_secs(10))
        .expect("free after drop");
    drop(release);
    t.join().unwrap();

    // Connection killed while held: the server releases it; the waiter on B gets it.
    let held = a.digest_locks().lock(&d2).unwrap();
    let holder = digest_lock_sessions(&db, &d2, true);
    assert_eq!(holder.len(), 1);
    let (got, release, t) = lock_in_thread(&b, &d2);
    assert!(eventually(Duration::from_secs(10), || {
        digest_lock_sessions(&db, &d2, false).len() == 1
    }));
    let killed: bool = db
        .client()
        .query_one("SELECT pg_terminate_backend($1)", &[&holder[0]])
        .unwrap()
        .get(0);
    assert!(killed);
    got.recv_timeout(Duration::from_secs(10))
        .expect("the lock of a dead session goes to the waiter");
    // The holder finds out on release; its pool drops the dead connection and serves again.
    drop(held);
    drop(release);
    t.join().unwrap();
    let again = a.digest_locks().lock(&d2).expect("the pool reconnects");
    assert_eq!(digest_lock_sessions(&db, &d2, true).len(), 1);
    drop(again);
}

fn leaders(nodes: &[Option<Leader>]) -> usize {
    nodes.iter().flatten().filter(|l| l.is_leader()).count()
}

fn gauge(role: &str) -> i64 {
    let labels = kura::ops::metrics::RoleLabels { role: role.into() };
    kura::ops::metrics::global()
        .cluster_leader
        .get_or_create(&labels)
        .get()
}

#[test]
fn exactly_one_of_several_nodes_leads_and_another_takes_over_when_it_stops() {
    let (db, dir) = (TestDb::new(), tempfile::tempdir().unwrap());
    let retry = Duration::from_millis(200);
    let role = "gc-takeover-test";
    let regs: Vec<Registry> = (0..3).map(|_| node(&db, dir.path())).collect();
    let mut nodes: Vec<Option<Leader>> = regs
        .iter()
        .map(|r| Some(r.leader_retrying_every(role, retry)))
        .collect();
    assert!(eventually(Duration::from_secs(10), || leaders(&nodes) == 1));
    // Stable: for ten retry periods, never two.
    for _ in 0..20 {
        assert_eq!(leaders(&nodes), 1);
        assert_eq!(gauge(role), 1, "this process leads the role once");
        std::thread::sleep(retry / 2);
    }

    // The leader stops: another leads within a few retry periods.
    let first = nodes
        .iter()
        .position(|l| l.as_ref().unwrap().is_leader())
        .unwrap();
    let stopped = Instant::now();
    nodes[first] = None;
    assert!(eventually(Duration::from_secs(10), || leaders(&nodes) == 1));
    assert!(
        stopped.elapsed() < retry * 10,
        "took over in {:?}",
        stopped.elapsed()
    );
    assert!(eventually(Duration::from_secs(5), || gauge(role) == 1));

    // The new leader's connection dies: it gives the role up, and one node leads again.
    let holder: i32 = db
        .client()
        .query_one(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE d.datname = current_database() AND l.locktype = 'advisory'
               AND l.objsubid = 2 AND l.granted",
            &[],
        )
        .expect("one session holds the role")
        .get(0);
    db.client()
        .execute("SELECT pg_terminate_backend($1)", &[&holder])
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        let pids: Vec<i32> = db
            .client()
            .query(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE d.datname = current_database() AND l.locktype = 'advisory'
                   AND l.objsubid = 2 AND l.granted",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        pids.len() == 1 && pids[0] != holder && leaders(&nodes) == 1
    }));
    drop(nodes);
    assert!(eventually(Duration::from_secs(5), || gauge(role) == 0));
}

#[test]
fn a_node_alone_on_redb_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path()).unwrap();
    assert!(!r.digest_locks().is_cluster());
    let l = r.leader("redb-alone-test");
    assert!(l.is_leader());
    assert_eq!(gauge("redb-alone-test"), 1);
    drop(l);
    assert_eq!(gauge("redb-alone-test"), 0);
}

/// Every blob row of `r`'s metadata has its file.
fn rows_without_files(r: &Registry) -> Vec<String> {
    let rows: Vec<String> = r
        .meta()
        .read(|t| {
            let mut out = Vec::new();
            kura::meta::blobs::scan(t, |d, _| {
                out.push(d.to_string());
                Ok(true)
            })?;
            Ok(out)
        })
        .unwrap();
    rows.into_iter()
        .filter(|d| r.store().stat(&d.parse().unwrap()).unwrap().is_none())
        .collect()
}

#[test]
fn a_collector_on_one_node_never_unlinks_a_blob_a_second_node_republishes() {
    let (db, dir) = (TestDb::new(), tempfile::tempdir().unwrap());
    let (a, b) = (node(&db, dir.path()), node(&db, dir.path()));
    let repo = RepoName::parse("race/cluster").unwrap();
    let blobs: Vec<(Digest, Bytes)> = (0..3)
        .map(|i| {
            let data = Bytes::from(format!("blob {i} uploaded again and again"));
            (Digest::sha256_of(&data), data)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let uploading = Arc::new(AtomicBool::new(true));

    // Node B collects with no grace, pausing between each removal commit and its unlinks.
    let collector = {
        let (b, uploading) = (b.clone(), uploading.clone());
        std::thread::spawn(move || {
            let opts = GcOptions {
                grace: Duration::ZERO,
                after_commit: Some(Arc::new(|| std::thread::sleep(Duration::from_millis(3)))),
                ..GcOptions::default()
            };
            let (mut runs, mut removed) = (0, 0);
            while uploading.load(Ordering::Acquire) && Instant::now() < deadline && runs < 2000 {
                removed += kura::gc::collect(&b, &opts).expect("collect").blobs_removed;
                runs += 1;
            }
            removed
        })
    };

    // Node A uploads the blobs again and again; under its lock, a recorded blob has its file.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut rounds = 0;
    while rounds < 40 && Instant::now() < deadline {
        for (d, data) in &blobs {
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(data.clone())]);
            rt.block_on(a.put_blob(&repo, d, body)).expect("upload");
            let _g = a.digest_locks().lock(&d.to_string()).unwrap();
            let row = a
                .meta()
                .read(|t| kura::meta::blobs::get(t, &d.to_string()))
                .unwrap();
            if row.is_some() {
                assert!(
                    a.store().stat(d).unwrap().is_some(),
                    "{d} recorded without its file"
                );
            }
        }
        rounds += 1;
    }
    uploading.store(false, Ordering::Release);
    let removed = collector.join().unwrap();
    assert!(
        removed > 0,
        "the collector never removed a blob: no race was run"
    );
    assert_eq!(rows_without_files(&a), Vec::<String>::new());
}
