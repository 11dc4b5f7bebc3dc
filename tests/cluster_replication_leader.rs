//! Push replication on a cluster: three `kura serve` children on one PostgreSQL database and
//! one bucket, each configured with the same `[[replication.push]]` target (a plain kura), and
//! only the node leading `replication:<name>` applies the queue; when it is killed (SIGKILL)
//! another takes over and applies the rest. Every loop is bounded in count and time.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{self, Node, wait_leader};
use common::pg::TestDb;
use common::rt;
use common::s3::{data, delete_prefix, s3_config};
use common::s3_ops::{Pushed, assert_serves, push_image_at};
use serde_json::Value;

/// Waits (at most 60 s) until the queue of target `dr` is empty: all applied and dequeued.
async fn drained(db: &TestDb) {
    let until = Instant::now() + Duration::from_secs(60);
    let queued = || {
        std::thread::scope(|s| {
            s.spawn(|| {
                let sql = "SELECT count(*) FROM notifications WHERE endpoint = 'replication:dr'";
                db.client().query_one(sql, &[]).unwrap().get::<_, i64>(0)
            })
            .join()
            .unwrap()
        })
    };
    while queued() > 0 {
        assert!(
            Instant::now() < until,
            "replication queue not drained in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events node `n` applied to target `dr` since it started (`GET /admin/replication`).
async fn applied(n: &Node) -> u64 {
    let r = common::client()
        .get(n.url("/admin/replication"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "replication status of {}", n.base);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["push"][0]["name"], "dr", "{st}");
    st["push"][0]["replicated"].as_u64().unwrap()
}

async fn push(n: &Node, tag: &str, seed: u64) -> Pushed {
    let layer = data(900 + seed as usize, seed);
    push_image_at(&n.base, "rep/app", tag, &[layer]).await
}

#[test]
fn only_the_replication_leader_applies_the_queue_and_a_new_leader_takes_over_when_it_is_killed() {
    let db = TestDb::new();
    let storage = s3_config("cluster-repl-leader");
    let work = tempfile::tempdir().unwrap();
    let target_root = tempfile::tempdir().unwrap();
    let (_target, target) = common::spawn_kura_guarded(target_root.path(), &[]);
    let cfg = work.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[replication.push]]\nname = \"dr\"\nurl = \"{target}\"\nrepositories = [\"rep/*\"]\n\
             backoff = \"100ms\"\nmax_backoff = \"500ms\"\n"
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| cluster::start_node_with(&storage, &db.url, &["--config", &cfg], &[]))
        .collect();
    rt().block_on(async {
        let all: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&all, "replication:dr", Duration::from_secs(30)).await;
        // Phase 1: nine pushes spread over the three nodes; the leader applies each event
        // once, the followers none.
        let mut images = Vec::new();
        for i in 0..9 {
            images.push(push(&nodes[i % 3], &format!("a{i}"), 10 + i as u64).await);
        }
        drained(&db).await;
        for (i, n) in nodes.iter().enumerate() {
            let want = if i == leader { 9 } else { 0 };
            assert_eq!(
                applied(n).await,
                want,
                "events applied by node {i} (leader {leader})"
            );
        }
        // Phase 2: the leader is killed between pushes on the other two nodes.
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        for i in 0..9 {
            if i == 3 {
                nodes[leader].proc.kill();
            }
            let n = &nodes[others[i % 2]];
            images.push(push(n, &format!("b{i}"), 50 + i as u64).await);
        }
        let rest: Vec<&Node> = others.iter().map(|&i| &nodes[i]).collect();
        let new = others[wait_leader(&rest, "replication:dr", Duration::from_secs(30)).await];
        drained(&db).await;
        // At least once across the death: the new leader applies the six events queued after
        // the kill, and those of the three before it the old leader had not dequeued.
        for &i in &others {
            let got = applied(&nodes[i]).await;
            if i == new {
                assert!(
                    (6..=9).contains(&got),
                    "the new leader applied {got} events"
                );
            } else {
                assert_eq!(got, 0, "the follower node {i} applied events");
            }
        }
        // Every image pushed reached the target whole.
        for img in &images {
            assert_serves(&target, img).await;
        }
    });
    cluster::fsck_clean(&cluster::config_file(work.path(), &storage, &db.url));
    drop(nodes);
    delete_prefix(&storage.prefix);
}
