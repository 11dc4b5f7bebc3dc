//! A full disk: kura's data directory lives on a 16 MiB tmpfs (real ENOSPC from the kernel).
//! Uploads, manifest pushes and metadata commits that hit ENOSPC fail with `507 Insufficient
//! Storage` and the OCI error body, and leave no partial blob; reads go on being served while
//! the disk is full; once space is freed, writes are accepted again and the store is
//! consistent, also after a restart. `/readyz` fails while the free space is below
//! `limits.min_free_bytes` and recovers once space is freed.
//!
//! Needs root (or CAP_SYS_ADMIN) to mount the tmpfs, as in CI; fails with a clear message if it
//! cannot mount rather than skipping.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kura::digest::Digest;

/// A small tmpfs mounted on a temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "tests/full_disk.rs mounts a {size_mib} MiB tmpfs to fill it up, which needs root \
             (CAP_SYS_ADMIN); `mount -t tmpfs` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a file handle not yet closed): detach it now, freed when released.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Files (relative paths) under `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Writes a ballast file until the file system is full; returns its path and size.
fn fill(dir: &Path) -> (PathBuf, u64) {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 64 * 1024];
    let mut written = 0u64;
    for _ in 0..4096 {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    // Fill the last partial page too.
    for _ in 0..64 {
        if f.write(&[0u8; 1024]).is_err() {
            break;
        }
        written += 1024;
    }
    (path, written)
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Status and OCI error code of a reply, or the transport error.
async fn outcome(r: Result<reqwest::Response, reqwest::Error>) -> String {
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            let code = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{status} {code} {body}")
        }
        Err(e) => format!("transport error ({e})"),
    }
}

/// Asserts that `outcome` is a 507 with the OCI error body saying the disk is full.
fn assert_disk_full(what: &str, outcome: &str) {
    assert!(
        outcome.starts_with("507 UNKNOWN ") && outcome.contains("disk is full"),
        "{what}: {outcome}"
    );
}

/// Every blob of `app:v1` is served whole.
async fn assert_pullable(s: &TestServer, tag: &str, manifest: &[u8], blobs: &[&[u8]]) {
    let c = client();
    let r = c
        .get(s.url(&format!("/v2/app/manifests/{tag}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "app:{tag}");
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest);
    for b in blobs {
        let d = Digest::sha256_of(b);
        let r = c
            .get(s.url(&format!("/v2/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), *b);
    }
}

fn fsck_clean(reg: &kura::registry::Registry) -> kura::fsck::FsckReport {
    let report = kura::fsck::fsck(reg, false, false).unwrap();
    assert!(report.is_clean(), "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_fails_uploads_cleanly_keeps_reads_and_accepts_writes_once_space_is_freed() {
    let fs = Tmpfs::mount(16);
    let root = fs.path().join("store");
    let s = TestServer::start_in(&root).await;
    let c = client();

    // Content that must survive: app:v1 with two 200 KB layers.
    let (l1, l2) = (data(1, 200_000), data(2, 200_000));
    let (m1, _) = push_image(&s, "app", "v1", &[&l1, &l2]).await;
    let blobs_before = files(&root.join("blobs"));

    // 1. A 32 MiB monolithic upload on a 16 MiB disk.
    let big = data(3, 32 << 20);
    let big_d = Digest::sha256_of(&big);
    let r = c
        .post(s.url(&format!("/v2/app/blobs/uploads/?digest={big_d}")))
        .body(big.clone())
        .send()
        .await;
    let monolithic = outcome(r).await;
    assert_disk_full("32 MiB monolithic upload", &monolithic);
    assert_eq!(files(&root.join("blobs")), blobs_before, "no partial blob");
    assert!(
        files(&root.join("uploads")).is_empty(),
        "upload file left behind"
    );
    let r = c
        .head(s.url(&format!("/v2/app/blobs/{big_d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // 2. A chunked upload, 1 MiB per PATCH, until the disk is full.
    let r = c
        .post(s.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let id = loc.rsplit('/').next().unwrap().to_string();
    let chunk = data(4, 1 << 20);
    let mut offset = 0u64;
    let mut chunked = String::new();
    for _ in 0..64 {
        let r = c
            .patch(&loc)
            .header(
                "Content-Range",
                format!("{offset}-{}", offset + (1 << 20) - 1),
            )
            .body(chunk.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => offset += 1 << 20,
            other => {
                chunked = outcome(other).await;
                break;
            }
        }
    }
    assert!(!chunked.is_empty(), "16 MiB never filled up");
    assert_disk_full("PATCH filling the disk", &chunked);
    // The failed chunk was rolled back: the session and its file hold the acknowledged bytes.
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let expect_range = format!("0-{}", offset.saturating_sub(1));
    assert_eq!(r.headers()["range"].to_str().unwrap(), expect_range);
    let upload_len = std::fs::metadata(root.join("uploads").join(&id))
        .unwrap()
        .len();
    assert_eq!(upload_len, offset, "upload file not rolled back");

    // 3. Fill what is left, so nothing at all can be written.
    let (ballast, ballast_len) = fill(fs.path());

    // Reads are served.
    assert_pullable(&s, "v1", &m1, &[&l1, &l2]).await;
    let r = c.get(s.url("/v2/app/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(s.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Writes fail with an error and leave nothing behind.
    let small = data(5, 100_000);
    let small_d = Digest::sha256_of(&small);
    let r = c
        .post(s.url(&format!("/v2/app/blobs/uploads/?digest={small_d}")))
        .body(small.clone())
        .send()
        .await;
    let small_full = outcome(r).await;
    assert_disk_full("blob upload on a full disk", &small_full);
    let r = c
        .patch(&loc)
        .header("Content-Range", format!("{offset}-{}", offset + 99_999))
        .body(small.clone())
        .send()
        .await;
    let patch_full = outcome(r).await;
    assert_disk_full("PATCH on a full disk", &patch_full);
    // A manifest naming blobs that are there: its file cannot be written.
    let cfg = r#"{"tag":"v1","repo":"app"}"#.to_string();
    let cfg_d = Digest::sha256_of(cfg.as_bytes());
    let m2 = image_manifest(
        &(cfg_d, cfg.len()),
        &[(Digest::sha256_of(&l2), l2.len())],
        serde_json::json!({"annotations": {"full": "disk"}}),
    );
    let r = c
        .put(s.url("/v2/app/manifests/v2"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(m2.clone())
        .send()
        .await;
    let manifest_full = outcome(r).await;
    assert_disk_full("manifest push on a full disk", &manifest_full);
    assert_eq!(files(&root.join("blobs")), blobs_before, "no partial blob");
    assert_eq!(
        files(&root.join("uploads")),
        vec![id.clone()],
        "no temp file left"
    );
    let r = c.get(s.url("/v2/app/manifests/v2")).send().await.unwrap();
    assert_eq!(r.status(), 404, "a failed manifest push is not visible");
    // Metadata-only writes (tagging a manifest that is there) until the metadata file itself
    // cannot grow; at most 3000.
    let mut tagged = 0;
    let mut meta_full = String::from("never failed");
    for i in 0..3000 {
        let r = c
            .put(s.url(&format!("/v2/app/manifests/full-{i}")))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(m1.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => tagged += 1,
            other => {
                meta_full = outcome(other).await;
                break;
            }
        }
    }
    assert_disk_full("metadata commit on a full disk", &meta_full);
    // Reads still work after the failed writes.
    assert_pullable(&s, "v1", &m1, &[&l1, &l2]).await;

    // 4. Free the space: writes are accepted again, with no restart.
    std::fs::remove_file(&ballast).unwrap();
    let r = c.delete(&loc).send().await;
    let cancel = outcome(r).await;
    assert!(
        cancel.starts_with("204"),
        "cancel the chunked upload: {cancel}"
    );
    // Every tag that was acknowledged while the disk was full is there.
    for i in 0..tagged {
        let r = c
            .head(s.url(&format!("/v2/app/manifests/full-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "full-{i}");
    }
    let r = c
        .put(s.url("/v2/app/manifests/after-full"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(m1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "metadata write after freeing space");
    let r = c
        .put(s.url("/v2/app/manifests/v2"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(m2.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "manifest push after freeing space");
    let (l3, l4) = (data(6, 3 << 20), data(7, 150_000));
    let (m3, _) = push_image(&s, "app", "v3", &[&l3, &l4]).await;
    assert_pullable(&s, "v1", &m1, &[&l1, &l2]).await;
    assert_pullable(&s, "v3", &m3, &[&l3, &l4]).await;
    let r = c
        .post(s.url(&format!("/v2/app/blobs/uploads/?digest={small_d}")))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "monolithic upload after freeing space");
    let report = fsck_clean(&s.registry);

    // 5. And the store is consistent after a restart.
    drop(s);
    let reg = reopen(&root).await;
    fsck_clean(&reg);
    drop(reg);
    let s = TestServer::start_in(&root).await;
    assert_pullable(&s, "v1", &m1, &[&l1, &l2]).await;
    assert_pullable(&s, "v3", &m3, &[&l3, &l4]).await;
    println!(
        "full disk (16 MiB tmpfs): 32 MiB monolithic upload -> {monolithic}; chunked upload \
         stopped at {} MiB -> {chunked}; with the disk full ({} KiB ballast): blob upload -> \
         {small_full}, PATCH -> {patch_full}, manifest push -> {manifest_full}, tag pushes: \
         {tagged} accepted then {meta_full}; reads served throughout; after freeing space: pushes 201, fsck clean ({} blobs), clean after restart",
        offset >> 20,
        ballast_len >> 10,
        report.blobs_checked
    );
    drop(s);
    drop(reopen(&root).await);
}

/// Polls `/readyz` (every 100 ms, at most 10 s) until it answers `want`; returns the body.
async fn await_readyz(s: &TestServer, want: u16) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = client().get(s.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if status == want {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still {status} ({body}), not {want}, after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_below_the_free_space_floor_and_recovers_once_space_is_freed() {
    let fs = Tmpfs::mount(16);
    let root = fs.path().join("store");
    let floor = 4u64 << 20;
    let s = TestServer::start_with_options(
        Some(&root),
        kura::server::ServerOptions {
            limits: kura::config::LimitsConfig {
                min_free_bytes: floor,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    assert_eq!(await_readyz(&s, 200).await, "ready\n");
    let free = kura::ops::health::free_bytes(&root).unwrap();
    assert!(free > floor, "{free} bytes free on a fresh 16 MiB tmpfs");

    // Leave 1 MiB free: below the floor, though writes still fit.
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![0x55u8; (free - (1 << 20)) as usize]).unwrap();
    let why = await_readyz(&s, 503).await;
    assert!(why.contains("below limits.min_free_bytes"), "{why}");
    // Being unready refuses nothing by itself: a small push still lands.
    push_blob(&s, "app", b"still writable").await;

    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(await_readyz(&s, 200).await, "ready\n");
}

/// Opens the store once the stopped server has let go of it (its workers stop asynchronously).
async fn reopen(root: &Path) -> kura::registry::Registry {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match kura::registry::Registry::open(root) {
            Ok(r) => return r,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("store still held 10 s after the server stopped: {e}"),
        }
    }
}

/// A request cut off (its future dropped) while the write of its last block fails on a full
/// disk: the upload must not build on the lost block. Before, the next request's checkpoint
/// counted the lost bytes, its rollback extended the file with zeros over them, and the
/// running hash (which had seen the real bytes) let that file be published under the digest
/// of the real content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_lost_to_a_full_disk_after_its_request_was_cut_off_is_never_published() {
    const MIB: usize = 1 << 20;
    let disk = Tmpfs::mount(16);
    let root = disk.path().join("data");
    let store =
        kura::store::BlobStore::open(&root, &kura::config::StorageConfig::default()).unwrap();
    let mut u = store.create_upload("cut-off").unwrap();
    // Leave exactly four 1 MiB blocks of room.
    let (ballast, size) = fill(disk.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap()
        .set_len(size - 4 * MIB as u64)
        .unwrap();
    let bytes = data(5, 6 * MIB);
    let digest = Digest::sha256_of(&bytes);
    // A request pushes five blocks and is cut off: the fifth is still being written (it fails
    // with ENOSPC) and nobody flushes or rolls back.
    for c in bytes[..5 * MIB].chunks(64 * 1024) {
        u.push(c).await.unwrap();
    }
    // The client goes on, request after request, from the offset the upload reports, as the
    // registry serves it (a failed request is rolled back to its checkpoint). The first retry
    // finds the disk still full (so the lost block has failed by then, whatever the timing);
    // then space is freed.
    for attempt in 0..4 {
        if attempt == 1 {
            std::fs::remove_file(&ballast).unwrap();
        }
        let Ok(cp) = u.checkpoint().await else {
            continue;
        };
        let from = u.len() as usize;
        let sent = async {
            for c in bytes[from..].chunks(64 * 1024) {
                u.push(c).await?;
            }
            u.flush().await
        }
        .await;
        if sent.is_err() {
            u.rollback(cp).await.unwrap();
        }
    }
    // Whatever is published under the digest is the pushed content.
    if let Ok(v) = u.verify(&store, &digest) {
        v.publish(&store, false).unwrap();
        let mut body = store
            .read_range(&digest, 0, bytes.len() as u64)
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        while let Some(c) = futures_util::StreamExt::next(&mut body).await {
            got.extend_from_slice(&c.unwrap());
        }
        assert!(
            got == bytes,
            "the published blob differs from what was pushed"
        );
    } else {
        assert_eq!(store.stat(&digest).unwrap(), None, "nothing published");
    }
}
