//! kura's operations on the S3 blob driver, against the real gateway (Ceph RGW; see
//! tests/common/s3.rs): `kura migrate-storage` from a filesystem store into a bucket (counts,
//! config switch, resume, corrupt sources, a running server, sessions in progress), the
//! collector and fsck on a bucket, `307` redirects to presigned URLs (with and without
//! authentication, and kura's own client pulling through them), and small pushes racing the
//! collector's re-check under the digest's lock.

mod auth_support;
mod client_support;
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::s3::{BUCKET, gateway, s3_config};
use common::{TestServer, client, image_manifest, spawn_kura_guarded};
use futures_util::StreamExt;
use kura::config::StorageConfig;
use kura::digest::Digest;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;

const MIB: usize = 1024 * 1024;

/// Deterministic bytes that differ with `seed`.
fn data(len: usize, seed: u64) -> Vec<u8> {
    client_support::noise(len, seed)
}

/// A client of our own for looking behind kura's back.
fn raw() -> AmazonS3 {
    let g = gateway();
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&g.endpoint)
        .with_allow_http(true)
        .with_region(&g.region)
        .with_access_key_id(&g.access_key)
        .with_secret_access_key(&g.secret_key)
        .build()
        .unwrap()
}

/// Every key under `<prefix>/<under>`, relative to the prefix, sorted.
async fn keys(prefix: &str, under: &str) -> Vec<String> {
    let root = Key::from(format!("{prefix}/{under}"));
    let mut out: Vec<String> = raw()
        .list(Some(&root))
        .map(|m| m.unwrap().location.as_ref()[prefix.len() + 1..].to_string())
        .collect()
        .await;
    out.sort();
    out
}

fn blob_key(prefix: &str, d: &Digest) -> Key {
    Key::from(format!("{prefix}/blobs/sha256/{}", d.hex()))
}

async fn put_object(key: &Key, bytes: Vec<u8>) {
    raw().put(key, PutPayload::from(bytes)).await.unwrap();
}

async fn delete_object(key: &Key) {
    raw().delete(key).await.unwrap();
}

/// Pushes `data` to `repo` of the registry at `base` in one `POST ?digest=`.
async fn push_blob_at(base: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "push of {d} to {repo}");
    d
}

/// A pushed image: its manifest and every blob it names, as bytes by digest.
struct Pushed {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: BTreeMap<Digest, Vec<u8>>,
}

/// Pushes a config and `layers` and a manifest over them tagged `tag`.
async fn push_image_at(base: &str, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Pushed {
    let config = format!("{{\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}").into_bytes();
    let cd = push_blob_at(base, repo, &config).await;
    let mut blobs = BTreeMap::from([(cd.clone(), config.clone())]);
    let mut descs = Vec::new();
    for l in layers {
        let d = push_blob_at(base, repo, l).await;
        descs.push((d.clone(), l.len()));
        blobs.insert(d, l.clone());
    }
    let manifest = image_manifest(&(cd, config.len()), &descs, json!({}));
    let r = client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "manifest {repo}:{tag}");
    Pushed {
        repo: repo.into(),
        tag: tag.into(),
        manifest,
        blobs,
    }
}

/// The path of a `Location` (absolute or not).
fn path_of(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_string(),
        None => location.to_string(),
    }
}

