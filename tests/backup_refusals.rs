//! Backups that must be refused or fail (issue 16): restore refuses a backup without its
//! completion marker (also one a kill interrupted), a corrupt or missing blob and a non-empty
//! root; a blob recorded but missing from the source fails the backup; an interrupted backup
//! leaves the previous one in the same directory whole.

mod common;

use std::path::Path;

use common::backup::*;
use common::*;
use kura::backup::{BackupReport, RestoreReport};
use kura::digest::Digest;
use kura::names::RepoName;
use kura::registry::Registry;

/// A store of three blobs under `<dir>/root`, backed up (in process) into `<dir>/bk`.
fn backup_dir_of(dir: &Path) -> (std::path::PathBuf, BackupReport) {
    let root = dir.join("root");
    let reg = Registry::open(&root).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..3u8 {
        let data = vec![i; 4096];
        let d = Digest::sha256_of(&data);
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
        rt.block_on(reg.put_blob(&RepoName::parse("r").unwrap(), &d, body))
            .unwrap();
    }
    let dest = dir.join("bk");
    let report = kura::backup::backup(&reg, &dest, &|_| {}).unwrap();
    (dest, report)
}

#[test]
fn restore_refuses_a_partial_or_damaged_backup_and_a_non_empty_root() {
    let dir = tempfile::tempdir().unwrap();
    let (dest, report) = backup_dir_of(dir.path());
    let target = dir.path().join("target");
    // Interrupted: the completion marker was never written.
    let manifest = std::fs::read(dest.join("backup.json")).unwrap();
    std::fs::remove_file(dest.join("backup.json")).unwrap();
    restore_refused(&dest, &target, "holds no complete backup");
    std::fs::write(dest.join("backup.json"), &manifest).unwrap();
    // A corrupt blob, then a missing one.
    let blob = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&blob, &bad).unwrap();
    restore_refused(&dest, &target, "1 blob(s) missing or corrupt");
    std::fs::remove_file(&blob).unwrap();
    restore_refused(&dest, &target, "missing from the backup");
    std::fs::write(&blob, &good).unwrap();
    // Into a root that holds something.
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), b"x").unwrap();
    restore_refused(&dest, &busy, "is not empty");
    // Whole again: it restores, and the store is clean.
    let out = kura_ok(&[
        "restore",
        dest.to_str().unwrap(),
        "--root",
        target.to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("{} blobs", report.blobs)), "{out}");
    fsck_clean(&target);
}

#[test]
fn a_blob_recorded_but_missing_from_the_source_fails_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = backup_dir_of(dir.path());
    let root = dir.path().join("root");
    let gone = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&gone).unwrap();
    let dest = dir.path().join("bk2");
    let (ok, _, err) = kura_cmd(&[
        "backup",
        "--root",
        root.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("recorded but missing from the blob store"),
        "{err}"
    );
    assert!(
        !dest.join("backup.json").exists(),
        "a failed backup has no completion marker"
    );
}

/// Starts `kura backup --json` and kills it (SIGKILL) once it reported `after` copied blobs.
fn backup_killed_after(root: &Path, dest: &Path, after: usize) {
    use std::io::BufRead;
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
            .args(["backup", "--json", "--root"])
            .args([root, dest])
            .env("KURA_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut copied = 0;
    for line in out.lines() {
        if line.unwrap().contains("\"copied\":true") {
            copied += 1;
            if copied == after {
                break;
            }
        }
    }
    assert_eq!(
        copied, after,
        "the backup ended before it could be interrupted"
    );
    child.kill();
}

#[test]
fn an_interrupted_backup_is_refused_and_leaves_the_previous_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (root, dest, target) = (
        dir.path().join("root"),
        dir.path().join("bk"),
        dir.path().join("target"),
    );
    seed_blobs(&root, 0, 24);
    // A first backup killed half-way: no completion marker, so restore refuses it.
    backup_killed_after(&root, &dest, 3);
    assert!(!dest.join("backup.json").exists());
    restore_refused(&dest, &target, "holds no complete backup");
    // Completed, it reuses what the interrupted run had verified and put in place.
    let (r, d) = (root.to_str().unwrap(), dest.to_str().unwrap());
    let first: BackupReport = done(&kura_ok(&["backup", "--json", "--root", r, d]));
    assert_eq!(first.blobs, 24);
    assert!(first.reused >= 3, "{first:?}");
    // A second backup killed half-way leaves the first one complete and restorable.
    seed_blobs(&root, 100, 24);
    backup_killed_after(&root, &dest, 3);
    let kept: kura::backup::BackupManifest =
        serde_json::from_slice(&std::fs::read(dest.join("backup.json")).unwrap()).unwrap();
    assert_eq!(kept.id, first.id);
    let restored: RestoreReport = done(&kura_ok(&[
        "restore",
        "--json",
        d,
        "--root",
        target.to_str().unwrap(),
    ]));
    assert_eq!((restored.id, restored.blobs), (first.id, 24));
    fsck_clean(&target);
}
