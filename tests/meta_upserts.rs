//! What a replacing write answers, on both backends: a blob row's and a tag's upsert return
//! the value they replaced (none for a new one), also when the same transaction wrote it
//! just before; `stats.blob_bytes` is kept from that answer.

mod common;

use kura::meta::blobs::{self, BlobRow};
use kura::meta::{Meta, stats, tags};

fn on_redb(f: fn(&Meta)) {
    let dir = tempfile::tempdir().unwrap();
    f(&Meta::open(&dir.path().join("meta.redb")).unwrap());
}

fn on_postgres(f: fn(&Meta)) {
    let db = common::pg::TestDb::new();
    f(&Meta::open_postgres(&db.url, 2).unwrap());
}

fn blob_row(size: u64) -> BlobRow {
    BlobRow {
        size,
        refs: 0,
        touched: 1,
    }
}

fn bytes(m: &Meta) -> u64 {
    m.read(|t| stats::get(t, stats::BLOB_BYTES)).unwrap()
}

fn a_blob_rows_upsert_replaces_the_size_it_counted(m: &Meta) {
    m.write(|t| blobs::put(t, "sha256:a", blob_row(10)))
        .unwrap();
    assert_eq!(bytes(m), 10);
    // Replaced twice in one transaction: each put counts what the previous one wrote.
    m.write(|t| {
        blobs::put(t, "sha256:a", blob_row(7))?;
        blobs::put(t, "sha256:a", blob_row(30))?;
        blobs::put(t, "sha256:b", blob_row(5))
    })
    .unwrap();
    assert_eq!(bytes(m), 35);
    let got = m.read(|t| blobs::get(t, "sha256:a")).unwrap();
    assert_eq!(got.map(|r| (r.size, r.touched)), Some((30, 1)));
    m.write(|t| blobs::put(t, "sha256:b", blob_row(1))).unwrap();
    assert_eq!(bytes(m), 31);
}

fn a_tags_upsert_answers_the_digest_it_replaced(m: &Meta) {
    let (first, second) = m
        .write(|t| {
            let first = tags::set(t, "r", "v1", "sha256:1")?;
            let second = tags::set(t, "r", "v1", "sha256:2")?;
            Ok((first, second))
        })
        .unwrap();
    assert_eq!(first, None);
    assert_eq!(second.as_deref(), Some("sha256:1"));
    let third = m.write(|t| tags::set(t, "r", "v1", "sha256:3")).unwrap();
    assert_eq!(third.as_deref(), Some("sha256:2"));
    let other = m.write(|t| tags::set(t, "r", "v2", "sha256:3")).unwrap();
    assert_eq!(other, None, "another tag of the repository is a new row");
    let now = m.read(|t| tags::get(t, "r", "v1")).unwrap();
    assert_eq!(now.as_deref(), Some("sha256:3"));
}

#[test]
fn a_blob_rows_upsert_replaces_the_size_it_counted_on_redb() {
    on_redb(a_blob_rows_upsert_replaces_the_size_it_counted);
}

#[test]
fn a_blob_rows_upsert_replaces_the_size_it_counted_on_postgres() {
    on_postgres(a_blob_rows_upsert_replaces_the_size_it_counted);
}

#[test]
fn a_tags_upsert_answers_the_digest_it_replaced_on_redb() {
    on_redb(a_tags_upsert_answers_the_digest_it_replaced);
}

#[test]
fn a_tags_upsert_answers_the_digest_it_replaced_on_postgres() {
    on_postgres(a_tags_upsert_answers_the_digest_it_replaced);
}
