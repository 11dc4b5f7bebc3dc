//! The PostgreSQL metadata store (`src/meta/pg/`) against a real PostgreSQL server
//! (`tests/common/pg.rs`): migrations, transactions and connection errors.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use common::pg::{TestDb, ledger, stat, steps_with_counter, with_database};
use kura::error::Result;
use kura::meta::pg::{MIGRATIONS, PgMeta, PgOpenError, Tx};
use redb::TableHandle;

#[test]
fn migrations_apply_once_and_record_their_versions() {
    let db = TestDb::new();
    drop(PgMeta::open(&db.url, 2).expect("first open"));
    let first = ledger(&db);
    let expected: Vec<(i64, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_string()))
        .collect();
    let got: Vec<(i64, String)> = first.iter().map(|(v, n, _)| (*v, n.clone())).collect();
    assert_eq!(got, expected);

    // A kura with one more step applies only that one, once, however often it opens.
    let steps = steps_with_counter();
    for _ in 0..3 {
        drop(PgMeta::open_with(&db.url, 2, &steps).expect("open with the new step"));
    }
    let after = ledger(&db);
    assert_eq!(after.len(), steps.len());
    assert_eq!(
        after[..first.len()],
        first[..],
        "applied steps were not re-run"
    );
    assert_eq!(after.last().unwrap().1, "count_runs");
    let meta = PgMeta::open_with(&db.url, 2, &steps).unwrap();
    assert_eq!(stat(&meta, "migration_runs"), Some(1));
}

#[test]
fn nodes_opening_at_once_migrate_exactly_once() {
    let db = TestDb::new();
    let steps = Arc::new(steps_with_counter());
    const NODES: usize = 8;
    let barrier = Arc::new(Barrier::new(NODES));
    let opened: Vec<_> = (0..NODES)
        .map(|_| {
            let (url, steps, barrier) = (db.url.clone(), steps.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgMeta::open_with(&url, 1, &steps).map(drop)
            })
        })
        .collect();
    for node in opened {
        node.join().unwrap().expect("every node opens");
    }
    let versions: Vec<i64> = ledger(&db).iter().map(|(v, _, _)| *v).collect();
    assert_eq!(
        versions,
        steps.iter().map(|s| s.version).collect::<Vec<_>>()
    );
    let meta = PgMeta::open_with(&db.url, 1, &steps).unwrap();
    assert_eq!(stat(&meta, "migration_runs"), Some(1));
}

