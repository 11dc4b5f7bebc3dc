//! Helpers of the backup tests (tests/backup.rs, tests/backup_refusals.rs): the `kura`
//! binary's backup and restore commands and their reports.

use std::path::Path;

use kura::digest::Digest;
use kura::names::RepoName;
use kura::registry::Registry;

use super::kura_cmd;

/// Runs `kura <args>` (blocking) and returns its stdout; panics with stderr on failure.
pub fn kura_ok(args: &[&str]) -> String {
    let (ok, out, err) = kura_cmd(args);
    assert!(ok, "kura {args:?} failed: {err}");
    out
}

/// The report line (`"event":"done"`) of a `--json` run.
pub fn done<T: serde::de::DeserializeOwned>(out: &str) -> T {
    let line = out
        .lines()
        .find(|l| l.contains("\"event\":\"done\""))
        .unwrap_or_else(|| panic!("no done event in {out}"));
    serde_json::from_str(line).unwrap()
}

/// Asserts `kura fsck --root` finds nothing wrong.
pub fn fsck_clean(root: &Path) {
    let (ok, out, err) = kura_cmd(&["fsck", "--quiet", "--root", root.to_str().unwrap()]);
    assert!(ok, "fsck of {} not clean: {out} {err}", root.display());
}

/// Asserts `kura restore` refuses `src` into `root`, saying `why`, and leaves no store.
pub fn restore_refused(src: &Path, root: &Path, why: &str) {
    let (ok, _, err) = kura_cmd(&[
        "restore",
        src.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(!ok, "restore of {} succeeded", src.display());
    assert!(err.contains(why), "expected {why:?} in {err}");
    assert!(
        !root.join("meta.redb").exists(),
        "a refused restore left a store behind"
    );
}

/// Records `n` blobs of 1 MiB (seeded by `from`) in the store under `root`.
pub fn seed_blobs(root: &Path, from: u32, n: u32) {
    let reg = Registry::open(root).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in from..from + n {
        let mut data = format!("blob {i}").into_bytes();
        data.resize(1 << 20, i as u8);
        let d = Digest::sha256_of(&data);
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
        rt.block_on(reg.put_blob(&RepoName::parse("big").unwrap(), &d, body))
            .unwrap();
    }
}
