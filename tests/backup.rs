//! `kura backup` / `kura restore` (issue 16): a consistent backup of a store that is serving
//! pushes and collecting garbage, restored into a new root that fsck finds clean and that
//! serves every image acknowledged before the backup byte for byte; incremental backups copy
//! only new blobs; partial or damaged backups are refused; the collector leaves the files a
//! running backup's snapshot names.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::backup::*;
use common::*;
use kura::backup::{BackupReport, Event, RestoreReport};
use kura::digest::Digest;
use kura::names::RepoName;
use kura::registry::Registry;

/// An image pushed over HTTP: its manifest bytes and the bytes of every blob it names.
#[derive(Clone)]
struct Pushed {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<(Digest, Vec<u8>)>,
}

async fn put_blob(base: &str, repo: &str, data: &[u8]) -> Option<Digest> {
    let d = Digest::sha256_of(data);
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .ok()?;
    (r.status() == 201).then_some(d)
}

/// Pushes a config and two unique layers of `size` bytes, tagged; `None` unless every
/// request was acknowledged.
async fn push(base: &str, repo: &str, tag: &str, seed: u64, size: usize) -> Option<Pushed> {
    let config = format!("{{\"repo\":\"{repo}\",\"tag\":\"{tag}\",\"seed\":{seed}}}").into_bytes();
    let layer = |n: u64| -> Vec<u8> {
        let mut v = format!("{seed}/{n}/{}", uuid::Uuid::new_v4()).into_bytes();
        v.resize(size, (seed as u8).wrapping_add(n as u8));
        v
    };
    let mut blobs = vec![(put_blob(base, repo, &config).await?, config.clone())];
    for n in 0..2 {
        let l = layer(n);
        blobs.push((put_blob(base, repo, &l).await?, l));
    }
    let ls: Vec<(Digest, usize)> = blobs[1..]
        .iter()
        .map(|(d, b)| (d.clone(), b.len()))
        .collect();
    let manifest = image_manifest(
        &(blobs[0].0.clone(), config.len()),
        &ls,
        serde_json::json!({}),
    );
    let r = client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .ok()?;
    (r.status() == 201).then(|| Pushed {
        repo: repo.into(),
        tag: tag.into(),
        manifest,
        blobs,
    })
}

/// Pulls `p` by tag from `base` and asserts every byte is what was pushed.
async fn assert_pulls_identical(base: &str, p: &Pushed) {
    let r = client()
        .get(format!("{base}/v2/{}/manifests/{}", p.repo, p.tag))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}:{}", p.repo, p.tag);
    assert_eq!(r.bytes().await.unwrap(), p.manifest, "{}:{}", p.repo, p.tag);
    for (d, bytes) in &p.blobs {
        let r = client()
            .get(format!("{base}/v2/{}/blobs/{d}", p.repo))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}@{d}", p.repo);
        assert_eq!(r.bytes().await.unwrap(), bytes.as_slice(), "{}@{d}", p.repo);
    }
}

