//! The metadata store's schema version and its migrations (`migrations/`).

use kura::meta::{Meta, OpenError, SCHEMA_VERSION};
use kura::migrations::{LATEST, MIGRATIONS, Migration};
use redb::TableDefinition;

const EXTRA: TableDefinition<&str, u64> = TableDefinition::new("extra");

fn add_extra(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(EXTRA)?.insert("seeded", 7)?;
    Ok(())
}

fn fail(_: &redb::WriteTransaction) -> Result<(), redb::Error> {
    Err(redb::StorageError::Io(std::io::Error::other("step failed on purpose")).into())
}

#[test]
fn fresh_store_is_created_at_the_latest_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
    assert_eq!(meta.schema_version().unwrap(), LATEST);
    assert_eq!(SCHEMA_VERSION, LATEST);
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, i as u64 + 1, "one step per version, in order");
    }
    // Every table of the initial schema exists and is readable.
    meta.read(|t| {
        assert!(kura::meta::repos::list(t, None, 10)?.0.is_empty());
        Ok(())
    })
    .unwrap();
}

#[test]
fn reopening_a_current_store_runs_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(Meta::open(&path).unwrap());
    let meta = Meta::open(&path).unwrap();
    assert_eq!(meta.schema_version().unwrap(), LATEST);
}

/// A store written by the first schema version, with blobs linked into repositories.
fn v1_store_with_links(path: &std::path::Path, links: &[(&str, &str)]) {
    drop(Meta::open_with(path, &MIGRATIONS[..1]).unwrap());
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(kura::meta::tables::REPO_BLOBS).unwrap();
        for (repo, digest) in links {
            t.insert((*repo, *digest), 1).unwrap();
        }
    }
    txn.commit().unwrap();
}

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn backward_compatibility_v1_store_is_upgraded_with_its_links_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    v1_store_with_links(&path, &[("a", D1), ("b", D1), ("b", D2)]);
    let meta = Meta::open(&path).unwrap();
    assert_eq!(meta.schema_version().unwrap(), LATEST);
    meta.read(|t| {
        assert_eq!(kura::meta::blobs::links_of(t, D1)?, vec!["a", "b"]);
        assert_eq!(kura::meta::blobs::links_of(t, D2)?, vec!["b"]);
        Ok(())
    })
    .unwrap();
}

/// Version 4 computes the `stats` counters once from the existing tables.
#[test]
fn backward_compatibility_v3_store_gets_its_blob_bytes_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(Meta::open_with(&path, &MIGRATIONS[..3]).unwrap());
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(kura::meta::tables::BLOBS).unwrap();
            t.insert(D1, (1000, 1, 5)).unwrap();
            t.insert(D2, (234, 0, 5)).unwrap();
        }
        txn.commit().unwrap();
    }
    let meta = Meta::open(&path).unwrap();
    assert_eq!(meta.schema_version().unwrap(), LATEST);
    let bytes = meta
        .read(|t| kura::meta::stats::get(t, kura::meta::stats::BLOB_BYTES))
        .unwrap();
    assert_eq!(bytes, 1234);
}

#[test]
fn pending_steps_run_in_order_when_an_older_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(Meta::open(&path).unwrap());
    let mut steps: Vec<Migration> = MIGRATIONS.to_vec();
    steps.push(Migration {
        version: LATEST + 1,
        name: "add extra table",
        apply: add_extra,
    });
    let meta = Meta::open_with(&path, &steps).unwrap();
    assert_eq!(meta.schema_version().unwrap(), LATEST + 1);
    drop(meta);
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let t = txn.open_table(EXTRA).unwrap();
    assert_eq!(
        redb::ReadableTable::get(&t, "seeded")
            .unwrap()
            .unwrap()
            .value(),
        7
    );
}

#[test]
fn a_failing_step_leaves_the_store_at_its_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    v1_store_with_links(&path, &[("a", D1)]);
    let mut steps: Vec<Migration> = MIGRATIONS.to_vec();
    steps.push(Migration {
        version: LATEST + 1,
        name: "add extra table",
        apply: add_extra,
    });
    steps.push(Migration {
        version: LATEST + 2,
        name: "broken",
        apply: fail,
    });
    assert!(Meta::open_with(&path, &steps).is_err());
    // Every pending step ran in the transaction that failed, so all were rolled back.
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn.open_table(kura::meta::tables::META).unwrap();
    assert_eq!(
        redb::ReadableTable::get(&meta, "schema_version")
            .unwrap()
            .unwrap()
            .value(),
        1
    );
    assert!(txn.open_table(EXTRA).is_err());
    assert!(txn.open_table(kura::meta::tables::BLOB_LINKS).is_err());
}

#[test]
fn store_written_by_a_newer_kura_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let future = [
        Migration {
            version: 1,
            name: "initial",
            apply: MIGRATIONS[0].apply,
        },
        Migration {
            version: LATEST + 5,
            name: "from the future",
            apply: add_extra,
        },
    ];
    drop(Meta::open_with(&path, &future).unwrap());
    let err = Meta::open(&path)
        .err()
        .expect("newer store must be refused");
    assert!(
        matches!(err, OpenError::NewerSchema { found, supported, .. } if found == LATEST + 5 && supported == LATEST)
    );
    let msg = err.to_string();
    assert!(msg.contains("newer kura"), "{msg}");
    // And the registry refuses to open on it.
    assert!(kura::registry::Registry::open(dir.path()).is_err());
}

#[test]
fn a_store_in_use_by_another_process_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let _held = Meta::open(&path).unwrap();
    let err = Meta::open(&path).err().expect("second open must fail");
    assert!(err.to_string().contains("in use"), "{err}");
}
