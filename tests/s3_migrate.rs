//! `kura migrate-storage` from a filesystem store into a bucket and back, against the real
//! gateway (Ceph RGW; tests/common/s3.rs): counts, the config switch, resume, corrupt or missing
//! sources, a running server, sessions in progress.

mod common;

use std::path::Path;

use common::s3::{BUCKET, data, s3_config};
use common::s3_ops::*;
use common::{client, spawn_kura_guarded};
use kura::config::StorageConfig;
use kura::digest::Digest;
use object_store::path::Path as Key;

// ---------------------------------------------------------------------------------------
// kura migrate-storage
// ---------------------------------------------------------------------------------------

/// The `[storage]` section of the destination file, as an operator writes it.
fn s3_toml(cfg: &StorageConfig) -> String {
    format!(
        "# the bucket\n[storage]\nkind = \"s3\"\nbucket = {:?}\nprefix = {:?}\nendpoint = {:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\npart_size = {}\n",
        cfg.bucket,
        cfg.prefix,
        cfg.endpoint,
        cfg.region,
        cfg.access_key_id,
        cfg.secret_access_key,
        cfg.part_size
    )
}

/// A registry's config file on the filesystem driver, with comments and a `delete` key.
fn fs_toml(root: &Path) -> String {
    format!(
        "# kura of the migration test\nroot = {:?}\n\n# where the blobs live\n[storage]\nkind = \"filesystem\" # the default\ndelete = false\n\n[gc]\n# nightly\ngrace = \"2h\"\n",
        root.display().to_string()
    )
}