/// The body of a `GET` that must answer 200.
async fn get_ok(url: &str) -> Vec<u8> {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

/// Asserts the registry at `base` serves every blob and the manifest of `img` byte for byte.
async fn assert_serves(base: &str, img: &Pushed) {
    let m = get_ok(&format!("{base}/v2/{}/manifests/{}", img.repo, img.tag)).await;
    assert_eq!(m, img.manifest, "manifest {}:{}", img.repo, img.tag);
    for (d, bytes) in &img.blobs {
        let got = get_ok(&format!("{base}/v2/{}/blobs/{d}", img.repo)).await;
        assert!(got == *bytes, "blob {d} of {} differs", img.repo);
    }
}

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

// ---------------------------------------------------------------------------------------
// The collector on a bucket
// ---------------------------------------------------------------------------------------

fn blob_row(s: &TestServer, d: &Digest) -> Option<kura::meta::blobs::BlobRow> {
    s.registry
        .meta()
        .read(|t| kura::meta::blobs::get(&t.blobs, &d.to_string()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_orphan_objects_past_the_grace_and_keeps_recorded_ones() {
    let cfg = s3_config("gc-orphans");
    let s = TestServer::start_on(&cfg).await;
    let kept = common::push_image(&s, "team/app", "v1", &[b"a recorded layer"]).await;
    let recorded = Digest::sha256_of(b"a recorded layer");
    // An object under blobs/ with no row (a crash between placing it and its commit).
    let orphan_bytes = b"nobody recorded me".to_vec();
    let orphan = Digest::sha256_of(&orphan_bytes);
    put_object(&blob_key(&cfg.prefix, &orphan), orphan_bytes).await;
    let before = keys(&cfg.prefix, "blobs").await;
    assert_eq!(before.len(), 4, "{before:?}");

    // Within the grace period it stays.
    let r = common::gc(&s, common::opts(3600)).await;
    assert_eq!(r.orphan_files_removed, 0, "{r:?}");
    assert_eq!(keys(&cfg.prefix, "blobs").await, before);

    // Past it, it goes; the tagged image's objects stay.
    let r = common::gc(&s, common::opts(0)).await;
    assert_eq!(r.orphan_files_removed, 1, "{r:?}");
    assert_eq!(r.blobs_removed, 0, "{r:?}");
    assert!(r.items.contains(&format!("orphan {orphan}")), "{r:?}");
    let after = keys(&cfg.prefix, "blobs").await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!after.contains(&format!("blobs/sha256/{}", orphan.hex())));
    assert!(after.contains(&format!("blobs/sha256/{}", recorded.hex())));
    assert!(after.contains(&format!("blobs/sha256/{}", kept.1.hex())));
    let got = get_ok(&s.url(&format!("/v2/team/app/blobs/{recorded}"))).await;
    assert_eq!(got, b"a recorded layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_unreferenced_blob_rows_and_their_objects_in_batches() {
    let cfg = s3_config("gc-blobs");
    let s = TestServer::start_on(&cfg).await;
    let (_, manifest) = common::push_image(&s, "team/app", "v1", &[b"kept layer"]).await;
    // Five blobs no manifest references, one over a part (a multipart upload).
    let mut loose = Vec::new();
    for i in 0..4u64 {
        loose.push(common::push_blob(&s, "team/loose", &data(1000 + i as usize, 10 + i)).await);
    }
    loose.push(common::push_blob(&s, "team/loose", &data(5 * MIB + 1, 20)).await);
    for d in &loose {
        assert!(blob_row(&s, d).is_some());
    }
    assert_eq!(keys(&cfg.prefix, "blobs").await.len(), 3 + loose.len());

    // Two blobs per removal transaction: the batch path runs three times.
    let o = kura::gc::GcOptions {
        batch_size: 2,
        ..common::opts(0)
    };
    let r = common::gc(&s, o).await;
    assert_eq!(r.blobs_removed, loose.len() as u64, "{r:?}");
    assert_eq!(
        r.bytes_freed,
        (1000 + 1001 + 1002 + 1003 + 5 * MIB + 1) as u64
    );
    assert_eq!(r.orphan_files_removed, 0, "{r:?}");
    for d in &loose {
        assert!(blob_row(&s, d).is_none(), "row of {d} kept");
        assert!(r.items.contains(&d.to_string()), "{r:?}");
        let status = client()
            .get(s.url(&format!("/v2/team/loose/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404);
    }
    let left = keys(&cfg.prefix, "blobs").await;
    assert_eq!(left.len(), 3, "objects of removed rows left: {left:?}");
    assert!(left.contains(&format!("blobs/sha256/{}", manifest.hex())));
    assert!(left.contains(&format!(
        "blobs/sha256/{}",
        Digest::sha256_of(b"kept layer").hex()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_purges_an_expired_upload_session_with_its_multipart_upload_and_objects() {
    let cfg = s3_config("gc-uploads");
    let s = TestServer::start_on(&cfg).await;
    let c = client();
    let r = c
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = s.url(&path_of(r.headers()["location"].to_str().unwrap()));
    // More than a part: one part goes to a multipart upload, the rest to a tail object.
    let r = c
        .patch(&loc)
        .header("Content-Type", "application/octet-stream")
        .body(data(5 * MIB + 1000, 30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (id, rec) = {
        let all = s
            .registry
            .meta()
            .read(|t| kura::meta::uploads::all(&t.uploads))
            .unwrap();
        assert_eq!(all.len(), 1);
        all.into_iter().next().unwrap()
    };
    let multipart = rec.state.multipart.clone().expect("a multipart upload");
    assert_eq!(rec.state.parts.len(), 1, "{:?}", rec.state);
    let stored = keys(&cfg.prefix, &format!("uploads/{id}")).await;
    assert!(stored.len() >= 2, "session and tail objects: {stored:?}");

    // Not yet expired: kept.
    let r = common::gc(&s, common::opts(0)).await;
    assert_eq!(r.uploads_purged, 0, "{r:?}");
    assert_eq!(keys(&cfg.prefix, &format!("uploads/{id}")).await, stored);

    let o = kura::gc::GcOptions {
        upload_max_age: std::time::Duration::ZERO,
        ..common::opts(0)
    };
    let r = common::gc(&s, o).await;
    assert_eq!(r.uploads_purged, 1, "{r:?}");
    assert!(r.items.contains(&format!("upload {id}")), "{r:?}");
    let rows = s
        .registry
        .meta()
        .read(|t| kura::meta::uploads::get(&t.uploads, &id))
        .unwrap();
    assert!(rows.is_none(), "the session's row is kept");
    assert_eq!(keys(&cfg.prefix, "uploads").await, Vec::<String>::new());
    // The multipart upload was aborted: it takes no more parts.
    let data_key = Key::from(format!("{}/uploads/{id}/data", cfg.prefix));
    let more = raw()
        .put_part(&data_key, &multipart, 1, PutPayload::from(vec![1u8; 10]))
        .await;
    assert!(more.is_err(), "multipart upload {multipart} still open");
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

// ---------------------------------------------------------------------------------------
// fsck on a bucket
// ---------------------------------------------------------------------------------------

async fn fsck(s: &TestServer, repair: bool) -> kura::fsck::FsckReport {
    let reg = s.registry.clone();
    tokio::task::spawn_blocking(move || kura::fsck::fsck(&reg, repair, false))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_missing_and_corrupt_objects_in_the_bucket() {
    let cfg = s3_config("fsck-errors");
    let s = TestServer::start_on(&cfg).await;
    let layers: [&[u8]; 2] = [b"first layer", b"second layer"];
    let (manifest, _) = common::push_image(&s, "team/app", "v1", &layers).await;
    let config = r#"{"tag":"v1","repo":"team/app"}"#;
    let big = data(5 * MIB + 3, 40);
    let big_d = common::push_blob(&s, "team/app", &big).await;

    // Clean: every object hashed, nothing else in the bucket.
    let r = fsck(&s, false).await;
    assert!(r.is_clean(), "{r}");
    assert!(r.notices.is_empty(), "{r}");
    assert_eq!(r.blobs_checked, 5, "{r}");
    let total = manifest.len() + config.len() + layers[0].len() + layers[1].len() + big.len();
    assert_eq!(r.bytes_checked, total as u64, "{r}");

    // Deleted behind kura's back: missing.
    let gone = Digest::sha256_of(layers[0]);
    delete_object(&blob_key(&cfg.prefix, &gone)).await;
    // Overwritten with other bytes of the same size: it hashes to something else.
    put_object(&blob_key(&cfg.prefix, &big_d), data(big.len(), 41)).await;
    let r = fsck(&s, false).await;
    assert_eq!(r.errors.len(), 2, "{r}");
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&gone.to_string()) && e.contains("missing")),
        "{r}"
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&big_d.to_string()) && e.contains("hashes to")),
        "{r}"
    );
    // Repair cannot invent content: both stay errors.
    let r = fsck(&s, true).await;
    assert_eq!(r.errors.len(), 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_notices_orphan_and_stray_upload_objects_and_repair_removes_them() {
    let cfg = s3_config("fsck-notices");
    let s = TestServer::start_on(&cfg).await;
    common::push_image(&s, "team/app", "v1", &[b"a layer"]).await;
    let orphan = Digest::sha256_of(b"an orphan");
    put_object(&blob_key(&cfg.prefix, &orphan), b"an orphan".to_vec()).await;
    let stray = "0b6e3c7a-stray";
    put_object(
        &Key::from(format!("{}/uploads/{stray}/tail.1", cfg.prefix)),
        b"left over".to_vec(),
    )
    .await;

    let r = fsck(&s, false).await;
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.notices.len(), 2, "{r}");
    assert!(
        r.notices
            .iter()
            .any(|n| n.contains("orphan") && n.contains(&orphan.to_string())),
        "{r}"
    );
    assert!(
        r.notices
            .iter()
            .any(|n| n.contains("stray upload") && n.contains(stray)),
        "{r}"
    );

    let r = fsck(&s, true).await;
    assert!(
        r.repaired
            .contains(&format!("removed orphan file {orphan}")),
        "{r}"
    );
    assert!(
        r.repaired.contains(&format!("removed upload {stray}")),
        "{r}"
    );
    assert!(
        !keys(&cfg.prefix, "blobs")
            .await
            .contains(&format!("blobs/sha256/{}", orphan.hex()))
    );
    assert_eq!(keys(&cfg.prefix, "uploads").await, Vec::<String>::new());
    let r = fsck(&s, false).await;
    assert!(r.is_clean() && r.notices.is_empty(), "{r}");
    let got = get_ok(&s.url(&format!(
        "/v2/team/app/blobs/{}",
        Digest::sha256_of(b"a layer")
    )))
    .await;
    assert_eq!(got, b"a layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_repair_leaves_objects_not_named_by_a_digest_and_finishes() {
    let cfg = s3_config("fsck-odd-names");
    let s = TestServer::start_on(&cfg).await;
    common::push_image(&s, "team/app", "v1", &[b"a layer"]).await;
    // Something else's objects under blobs/, and a real orphan.
    let odd = ["blobs/sha256/not-a-digest", "blobs/README"];
    for k in odd {
        put_object(&Key::from(format!("{}/{k}", cfg.prefix)), b"?".to_vec()).await;
    }
    let orphan = Digest::sha256_of(b"an orphan");
    put_object(&blob_key(&cfg.prefix, &orphan), b"an orphan".to_vec()).await;
    let stray = "9d0c7e51-stray";
    put_object(
        &Key::from(format!("{}/uploads/{stray}/tail.1", cfg.prefix)),
        b"left over".to_vec(),
    )
    .await;

    let r = fsck(&s, false).await;
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.notices.len(), 4, "{r}");
    for name in ["sha256:not-a-digest", "README"] {
        assert!(
            r.notices
                .iter()
                .any(|n| n.contains(name) && n.contains("not named by a digest")),
            "{r}"
        );
    }

    // Repair removes what kura owns and finishes, leaving the rest to the operator.
    let r = fsck(&s, true).await;
    assert!(
        r.repaired
            .contains(&format!("removed orphan file {orphan}")),
        "{r}"
    );
    assert!(
        r.repaired.contains(&format!("removed upload {stray}")),
        "{r}"
    );
    let mut left = keys(&cfg.prefix, "blobs").await;
    left.retain(|k| odd.contains(&k.as_str()));
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(keys(&cfg.prefix, "uploads").await, Vec::<String>::new());
    // The collector leaves them too.
    let r = common::gc(&s, common::opts(0)).await;
    assert_eq!(r.orphan_files_removed, 0, "{r:?}");
    assert_eq!(keys(&cfg.prefix, "blobs").await.len(), 3 + odd.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_notices_a_session_whose_objects_are_gone_and_repair_ends_it() {
    let cfg = s3_config("fsck-session");
    let s = TestServer::start_on(&cfg).await;
    let c = client();
    let r = c
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = s.url(&path_of(r.headers()["location"].to_str().unwrap()));
    let r = c
        .patch(&loc)
        .body(b"some bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = fsck(&s, false).await;
    assert!(r.is_clean() && r.notices.is_empty(), "{r}");

    let id = loc.rsplit('/').next().unwrap().to_string();
    for k in keys(&cfg.prefix, &format!("uploads/{id}")).await {
        delete_object(&Key::from(format!("{}/{k}", cfg.prefix))).await;
    }
    let r = fsck(&s, false).await;
    assert_eq!(r.notices, [format!("upload {id} has no file")], "{r}");
    let r = fsck(&s, true).await;
    assert!(r.repaired.contains(&format!("removed upload {id}")), "{r}");
    let row = s
        .registry
        .meta()
        .read(|t| kura::meta::uploads::get(&t.uploads, &id))
        .unwrap();
    assert!(row.is_none());
    let r = fsck(&s, false).await;
    assert!(r.is_clean() && r.notices.is_empty(), "{r}");
    assert_eq!(c.get(&loc).send().await.unwrap().status(), 404);
}

// ---------------------------------------------------------------------------------------
// Redirects to presigned URLs
// ---------------------------------------------------------------------------------------

/// A bucket config with `[storage] redirect = true` and `redirect_expiry = "2m"`.
fn redirecting(test: &str) -> StorageConfig {
    StorageConfig {
        redirect: true,
        redirect_expiry: std::time::Duration::from_secs(120),
        ..s3_config(test)
    }
}

/// A kura server on `storage` with htpasswd authentication and the test access rules.
struct AuthS3Server {
    base: String,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl AuthS3Server {
    async fn start(storage: &StorageConfig) -> AuthS3Server {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = auth_support::auth_config(dir.path(), "");
        let registry =
            kura::registry::Registry::open_with(&dir.path().join("root"), storage).unwrap();
        let opts = kura::server::ServerOptions {
            workers: Some(2),
            auth: kura::auth::Auth::from_config(&auth).unwrap(),
            ..kura::server::ServerOptions::default()
        };
        let (server, addr) = kura::server::bind_with(registry, "127.0.0.1:0", &opts).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        AuthS3Server {
            base: format!("http://{addr}"),
            handle,
            _dir: dir,
        }
    }
}

impl Drop for AuthS3Server {
    fn drop(&mut self) {
        std::mem::drop(self.handle.stop(false));
    }
}

/// Asserts `r` is a `307` to a presigned URL of blob `d` on the gateway; returns the URL.
fn presigned_location(r: &reqwest::Response, prefix: &str, d: &Digest) -> String {
    assert_eq!(r.status(), 307, "{:?}", r.headers());
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let object = format!(
        "{}/{BUCKET}/{prefix}/blobs/sha256/{}?",
        gateway().endpoint.trim_end_matches('/'),
        d.hex()
    );
    assert!(loc.starts_with(&object), "{loc} is not {object}...");
    assert!(loc.contains("X-Amz-Signature="), "{loc} is not presigned");
    assert!(
        loc.contains("X-Amz-Expires=120&"),
        "{loc}: not the configured expiry"
    );
    loc
}

/// Fetches `url` with a fresh client and no credentials; the body of a 200.
async fn fetch_plain(url: &str) -> Vec<u8> {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_sends_blob_gets_to_a_presigned_gateway_url_and_answers_heads_itself() {
    let cfg = redirecting("redirect");
    let s = TestServer::start_on(&cfg).await;
    let big = data(5 * MIB + 11, 50);
    let d = common::push_blob(&s, "team/app", &big).await;
    let small = common::push_blob(&s, "team/app", b"small").await;

    let r = client()
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    let loc = presigned_location(&r, &cfg.prefix, &d);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "a redirect has no body"
    );
    // A plain client with no credentials gets exactly the blob from the gateway, and ranges
    // of it (a resumed download).
    assert!(
        fetch_plain(&loc).await == big,
        "presigned URL served other bytes"
    );
    let r = reqwest::Client::new()
        .get(&loc)
        .header("Range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), big[5242870..5242890]);
    let r = client()
        .get(s.url(&format!("/v2/team/app/blobs/{small}")))
        .send()
        .await
        .unwrap();
    let loc = presigned_location(&r, &cfg.prefix, &small);
    assert_eq!(fetch_plain(&loc).await, b"small");

    // HEAD is kura's own answer.
    let r = client()
        .head(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        r.headers()["content-length"],
        big.len().to_string().as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());

    // No redirect for what the repository does not hold: the link check comes first.
    for url in [
        format!("/v2/team/other/blobs/{d}"),
        format!("/v2/team/app/blobs/{}", Digest::sha256_of(b"never pushed")),
    ] {
        let r = client().get(s.url(&url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{url}");
        assert!(r.headers().get("location").is_none(), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redirect_blob_gets_are_served_by_kura() {
    let cfg = s3_config("no-redirect");
    assert!(!cfg.redirect, "redirects are off by default");
    let s = TestServer::start_on(&cfg).await;
    let big = data(5 * MIB + 11, 51);
    let d = common::push_blob(&s, "team/app", &big).await;
    let r = client()
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert!(r.bytes().await.unwrap() == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_follow_authorization_and_carry_no_kura_credentials() {
    use auth_support::{basic_of, pw};
    let cfg = redirecting("redirect-auth");
    let s = AuthS3Server::start(&cfg).await;
    let layer = data(MIB + 5, 52);
    let r = auth_support::push_blob(&s.base, "team/app", &layer, &basic_of("bob")).await;
    assert_eq!(r.status(), 201);
    let d = Digest::sha256_of(&layer);
    let url = format!("{}/v2/team/app/blobs/{d}", s.base);

    // Anonymous: 401 with a challenge, and no URL of the object.
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none(), "{:?}", r.headers());
    assert!(r.headers().get("www-authenticate").is_some());
    // A user with no rule for the repository: 403, no URL either.
    let r = client()
        .get(&url)
        .header("Authorization", basic_of("dave"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none(), "{:?}", r.headers());

    // A puller: a presigned URL that names none of the caller's credentials.
    for user in ["carol", "bob"] {
        let auth = basic_of(user);
        let r = client()
            .get(&url)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        let loc = presigned_location(&r, &cfg.prefix, &d);
        let token = auth.trim_start_matches("Basic ");
        for secret in [user, pw(user), token] {
            assert!(!loc.contains(secret), "{loc} carries {secret:?}");
        }
        assert!(fetch_plain(&loc).await == layer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_client_pulls_an_image_through_redirects_with_authentication() {
    use client_support::{Client, p, reachable, read_blob, single_image};
    let cfg = redirecting("redirect-client");
    let s = AuthS3Server::start(&cfg).await;
    let host = client_support::host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let image = format!("{host}/team/app:v1");
    let c = Client::new();
    c.ok(&["login", &host, "-u", "bob", "-p", auth_support::pw("bob")])
        .await;
    c.ok(&["push", p(&src.dir), &image]).await;

    // Every blob of the image is answered with a redirect.
    let blobs = reachable(&src.dir, digest);
    assert_eq!(blobs.len(), 4);
    let manifest: serde_json::Value = serde_json::from_slice(&read_blob(&src.dir, digest)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    for l in layers.iter().chain([&manifest["config"]]) {
        let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
        let r = client()
            .get(format!("{}/v2/team/app/blobs/{d}", s.base))
            .header("Authorization", auth_support::basic_of("bob"))
            .send()
            .await
            .unwrap();
        presigned_location(&r, &cfg.prefix, &d);
    }

    let dest = tmp.path().join("pulled");
    let out = c.ok(&["pull", "--json", &image, p(&dest)]).await;
    assert_eq!(out.events_of("done")[0]["digest"], digest);
    assert_eq!(reachable(&dest, digest), blobs);
    for b in &blobs {
        assert!(
            read_blob(&dest, b) == read_blob(&src.dir, b),
            "{b} pulled with other bytes"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Writers against the collector on a bucket
// ---------------------------------------------------------------------------------------

/// Holds `d`'s lock as the collector does between re-checking that `d` has no row and deleting
/// its object; meanwhile `write` (a push of `d`) starts. Once its object appears or a bounded
/// wait passes, does what the collector does there (no row: delete the object), releases the
/// lock, lets the push finish, and asserts the registry then serves `d` as `want`: a writer
/// holds the lock from placing the object to committing its row, so the collector can never
/// leave a row without its object.
async fn race_collector<F>(
    s: &TestServer,
    prefix: &str,
    d: &Digest,
    want: &[u8],
    path: &str,
    write: F,
) where
    F: std::future::Future<Output = reqwest::StatusCode> + Send + 'static,
{
    // The collector's side, on a thread of its own (it blocks on the lock as the collector
    // does): lock, wait for the go, then re-check and delete as `remove_unless_recorded`.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (reg, digest) = (s.registry.clone(), d.clone());
    let collector = std::thread::spawn(move || {
        let name = digest.to_string();
        let _guard = reg.digest_locks().lock(&name);
        locked_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let row = reg
            .meta()
            .read(|t| kura::meta::blobs::get(&t.blobs, &name))
            .unwrap();
        if row.is_none() {
            reg.store().remove_blob(&digest).unwrap();
        }
        row.is_none()
    });
    tokio::task::spawn_blocking(move || locked_rx.recv().unwrap())
        .await
        .unwrap();
    let push = tokio::spawn(write);
    for _ in 0..40 {
        if raw().head(&blob_key(prefix, d)).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    go_tx.send(()).unwrap();
    let no_row = tokio::task::spawn_blocking(move || collector.join().unwrap())
        .await
        .unwrap();
    assert!(no_row, "{d} was recorded while its lock was held");
    let status = push.await.unwrap();
    assert!(status.is_success(), "push of {d}: {status}");
    assert!(blob_row(s, d).is_some());
    assert!(
        raw().head(&blob_key(prefix, d)).await.is_ok(),
        "{d} is recorded but its object is gone"
    );
    let r = client().get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{d} is recorded but its object is gone");
    assert_eq!(r.bytes().await.unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_blob_push_racing_the_collector_keeps_its_object() {
    let cfg = s3_config("race-blob");
    let s = TestServer::start_on(&cfg).await;
    let body = b"a small blob pushed in one request".to_vec();
    let d = Digest::sha256_of(&body);
    let url = s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}"));
    let push = {
        let body = body.clone();
        async move { client().post(url).body(body).send().await.unwrap().status() }
    };
    let path = format!("/v2/team/app/blobs/{d}");
    race_collector(&s, &cfg.prefix, &d, &body, &path, push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_push_racing_the_collector_keeps_its_object() {
    let cfg = s3_config("race-manifest");
    let s = TestServer::start_on(&cfg).await;
    let config = common::push_blob(&s, "team/app", b"{}").await;
    let layer = common::push_blob(&s, "team/app", b"layer").await;
    let body = image_manifest(&(config, 2), &[(layer, 5)], json!({}));
    let d = Digest::sha256_of(&body);
    let url = s.url("/v2/team/app/manifests/v1");
    let push = {
        let body = body.clone();
        async move {
            client()
                .put(url)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let path = format!("/v2/team/app/manifests/{d}");
    race_collector(&s, &cfg.prefix, &d, &body, &path, push).await;
}
