//! `kura import` into a registry whose blobs live in a bucket (the real gateway, Ceph RGW;
//! tests/common/s3.rs): no hard link is possible, so every blob is copied through a verifying
//! upload (a multipart one for a layer over a part), and the registry serves them from there.

mod common;
mod import_support;
mod replication_support;

use common::s3::{Scratch, data, s3_config};
use common::s3_ops::{MIB, keys};
use common::spawn_kura_guarded;
use import_support::*;
use kura::config::StorageConfig;
use replication_support::manifest_digest;

fn kura_toml(root: &std::path::Path, s3: &StorageConfig) -> String {
    format!(
        "root = {:?}\n[storage]\nkind = \"s3\"\nbucket = {:?}\nprefix = {:?}\nendpoint = {:?}\n\
         region = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\npart_size = {}\n",
        root.display().to_string(),
        s3.bucket,
        s3.prefix,
        s3.endpoint,
        s3.region,
        s3.access_key_id,
        s3.secret_access_key,
        s3.part_size
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_bucket_copies_and_verifies_every_blob() {
    let s3 = s3_config("import");
    let _scratch = Scratch(s3.prefix.clone());
    let (sd, kd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t = DistTree::new(sd.path());
    // A layer over one part (a multipart copy) shared by two repositories, and small blobs.
    let big = data(6 * MIB + 5, 7);
    let shared = t.put_blob(&big);
    let mut images = Vec::new();
    for (repo, seed) in [("team/app", "app"), ("team/tool", "tool")] {
        let config = t.put_blob(format!("{{\"seed\":\"{seed}\"}}").as_bytes());
        let own = t.put_blob(seed.repeat(100).as_bytes());
        for d in [&config, &own, &shared] {
            t.link_layer(repo, d);
        }
        let m = t.manifest(
            repo,
            &image_manifest(&[(CONFIG, &config, 0)], &[&shared, &own]),
        );
        t.tag(repo, "v1", &m);
        images.push((repo, m, own));
    }
    let cfg = kd.path().join("kura.toml");
    std::fs::write(&cfg, kura_toml(&kd.path().join("root"), &s3)).unwrap();
    let cfg_arg = cfg.to_str().unwrap();

    let (ok, report, err) = import(&t.root, &["--config", cfg_arg]);
    assert!(ok, "{report}\n{err}");
    // config+own per image, the shared layer once, and the two manifests.
    assert_eq!(report["blobs_new"], 5, "{report}");
    assert_eq!(report["copied"], 5, "{report}");
    assert_eq!(report["hard_linked"], 0, "{report}");
    assert_eq!(report["links_new"], 6, "{report}");
    assert_eq!(report["manifests_new"], 2, "{report}");
    let stored = keys(&s3.prefix, "blobs").await;
    assert_eq!(stored.len(), 7, "{stored:?}");
    let (ok, again, _) = import(&t.root, &["--config", cfg_arg]);
    assert!(ok && new_items(&again) == 0, "{again}");
    let (ok, out, err) = common::kura_cmd(&["fsck", "--quiet", "--config", cfg_arg]);
    assert!(ok, "fsck: {out}\n{err}");

    let (_kura, k) = spawn_kura_guarded(&kd.path().join("root"), &["--config", cfg_arg]);
    for (repo, m, own) in &images {
        assert_eq!(manifest_digest(&k, repo, "v1").await, Some(m.to_string()));
        let got = reqwest::get(format!("{k}/v2/{repo}/blobs/{shared}"))
            .await
            .unwrap();
        assert!(
            got.bytes().await.unwrap() == big,
            "{repo}: the shared layer"
        );
        let got = reqwest::get(format!("{k}/v2/{repo}/blobs/{own}"))
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
    }
    assert!(stored.contains(&format!("blobs/sha256/{}", shared.hex())));
}
