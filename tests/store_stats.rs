//! Store totals kept as counters (`stats` table, schema v4): `blob_bytes` follows every change
//! of the `blobs` table in the same transaction, `/metrics` reports it without scanning,
//! `kura fsck` checks it and `--repair` fixes it.

mod common;

use common::*;

/// The sum of the `blobs` sizes by a full scan, and the counter.
fn bytes(reg: &kura::registry::Registry) -> (u64, u64) {
    reg.meta()
        .read(|t| {
            let mut sum = 0;
            kura::meta::blobs::scan(t, |_, row| {
                sum += row.size;
                Ok(true)
            })?;
            Ok((
                sum,
                kura::meta::stats::get(t, kura::meta::stats::BLOB_BYTES)?,
            ))
        })
        .unwrap()
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bytes_counter_follows_pushes_repushes_deletes_and_collection() {
    let s = TestServer::start().await;
    let check = |what: &str| {
        let (sum, counter) = bytes(&s.registry);
        assert_eq!(counter, sum, "after {what}");
        sum
    };
    assert_eq!(check("nothing"), 0);
    let (_, a) = push_image(&s, "app", "v1", &[b"layer one", &[9u8; 100_000]]).await;
    let after_push = check("a push");
    assert!(after_push > 100_000);
    // The same content again, and in another repository: nothing new is stored.
    push_image(&s, "app", "v1", &[b"layer one", &[9u8; 100_000]]).await;
    push_image(&s, "other", "v1", &[b"layer one"]).await;
    let grown = check("re-pushes");
    assert_eq!(
        metric(&s, "kura_blob_bytes").await as u64,
        grown,
        "/metrics reports the counter"
    );
    let r = client()
        .delete(s.url(&format!("/v2/app/manifests/{a}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    check("a manifest delete");
    let report = kura::gc::collect(
        &s.registry,
        &kura::gc::GcOptions {
            grace: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.blobs_removed > 0);
    assert!(check("collection") < grown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_reports_a_wrong_blob_bytes_counter_and_repair_fixes_it() {
    let s = TestServer::start().await;
    push_image(&s, "app", "v1", &[b"layer"]).await;
    let (sum, _) = bytes(&s.registry);
    s.registry
        .meta()
        .write(|t| kura::meta::stats::set(t, kura::meta::stats::BLOB_BYTES, sum + 12345))
        .unwrap();
    let report = kura::fsck::fsck(&s.registry, false, false).unwrap();
    assert!(
        report.errors.iter().any(|e| e.contains("blob_bytes")),
        "{:?}",
        report.errors
    );
    let report = kura::fsck::fsck(&s.registry, true, false).unwrap();
    assert!(report.repaired.iter().any(|e| e.contains("blob_bytes")));
    assert_eq!(bytes(&s.registry), (sum, sum));
    assert!(
        kura::fsck::fsck(&s.registry, false, false)
            .unwrap()
            .errors
            .is_empty()
    );
}
