//! Quota usage as stored: kept across restarts, computed for a v6 store (the v7 migration's
//! backfill) and for a namespace a reload adds, forgotten when its quota goes, verified and
//! repaired by fsck.

mod common;
mod quota_support;

use kura::meta::usage;
use kura::registry::Registry;
use quota_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let reg = Registry::open(dir.path()).unwrap();
        set_quotas(&reg, vec![ns_rule("keep/", 1 << 20)]);
        image(&reg, "keep/a", "v1", &[b"layer"]).await;
        reg.usage_report().unwrap()
    };
    let reg = Registry::open(dir.path()).unwrap();
    set_quotas(&reg, vec![ns_rule("keep/", 1 << 20)]);
    assert_eq!(reg.usage_report().unwrap(), before);
    assert!(before.namespaces[0].used_bytes > 0);
    fsck_clean(&reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_new_namespace_quota_computes_its_usage_and_removing_it_forgets_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let (_, a) = image(&reg, "late/a", "v1", &[b"shared layer"]).await;
    let (_, b) = image(&reg, "late/b", "v1", &[b"shared layer"]).await;
    assert_eq!(used(&reg, "ns:late/"), 0, "not tracked without a quota");
    // A live reload of the configuration file adds the quota.
    let file = dir.path().join("kura.toml");
    std::fs::write(&file, "").unwrap();
    let running = kura::config::Config::load(Some(&file), json!({})).unwrap();
    let source = kura::ops::reload::Source {
        config: Some(file.clone()),
        auth_config: None,
        overrides: json!({}),
    };
    let reloader = kura::ops::reload::Reloader::new(source, running, None);
    reloader.set_registry(reg.clone());
    std::fs::write(
        &file,
        "[[policies.quota]]\nnamespace = \"late/\"\nmax_bytes = \"1MiB\"\n",
    )
    .unwrap();
    let report = reloader.reload().unwrap();
    assert!(
        report.applied.contains(&"policies".to_string()),
        "{report:?}"
    );
    let want = a + b - "shared layer".len() as u64;
    assert_eq!(used(&reg, "ns:late/"), want);
    let report = reg.usage_report().unwrap();
    assert_eq!(report.namespaces[0].name, "late/");
    assert_eq!(report.namespaces[0].used_bytes, want);
    assert_eq!(report.namespaces[0].limit_bytes, Some(1 << 20));
    // Tracked from now on, as content changes.
    image(&reg, "late/c", "v1", &[b"another"]).await;
    fsck_clean(&reg);
    std::fs::write(&file, "").unwrap();
    reloader.reload().unwrap();
    let tracked = reg.meta().read(|t| usage::tracked_namespaces(t)).unwrap();
    assert!(tracked.is_empty());
    assert_eq!(used(&reg, "ns:late/"), 0);
    assert!(reg.usage_report().unwrap().namespaces.is_empty());
    fsck_clean(&reg);
}

#[test]
fn a_v6_store_gets_the_usage_of_its_repositories_computed() {
    use kura::meta::Meta;
    use kura::meta::tables::{BLOBS, MANIFESTS, REPO_BLOBS};
    use kura::migrations::MIGRATIONS;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(Meta::open_with(&path, &MIGRATIONS[..6]).unwrap());
    let (l, c, m) = (
        "sha256:".to_string() + &"1".repeat(64),
        "sha256:".to_string() + &"2".repeat(64),
        "sha256:".to_string() + &"3".repeat(64),
    );
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut blobs = txn.open_table(BLOBS).unwrap();
            blobs.insert(l.as_str(), (1000, 2, 5)).unwrap();
            blobs.insert(c.as_str(), (100, 2, 5)).unwrap();
            blobs.insert(m.as_str(), (10, 2, 5)).unwrap();
            let mut links = txn.open_table(REPO_BLOBS).unwrap();
            let mut revs = txn.open_table(MANIFESTS).unwrap();
            let rec = json!({"media_type": OCI, "size": 10, "blobs": [&c, &l], "manifests": [], "created": 1});
            for repo in ["t/a", "t/b"] {
                links.insert((repo, l.as_str()), 1).unwrap();
                links.insert((repo, c.as_str()), 1).unwrap();
                revs.insert(
                    (repo, m.as_str()),
                    serde_json::to_vec(&rec).unwrap().as_slice(),
                )
                .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let meta = Meta::open(&path).unwrap();
    let get = |scope: &str| meta.read(|t| usage::get(t, scope)).unwrap();
    assert_eq!(get("repo:t/a"), 1110);
    assert_eq!(get("repo:t/b"), 1110);
    let problems = meta.read(|t| usage::verify(t)).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_and_repairs_a_wrong_usage_row() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let (_, total) = image(&reg, "fix/a", "v1", &[b"layer"]).await;
    reg.meta()
        .write(|t| {
            t.put_usage("repo:fix/a", 1)?;
            Ok(())
        })
        .unwrap();
    let report = kura::fsck::fsck(&reg, false, false).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("usage of repo:fix/a is 1 bytes")),
        "{report}"
    );
    kura::fsck::fsck(&reg, true, false).unwrap();
    assert_eq!(used(&reg, "repo:fix/a"), total);
    fsck_clean(&reg);
}
