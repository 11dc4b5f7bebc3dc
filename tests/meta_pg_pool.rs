//! The PostgreSQL metadata pool's checkout: a busy pool makes a transaction wait for a
//! connection (it does not fail it), while an unreachable database fails it at once
//! (`src/meta/pg/reach.rs`; the node-level outage is `tests/pg_outage.rs`).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::pg::TestDb;
use common::pg_private::PrivatePg;
use kura::error::Code;
use kura::meta::pg::PgMeta;

/// Much longer than the pool's look at whether the database is reachable (100 ms).
const HELD: Duration = Duration::from_millis(1500);

#[test]
fn a_transaction_waits_for_the_busy_pools_connection_instead_of_failing() {
    let db = TestDb::new();
    let meta = Arc::new(PgMeta::open(&db.url, 1).unwrap());
    let started = Arc::new(Barrier::new(2));
    let holder = std::thread::spawn({
        let (meta, started) = (meta.clone(), started.clone());
        move || {
            meta.write(|tx| {
                tx.query_one("SELECT 1", &[])?;
                started.wait();
                std::thread::sleep(HELD);
                Ok(())
            })
            .unwrap()
        }
    });
    started.wait();
    let t = Instant::now();
    let n: i32 = meta
        .read(|tx| Ok(tx.query_one("SELECT 2", &[])?.get(0)))
        .expect("the read waits for the one connection");
    assert_eq!(n, 2);
    assert!(
        t.elapsed() >= HELD / 2,
        "the read ran while the only connection was held ({:?})",
        t.elapsed()
    );
    holder.join().unwrap();
}

#[test]
fn a_transaction_fails_at_once_with_503_while_the_database_is_down_and_runs_once_it_is_back() {
    let pg = PrivatePg::start();
    let meta = PgMeta::open(&pg.url(), 2).unwrap();
    let one = || meta.read(|tx| Ok(tx.query_one("SELECT 1", &[])?.get::<_, i32>(0)));
    assert_eq!(one().unwrap(), 1);
    pg.down();
    for _ in 0..3 {
        let t = Instant::now();
        let e = one().expect_err("no database");
        assert_eq!(e.code, Code::Unavailable, "{e}");
        assert_eq!(e.status.as_u16(), 503, "{e}");
        assert!(
            e.headers.iter().any(|(h, _)| *h == "Retry-After"),
            "{e}: no Retry-After"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }
    pg.up();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match one() {
            Ok(n) => break assert_eq!(n, 1),
            Err(e) => assert!(Instant::now() < until, "still failing 30 s after: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ends every server process kura's pool has open on `db` (as a PostgreSQL restart or an
/// operator's `pg_terminate_backend` does) and waits until they are gone. Again while any
/// is left: a connection the pool was opening meanwhile may turn up after the first round.
fn terminate_pooled_connections(db: &TestDb) {
    let mut c = db.client();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'kura'",
            &[],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if pooled_states(db).is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "the terminated processes did not end"
        );
    }
}

/// The state (`pg_stat_activity.state`) of each connection of kura's pool to `db`.
fn pooled_states(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT coalesce(state, '') FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'kura'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn counter(meta: &PgMeta) -> i64 {
    meta.read(|tx| {
        Ok(tx
            .query_opt("SELECT value FROM stats WHERE name = 'n'", &[])?
            .map_or(0, |r| r.get(0)))
    })
    .unwrap()
}

fn increment(meta: &PgMeta) -> kura::error::Result<()> {
    meta.write(|tx| {
        tx.execute(
            "INSERT INTO stats (name, value) VALUES ('n', 1)
             ON CONFLICT (name) DO UPDATE SET value = stats.value + 1",
            &[],
        )?;
        Ok(())
    })
}

#[test]
fn reads_and_writes_run_on_a_live_connection_after_the_pooled_ones_died_idle() {
    let db = TestDb::new();
    let meta = PgMeta::open(&db.url, 2).unwrap();
    for round in 1..=5i64 {
        // Both pooled connections busy at once, so the pool holds two to lose.
        std::thread::scope(|s| {
            let a = s.spawn(|| increment(&meta));
            let b = s.spawn(|| counter(&meta));
            a.join().unwrap().expect("write before the termination");
            b.join().unwrap();
        });
        let before = counter(&meta);
        assert_eq!(before, 2 * round - 1, "round {round}");
        terminate_pooled_connections(&db);
        assert_eq!(counter(&meta), before, "a read after the termination");
        terminate_pooled_connections(&db);
        increment(&meta).expect("a write after the termination");
        assert_eq!(counter(&meta), before + 1, "the write applied exactly once");
    }
}

#[test]
fn no_connection_stays_inside_a_transaction_after_reads_and_writes_end() {
    let db = TestDb::new();
    let meta = PgMeta::open(&db.url, 1).unwrap();
    increment(&meta).unwrap();
    // A read that fails after its first statement, one whose statement fails, and a write
    // that fails: each leaves its one connection for the next transaction.
    let e = meta.read(|tx| {
        tx.query_one("SELECT 1", &[])?;
        Err::<(), _>(kura::error::Error::new(Code::Unknown, "the caller gave up"))
    });
    assert!(e.is_err());
    // Another node commits: the next read must see it, not the failed read's snapshot.
    db.client()
        .execute("UPDATE stats SET value = 41 WHERE name = 'n'", &[])
        .unwrap();
    assert_eq!(counter(&meta), 41, "a read saw an earlier read's snapshot");
    assert!(
        meta.read(|tx| tx.query_one("SELECT * FROM no_such_table", &[]))
            .is_err()
    );
    assert!(
        meta.write(|tx| tx.execute("INSERT INTO no_such_table VALUES (1)", &[]))
            .is_err()
    );
    increment(&meta).unwrap();
    assert_eq!(counter(&meta), 42);
    // The read's COMMIT is not waited for; it goes out at once, so the connection is idle
    // (not "idle in transaction", holding a snapshot) within moments.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let states = pooled_states(&db);
        if states.iter().all(|s| s == "idle") {
            assert_eq!(states.len(), 1, "{states:?}");
            break;
        }
        assert!(Instant::now() < until, "connection left {states:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