/// Runs `kura migrate-storage --config kura.toml --to s3.toml [extra]`: (success, stdout,
/// stderr).
fn migrate(dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let (config, to) = (dir.join("kura.toml"), dir.join("s3.toml"));
    let mut args = vec![
        "migrate-storage",
        "--config",
        config.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    common::kura_cmd(&args)
}

/// A filesystem registry under `<dir>/root` with two images (layers of 6 MiB, so the copies
/// are multipart uploads of one part and a tail, and small ones), pushed through a
/// `kura serve` that is stopped again; its config file and the destination's are written.
async fn filesystem_registry(dir: &Path, s3: &StorageConfig) -> Vec<Pushed> {
    let root = dir.join("root");
    std::fs::write(dir.join("kura.toml"), fs_toml(&root)).unwrap();
    std::fs::write(dir.join("s3.toml"), s3_toml(s3)).unwrap();
    let (mut kura, base) = spawn_kura_guarded(&root, &[]);
    let a = push_image_at(&base, "team/app", "v1", &[data(6 * MIB, 1), data(1000, 2)]).await;
    // A layer shared with the first image, and another one over a part.
    let b = push_image_at(
        &base,
        "team/tool",
        "v2",
        &[data(1000, 2), data(5 * MIB + 17, 3), Vec::new()],
    )
    .await;
    kura.kill();
    vec![a, b]
}

fn distinct_blobs(images: &[Pushed]) -> usize {
    let mut all: Vec<&Digest> = images.iter().flat_map(|i| i.blobs.keys()).collect();
    let manifests: Vec<Digest> = images
        .iter()
        .map(|i| Digest::sha256_of(&i.manifest))
        .collect();
    all.extend(manifests.iter());
    all.sort();
    all.dedup();
    all.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_copies_every_blob_into_the_bucket_resumably_then_serves_from_it() {
    let s3 = s3_config("migrate");
    let tmp = tempfile::tempdir().unwrap();
    let images = filesystem_registry(tmp.path(), &s3).await;
    // Config blobs, layers (one shared, one empty) and the manifests: all recorded blobs.
    let n = distinct_blobs(&images);
    assert_eq!(n, 8);
    let config = tmp.path().join("kura.toml");
    let original = std::fs::read_to_string(&config).unwrap();

    // A first run that only copies: every blob copied, the config left alone.
    let (ok, out, err) = migrate(tmp.path(), &["--no-switch"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        !out.contains(&s3.secret_access_key) && !err.contains(&s3.secret_access_key),
        "the secret key was printed:\n{out}\n{err}"
    );
    assert!(
        out.contains(&format!("{n} blobs: {n} copied (")),
        "first run: {out}"
    );
    assert!(out.contains(", 0 already there, 0 failed"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!tmp.path().join("kura.toml.bak").exists());
    let copied = keys(&s3.prefix, "blobs").await;
    assert_eq!(copied.len(), n, "{copied:?}");
    // Each copy went through an upload session, and none is left behind.
    assert_eq!(keys(&s3.prefix, "uploads").await, Vec::<String>::new());

    // One object lost (an interrupted run): the next run copies it alone.
    let (lost, lost_bytes) = images[0].blobs.iter().find(|(_, b)| b.len() > MIB).unwrap();
    delete_object(&blob_key(&s3.prefix, lost)).await;
    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{n} blobs: 1 copied ({} bytes), {} already there, 0 failed",
            lost_bytes.len(),
            n - 1
        )),
        "second run: {out}"
    );
    assert_eq!(keys(&s3.prefix, "blobs").await, copied);

    // The config now names the bucket; everything else in it, comments too, is kept.
    let switched = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("kura.toml.bak")).unwrap(),
        original
    );
    let parsed: toml::Table = switched.parse().unwrap();
    let storage = parsed["storage"].as_table().unwrap();
    assert_eq!(storage["kind"].as_str(), Some("s3"), "{switched}");
    assert_eq!(storage["bucket"].as_str(), Some(BUCKET));
    assert_eq!(storage["prefix"].as_str(), Some(s3.prefix.as_str()));
    assert_eq!(storage["delete"].as_bool(), Some(false), "{switched}");
    for kept in [
        "# kura of the migration test",
        "# where the blobs live",
        "# nightly",
        "grace = \"2h\"",
    ] {
        assert!(switched.contains(kept), "{kept:?} lost:\n{switched}");
    }

    // The local blob files go: `kura fsck --config kura.toml` verifies the bucket, and
    // `kura serve --config kura.toml` serves everything from it.
    let root = tmp.path().join("root");
    std::fs::rename(root.join("blobs"), tmp.path().join("old-blobs")).unwrap();

    // Run again by mistake: refused, and the backup of the filesystem config survives.
    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(!ok, "migrated a bucket onto itself: {out}");
    assert!(err.contains("already uses"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), switched);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("kura.toml.bak")).unwrap(),
        original
    );

    let (ok, out, err) = common::kura_cmd(&["fsck", "--config", config.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!("{n} blob(s)")) && out.contains(": 0 error(s), 0 notice(s)"),
        "{out}"
    );
    // `kura gc --config kura.toml` collects in the bucket: an orphan goes, recorded blobs stay.
    let orphan = Digest::sha256_of(b"orphan");
    put_object(&blob_key(&s3.prefix, &orphan), b"orphan".to_vec()).await;
    let (ok, out, err) =
        common::kura_cmd(&["gc", "--config", config.to_str().unwrap(), "--grace", "0s"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("0 blob(s) (0 bytes)") && out.contains("1 orphan file(s)"),
        "{out}"
    );
    assert_eq!(keys(&s3.prefix, "blobs").await, copied);
    let (_kura, base) = spawn_kura_guarded(&root, &["--config", config.to_str().unwrap()]);
    for img in &images {
        assert_serves(&base, img).await;
    }
    assert!(!root.join("blobs").join("sha256").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_ends_upload_sessions_whose_bytes_stay_behind() {
    let s3 = s3_config("migrate-sessions");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::write(tmp.path().join("kura.toml"), fs_toml(&root)).unwrap();
    std::fs::write(tmp.path().join("s3.toml"), s3_toml(&s3)).unwrap();
    // A push interrupted by the shutdown: a session holding 1000 bytes in a local file.
    let (mut kura, base) = spawn_kura_guarded(&root, &[]);
    let img = push_image_at(&base, "team/app", "v1", &[data(1000, 5)]).await;
    let c = client();
    let r = c
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let path = path_of(r.headers()["location"].to_str().unwrap());
    let r = c
        .patch(format!("{base}{path}"))
        .header("Content-Type", "application/octet-stream")
        .body(data(1000, 6))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    kura.kill();

    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("1 upload session(s) in progress ended"),
        "{out}"
    );
    let config = tmp.path().join("kura.toml");
    let (_kura, base) = spawn_kura_guarded(&root, &["--config", config.to_str().unwrap()]);
    assert_serves(&base, &img).await;
    // Its bytes did not move to the bucket: the session is unknown (the client starts over),
    // not a server error on every retry.
    let r = c.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 404, "{:?}", r.text().await);
    assert_eq!(common::error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = c
        .patch(format!("{base}{path}"))
        .body(data(10, 7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nothing of it is left behind, and a new push works.
    let left: Vec<_> = std::fs::read_dir(root.join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    push_blob_at(&base, "team/app", &data(2000, 8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_adds_the_storage_section_to_a_config_that_had_none() {
    let s3 = s3_config("migrate-no-section");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let original = format!(
        "# defaults everywhere\nroot = {:?}\n",
        root.display().to_string()
    );
    std::fs::write(tmp.path().join("kura.toml"), &original).unwrap();
    std::fs::write(tmp.path().join("s3.toml"), s3_toml(&s3)).unwrap();
    let (mut kura, base) = spawn_kura_guarded(&root, &[]);
    let img = push_image_at(&base, "team/app", "v1", &[data(3000, 9)]).await;
    kura.kill();

    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("3 blobs: 3 copied"), "{out}");
    let config = tmp.path().join("kura.toml");
    let switched = std::fs::read_to_string(&config).unwrap();
    assert!(switched.starts_with(&original), "{switched}");
    let parsed: toml::Table = switched.parse().unwrap();
    assert_eq!(parsed["storage"]["kind"].as_str(), Some("s3"), "{switched}");
    std::fs::remove_dir_all(root.join("blobs")).unwrap();
    let (_kura, base) = spawn_kura_guarded(&root, &["--config", config.to_str().unwrap()]);
    assert_serves(&base, &img).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_keeps_a_private_config_private_when_it_writes_the_bucket_keys() {
    use std::os::unix::fs::PermissionsExt;
    let s3 = s3_config("migrate-mode");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let config = tmp.path().join("kura.toml");
    std::fs::write(&config, fs_toml(&root)).unwrap();
    // Readable by the group, not others; the destination's file by others, not the group.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let to = tmp.path().join("s3.toml");
    std::fs::write(&to, s3_toml(&s3)).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o604)).unwrap();
    let (mut kura, base) = spawn_kura_guarded(&root, &[]);
    push_blob_at(&base, "team/app", b"a blob").await;
    kura.kill();

    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(ok, "{out}\n{err}");
    let switched = std::fs::read_to_string(&config).unwrap();
    assert!(switched.contains(&s3.secret_access_key), "{switched}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config), 0o600, "kura.toml now holds the secret key");
    assert_eq!(mode(&tmp.path().join("kura.toml.bak")), 0o640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_moves_a_bucket_back_into_the_data_directory() {
    let s3 = s3_config("migrate-back");
    let tmp = tempfile::tempdir().unwrap();
    let images = filesystem_registry(tmp.path(), &s3).await;
    let n = distinct_blobs(&images);
    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(ok, "{out}\n{err}");
    let root = tmp.path().join("root");
    std::fs::remove_dir_all(root.join("blobs")).unwrap();

    let config = tmp.path().join("kura.toml");
    let back = tmp.path().join("fs.toml");
    std::fs::write(&back, "[storage]\nkind = \"filesystem\"\n").unwrap();
    let (ok, out, err) = common::kura_cmd(&[
        "migrate-storage",
        "--config",
        config.to_str().unwrap(),
        "--to",
        back.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("{n} blobs: {n} copied (")), "{out}");
    let parsed: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(parsed["storage"]["kind"].as_str(), Some("filesystem"));
    // The bucket's objects are no longer needed: the data directory serves everything.
    for k in keys(&s3.prefix, "blobs").await {
        delete_object(&Key::from(format!("{}/{k}", s3.prefix))).await;
    }
    let (_kura, base) = spawn_kura_guarded(&root, &["--config", config.to_str().unwrap()]);
    for img in &images {
        assert_serves(&base, img).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_refuses_to_switch_while_a_source_blob_is_corrupt_or_missing() {
    let s3 = s3_config("migrate-corrupt");
    let tmp = tempfile::tempdir().unwrap();
    let images = filesystem_registry(tmp.path(), &s3).await;
    let n = distinct_blobs(&images);
    let config = tmp.path().join("kura.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let blobs = tmp.path().join("root/blobs/sha256");

    // A layer's file overwritten with other bytes of the same length, and a config's gone.
    let (bad, bytes) = images[1].blobs.iter().find(|(_, b)| b.len() > MIB).unwrap();
    std::fs::write(blobs.join(bad.hex()), data(bytes.len(), 99)).unwrap();
    let (lost, lost_bytes) = images[0].blobs.iter().find(|(_, b)| b.len() < 100).unwrap();
    std::fs::remove_file(blobs.join(lost.hex())).unwrap();

    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(!ok, "a corrupt source must fail the migration: {out}");
    assert!(
        out.contains(&format!("{n} blobs: {} copied", n - 2))
            && out.contains("0 already there, 2 failed"),
        "{out}"
    );
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("failed:")).collect();
    assert_eq!(failed.len(), 2, "{out}");
    assert!(
        failed
            .iter()
            .any(|f| f.contains(&bad.to_string()) && f.contains("hashes to")),
        "{out}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.contains(&lost.to_string()) && f.contains("missing from the source")),
        "{out}"
    );
    assert!(err.contains("configuration is unchanged"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!tmp.path().join("kura.toml.bak").exists());
    // The corrupt copy was never placed, and its upload session was removed.
    let stored = keys(&s3.prefix, "blobs").await;
    assert_eq!(stored.len(), n - 2, "{stored:?}");
    assert!(!stored.contains(&format!("blobs/sha256/{}", bad.hex())));
    assert_eq!(keys(&s3.prefix, "uploads").await, Vec::<String>::new());

    // Restored (from a backup, say), the next run copies just those two and switches.
    std::fs::write(blobs.join(bad.hex()), bytes).unwrap();
    std::fs::write(blobs.join(lost.hex()), lost_bytes).unwrap();
    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{n} blobs: 2 copied ({} bytes), {} already there, 0 failed",
            bytes.len() + lost_bytes.len(),
            n - 2
        )),
        "{out}"
    );
    assert!(tmp.path().join("kura.toml.bak").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_refuses_a_store_a_running_server_holds() {
    let s3 = s3_config("migrate-busy");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::write(tmp.path().join("kura.toml"), fs_toml(&root)).unwrap();
    std::fs::write(tmp.path().join("s3.toml"), s3_toml(&s3)).unwrap();
    let original = std::fs::read_to_string(tmp.path().join("kura.toml")).unwrap();
    let (_kura, base) = spawn_kura_guarded(&root, &[]);
    push_blob_at(&base, "team/app", b"a blob").await;

    let (ok, out, err) = migrate(tmp.path(), &[]);
    assert!(!ok, "migrated a store in use: {out}");
    assert!(
        err.contains("in use") && err.contains("stop the server"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("kura.toml")).unwrap(),
        original
    );
    assert_eq!(keys(&s3.prefix, "blobs").await, Vec::<String>::new());
}
