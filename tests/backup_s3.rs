//! `kura backup` of a registry whose blobs are in a bucket (the real gateway, Ceph RGW;
//! tests/common/s3.rs): blobs are read through the S3 driver, the backup restores onto the
//! filesystem, and a second backup copies only the new blobs.

mod common;

use common::s3::{data, s3_config};
use common::s3_ops::*;
use common::{TestServer, client, kura_cmd, spawn_kura_guarded};
use kura::backup::BackupReport;

async fn backup_through_admin(s: &TestServer, dest: &std::path::Path) -> BackupReport {
    let r = client()
        .post(s.url(&format!("/admin/backup?dest={}", dest.display())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_store_backs_up_incrementally_and_restores_onto_the_filesystem() {
    let s3 = s3_config("backup");
    let s = TestServer::start_on(&s3).await;
    // A layer over one part, a small one and an empty one.
    let a = push_image_at(
        &s.base,
        "team/app",
        "v1",
        &[data(6 * MIB, 1), data(1000, 2), Vec::new()],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("bk");
    let first = backup_through_admin(&s, &dest).await;
    assert_eq!((first.blobs, first.copied, first.reused), (5, 5, 0));
    // Shares the small layer: config, one new layer and the manifest are new.
    let b = push_image_at(&s.base, "team/tool", "v2", &[data(1000, 2), data(3000, 4)]).await;
    let second = backup_through_admin(&s, &dest).await;
    assert_eq!((second.blobs, second.copied, second.reused), (8, 3, 5));

    let restored = tmp.path().join("new");
    let (ok, out, err) = kura_cmd(&[
        "restore",
        dest.to_str().unwrap(),
        "--root",
        restored.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kura_cmd(&["fsck", "--quiet", "--root", restored.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (_kura, base) = spawn_kura_guarded(&restored, &["--gc-interval", "0s"]);
    assert_serves(&base, &a).await;
    assert_serves(&base, &b).await;
    // The restored store keeps its blobs on the filesystem.
    assert!(restored.join("blobs/sha256").read_dir().unwrap().count() == 8);
    common::s3::delete_prefix(&s3.prefix);
}
