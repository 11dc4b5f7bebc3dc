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