/// Stops a server with SIGTERM (a clean shutdown), bounded.
fn stop(child: &mut KillOnDrop) {
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("kura did not stop on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_pushes_and_gc_restores_every_image_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (root, dest, restored) = (
        dir.path().join("root"),
        dir.path().join("bk"),
        dir.path().join("new"),
    );
    let (mut server, base) =
        spawn_kura_guarded_env(&root, &["--gc-interval", "0s"], &short_online_grace_env());
    let stop_flag = Arc::new(AtomicBool::new(false));
    // The push loop: stable tags that stay, and a tag that moves (its old revisions and their
    // layers are what the collector removes meanwhile).
    let pusher = {
        let (base, stop_flag) = (base.clone(), stop_flag.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..400u64 {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(p) = push(&base, "app", &format!("v{i}"), i, 48 * 1024).await {
                    acked.push((Instant::now(), p));
                }
                let _ = push(&base, "churn", "latest", 10_000 + i, 16 * 1024).await;
            }
            acked
        })
    };
    let collector = {
        let (base, stop_flag) = (base.clone(), stop_flag.clone());
        tokio::spawn(async move {
            let (mut runs, mut removed) = (0, 0);
            while !stop_flag.load(Ordering::SeqCst) && runs < 2000 {
                let r = client()
                    .post(format!("{base}/admin/gc?grace=2s&delete_untagged=true"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let report: serde_json::Value = r.json().await.unwrap();
                removed += report["blobs_removed"].as_u64().unwrap();
                runs += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (runs, removed)
        })
    };
    // Long enough for revisions of `churn` to age past the grace, then their layers.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let started = Instant::now();
    let args: Vec<String> = ["backup", "--json", "--root", root.to_str().unwrap()]
        .into_iter()
        .chain([dest.to_str().unwrap()])
        .map(String::from)
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        kura_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let report: BackupReport = done(&out);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_flag.store(true, Ordering::SeqCst);
    let acked = pusher.await.unwrap();
    let (gc_runs, gc_removed) = collector.await.unwrap();
    stop(&mut server);
    let before: Vec<&Pushed> = acked
        .iter()
        .filter(|(t, _)| *t < started)
        .map(|(_, p)| p)
        .collect();
    assert!(
        before.len() >= 5,
        "only {} images before the backup",
        before.len()
    );
    assert!(gc_runs >= 10, "the collector ran {gc_runs} times");
    assert!(
        gc_removed > 0,
        "the collector removed nothing: no churn to back up against"
    );
    assert_eq!(
        report.copied, report.blobs,
        "a first backup copies every blob"
    );

    let out = kura_ok(&[
        "restore",
        "--json",
        dest.to_str().unwrap(),
        "--root",
        restored.to_str().unwrap(),
    ]);
    let restored_report: RestoreReport = done(&out);
    assert_eq!(restored_report.blobs, report.blobs);
    fsck_clean(&restored);
    let (_new, new_base) = spawn_kura_guarded(&restored, &["--gc-interval", "0s"]);
    for p in &before {
        assert_pulls_identical(&new_base, p).await;
    }
    // Whatever else the snapshot caught is exactly what was pushed too.
    let tags: serde_json::Value = client()
        .get(format!("{new_base}/v2/app/tags/list?n=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.len() >= before.len());
    for (_, p) in acked.iter().filter(|(_, p)| tags.contains(&p.tag.as_str())) {
        assert_pulls_identical(&new_base, p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_backup_then_a_second_one_through_the_server_copies_only_new_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (root, dest) = (dir.path().join("root"), dir.path().join("bk"));
    let (r, d) = (root.to_str().unwrap(), dest.to_str().unwrap());
    let (mut server, base) = spawn_kura_guarded(&root, &["--gc-interval", "0s"]);
    let mut images = Vec::new();
    for i in 0..4 {
        images.push(
            push(&base, "inc", &format!("a{i}"), i, 8 * 1024)
                .await
                .unwrap(),
        );
    }
    stop(&mut server);
    // Offline: no server holds the store, so kura opens it itself.
    let out = kura_ok(&["backup", "--json", "--root", r, d]);
    let first: BackupReport = done(&out);
    let events = out
        .lines()
        .filter(|l| l.contains("\"event\":\"blob\""))
        .count();
    assert_eq!(events, 16, "one --json event per blob: {out}");
    assert_eq!(
        (first.blobs, first.copied, first.reused),
        (16, 16, 0),
        "4 x (config, 2 layers, manifest)"
    );
    let (_server, base) = spawn_kura_guarded(&root, &["--gc-interval", "0s"]);
    for i in 4..6 {
        images.push(
            push(&base, "inc", &format!("a{i}"), i, 8 * 1024)
                .await
                .unwrap(),
        );
    }
    // The admin route wants an absolute destination, and one backup per directory at a time.
    let post = |q: &str| client().post(format!("{base}/admin/backup{q}")).send();
    assert_eq!(post("").await.unwrap().status(), 400);
    assert_eq!(post("?dest=relative/dir").await.unwrap().status(), 400);
    {
        let held = std::fs::File::open(dest.join(".lock")).unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
        let r = post(&format!("?dest={d}")).await.unwrap();
        assert_eq!(r.status(), 409);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("another backup is running")
        );
    }
    // Online: the server holding the store (kura.addr) writes the backup.
    let second: BackupReport = done(&kura_ok(&["backup", "--json", "--root", r, d]));
    assert_eq!(
        (second.blobs, second.copied, second.reused),
        (24, 8, 16),
        "only the 2 new images' blobs"
    );
    assert_ne!(first.id, second.id);
    let metas = std::fs::read_dir(&dest)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("meta-")
        })
        .count();
    assert_eq!(
        metas, 1,
        "the previous snapshot is dropped once the new one is complete"
    );
    let third: BackupReport = done(&kura_ok(&["backup", "--json", "--root", r, d]));
    assert_eq!((third.copied, third.reused), (0, 24));

    let restored = dir.path().join("new");
    kura_ok(&["restore", d, "--root", restored.to_str().unwrap()]);
    fsck_clean(&restored);
    let (_new, new_base) = spawn_kura_guarded(&restored, &["--gc-interval", "0s"]);
    for p in &images {
        assert_pulls_identical(&new_base, p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_a_backup_leaves_the_files_the_snapshot_names_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let reg = Registry::open(&root).unwrap();
    // Unreferenced blobs: a collection with no grace removes them.
    let mut digests = Vec::new();
    for i in 0..5u8 {
        let data = vec![i; 1000 + i as usize];
        let d = Digest::sha256_of(&data);
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
        reg.put_blob(&RepoName::parse("r").unwrap(), &d, body)
            .await
            .unwrap();
        digests.push(d);
    }
    let dest = dir.path().join("bk");
    let (reg2, dest2) = (reg.clone(), dest.clone());
    let (report, gc_report) = tokio::task::spawn_blocking(move || {
        let during = std::sync::Mutex::new(None);
        // Once the snapshot is taken (the Start event), the collector runs before any copy.
        let report = kura::backup::backup(&reg2, &dest2, &|e| {
            if matches!(e, Event::Start { .. }) {
                *during.lock().unwrap() = Some(kura::gc::collect(&reg2, &opts(0)).unwrap());
            }
        })
        .unwrap();
        (report, during.into_inner().unwrap().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(
        gc_report.blobs_removed, 5,
        "the rows went while the backup ran"
    );
    assert_eq!(
        (report.blobs, report.copied),
        (5, 5),
        "and every file was still there to copy"
    );
    for d in &digests {
        assert!(
            root.join("blobs/sha256").join(d.hex()).exists(),
            "{d} unlinked under a backup"
        );
    }
    // Once the backup is done, the next collection sweeps them as orphans.
    let after = tokio::task::spawn_blocking({
        let reg = reg.clone();
        move || kura::gc::collect(&reg, &opts(0)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(after.orphan_files_removed, 5);
    drop(reg);
    let restored = dir.path().join("new");
    let out = kura_ok(&[
        "restore",
        dest.to_str().unwrap(),
        "--root",
        restored.to_str().unwrap(),
    ]);
    assert!(out.contains("5 blobs"), "{out}");
    fsck_clean(&restored);
}