#[test]
fn a_newer_schema_is_refused_naming_the_versions() {
    let db = TestDb::new();
    drop(PgMeta::open(&db.url, 1).unwrap());
    db.client()
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES (99, 'from_the_future')",
            &[],
        )
        .unwrap();
    let err = PgMeta::open(&db.url, 1)
        .err()
        .expect("a newer schema is refused");
    let latest = MIGRATIONS.last().unwrap().version as u64;
    assert!(
        matches!(err, PgOpenError::NewerSchema { found: 99, supported, .. } if supported == latest),
        "{err:?}"
    );
    let msg = err.to_string();
    for part in [
        "written by a newer kura",
        "schema version 99",
        &format!("supports up to {latest}"),
        "upgrade kura",
        &db.name,
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn every_redb_table_has_a_table_with_byte_ordered_keys() {
    use kura::meta::tables::*;
    let db = TestDb::new();
    let meta = PgMeta::open(&db.url, 1).unwrap();
    let redb: BTreeSet<String> = [
        REPOSITORIES.name(),
        BLOBS.name(),
        REPO_BLOBS.name(),
        BLOB_LINKS.name(),
        MANIFESTS.name(),
        TAGS.name(),
        REFERRERS.name(),
        UPLOADS.name(),
        NOTIFICATIONS.name(),
        STATS.name(),
        SETTINGS.name(),
        DEFERRED_REFS.name(),
        MIRROR_TAGS.name(),
        MIRROR_PULLS.name(),
        USAGE.name(),
        SCOPE_BLOBS.name(),
        TAG_PULLS.name(),
        TAG_PUSHES.name(),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let (tables, unordered) = meta
        .read(|tx| {
            let tables: BTreeSet<String> = tx
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = 'public' AND table_name <> 'schema_migrations'",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Key columns (any column of a primary key) of type text not collated "C".
            let unordered: Vec<String> = tx
                .query(
                    "SELECT k.table_name || '.' || k.column_name
                     FROM information_schema.key_column_usage k
                     JOIN information_schema.columns c USING (table_schema, table_name, column_name)
                     WHERE k.table_schema = 'public' AND c.data_type = 'text'
                       AND c.collation_name IS DISTINCT FROM 'C'",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok((tables, unordered))
        })
        .unwrap();
    // redb's `meta` (the schema version) is `schema_migrations` here.
    let expected: BTreeSet<String> = redb.into_iter().filter(|t| t != "meta").collect();
    assert_eq!(tables, expected);
    assert!(
        unordered.is_empty(),
        "keys not in byte order: {unordered:?}"
    );

    // And so tags list in redb's order: bytes, not a locale's.
    let tags = ["b", "B", "_x", "a-1", "a.1", "a", "Z9", "é"];
    meta.write(|tx| {
        for t in tags {
            tx.execute(
                "INSERT INTO tags (repo, tag, digest) VALUES ('r', $1, 'sha256:0')",
                &[&t],
            )?;
        }
        Ok(())
    })
    .unwrap();
    let listed: Vec<String> = meta
        .read(|tx| {
            let rows = tx.query("SELECT tag FROM tags WHERE repo = 'r' ORDER BY tag", &[])?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .unwrap();
    let mut sorted: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    sorted.sort();
    assert_eq!(listed, sorted);
}

/// One read-modify-write of counter `n`, with a pause between read and write so that
/// concurrent ones overlap.
fn increment(tx: &Tx) -> Result<()> {
    let v: i64 = tx
        .query_opt("SELECT value FROM stats WHERE name = 'n'", &[])?
        .map_or(0, |r| r.get(0));
    std::thread::sleep(std::time::Duration::from_millis(1));
    tx.execute(
        "INSERT INTO stats (name, value) VALUES ('n', $1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[&(v + 1)],
    )?;
    Ok(())
}

#[test]
fn concurrent_read_modify_write_transactions_are_retried_and_lose_no_update() {
    let db = TestDb::new();
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let meta = Arc::new(PgMeta::open(&db.url, THREADS as u32).unwrap());
    let runs = Arc::new(AtomicU64::new(0));
    let most_runs_of_one = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (meta, runs, most, barrier) = (
                meta.clone(),
                runs.clone(),
                most_runs_of_one.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..EACH {
                    let mut mine = 0;
                    meta.write(|tx| {
                        mine += 1;
                        runs.fetch_add(1, Ordering::Relaxed);
                        increment(tx)
                    })
                    .expect("every increment commits");
                    most.fetch_max(mine, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let total = (THREADS * EACH) as u64;
    assert_eq!(stat(&meta, "n"), Some(total as i64), "an update was lost");
    let runs = runs.load(Ordering::Relaxed);
    assert!(runs > total, "no transaction was retried ({runs} runs)");
    // A retry runs while no other write does, so it commits: no writer starves.
    assert_eq!(most_runs_of_one.load(Ordering::Relaxed), 2);
}

#[test]
fn the_pool_holds_at_most_pool_size_connections() {
    let db = TestDb::new();
    const POOL: u32 = 2;
    let meta = Arc::new(PgMeta::open(&db.url, POOL).unwrap());
    let barrier = Arc::new(Barrier::new(6));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (meta, barrier) = (meta.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                meta.write(|tx| {
                    // Held a while, so the other workers wait for a connection.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    let n: i64 = tx
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity
                             WHERE datname = current_database() AND application_name = 'kura'",
                            &[],
                        )?
                        .get(0);
                    Ok(n)
                })
                .unwrap()
            })
        })
        .collect();
    let seen: Vec<i64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(seen.iter().max(), Some(&(POOL as i64)), "{seen:?}");
}

#[test]
fn an_error_of_the_transaction_rolls_it_back_without_a_retry() {
    let db = TestDb::new();
    let meta = PgMeta::open(&db.url, 1).unwrap();
    let mut runs = 0;
    let err = meta
        .write(|tx| {
            runs += 1;
            tx.execute("INSERT INTO stats (name, value) VALUES ('x', 1)", &[])?;
            Err::<(), _>(kura::error::Error::new(
                kura::error::Code::NameUnknown,
                "refused",
            ))
        })
        .unwrap_err();
    assert_eq!((err.code, runs), (kura::error::Code::NameUnknown, 1));
    assert_eq!(stat(&meta, "x"), None);

    // A failed statement whose error the transaction ignores: nothing is committed.
    let err = meta
        .write(|tx| {
            tx.execute("INSERT INTO stats (name, value) VALUES ('y', 1)", &[])?;
            let _ = tx.execute("INSERT INTO stats (name, value) VALUES ('z', -1)", &[]);
            Ok(())
        })
        .unwrap_err();
    assert!(err.message.contains("metadata database"), "{}", err.message);
    assert_eq!(stat(&meta, "y"), None);
}

#[test]
fn a_read_sees_one_snapshot() {
    let db = TestDb::new();
    let meta = PgMeta::open(&db.url, 1).unwrap();
    meta.write(|tx| {
        tx.execute("INSERT INTO stats (name, value) VALUES ('v', 1)", &[])?;
        Ok(())
    })
    .unwrap();
    let (before, after_commit) = meta
        .read(|tx| {
            let get = || -> Result<i64> {
                Ok(tx
                    .query_one("SELECT value FROM stats WHERE name = 'v'", &[])?
                    .get(0))
            };
            let before = get()?;
            // Another node commits a change while the read is open.
            db.client()
                .execute("UPDATE stats SET value = 2 WHERE name = 'v'", &[])
                .unwrap();
            Ok((before, get()?))
        })
        .unwrap();
    assert_eq!(
        (before, after_commit),
        (1, 1),
        "the read saw a later commit"
    );
    assert_eq!(stat(&meta, "v"), Some(2), "a new read sees it");

    // A read cannot write.
    let err = meta
        .read(|tx| tx.execute("UPDATE stats SET value = 3 WHERE name = 'v'", &[]))
        .unwrap_err();
    assert!(err.message.contains("read-only"), "{}", err.message);
    assert_eq!(stat(&meta, "v"), Some(2));
}

const PASSWORD: &str = "s3cr3t-Passw0rd";

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://kura:{PASSWORD}@127.0.0.1:{port}/kuradb");
    let err = PgMeta::open(&url, 1).err().expect("nothing listens there");
    assert!(matches!(err, PgOpenError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("postgres://kura@127.0.0.1:{port}/kuradb")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    assert!(
        !msg.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD),
        "{msg}"
    );
}

#[test]
fn a_missing_database_is_a_clear_error_without_the_password() {
    // The test server's host and port, as superuser `postgres` with a password (which trust
    // authentication ignores) and a database that does not exist.
    let server = with_database(common::pg::server_url(), "kura_no_such_database");
    let host_and_db = &server[server.rfind('@').map_or("postgres://".len(), |i| i + 1)..];
    let url = format!("postgres://postgres:{PASSWORD}@{host_and_db}");
    let err = PgMeta::open(&url, 1).err().expect("no such database");
    assert!(matches!(err, PgOpenError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/kura_no_such_database"), "{msg}");
    assert!(
        msg.contains("FATAL"),
        "the server's own message is kept: {msg}"
    );
    assert!(
        !msg.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD),
        "{msg}"
    );
}

#[test]
fn a_malformed_url_is_refused_without_the_password() {
    let url = format!("postgres://kura:{PASSWORD}@127.0.0.1:not-a-port/kuradb");
    let err = PgMeta::open(&url, 1)
        .err()
        .expect("the port is not a number");
    assert!(matches!(err, PgOpenError::Url { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("port"), "{msg}");
    assert!(
        !msg.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD),
        "{msg}"
    );
}
