//! `kura import` and buckets (the real gateway, Ceph RGW; tests/common/s3.rs): into a registry
//! whose blobs live in a bucket (no hard link is possible, so every blob is copied through a
//! verifying upload, a multipart one for a layer over a part), and from a bucket that
//! Distribution 2.8 itself filled through its s3 storage driver.

mod common;
mod import_support;
mod replication_support;

use common::s3::{Scratch, data, s3_config};
use common::s3_ops::{MIB, keys};
use common::spawn_kura_guarded;
use import_support::*;
use kura::config::StorageConfig;
use replication_support::{manifest_digest, referrers, wait_for};

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

/// Starts Distribution (Debian's `docker-registry`) on its s3 driver over `s3`'s bucket, its
/// `rootdirectory` being `s3`'s prefix; returns once `/v2/` answers.
async fn distribution_on_s3(
    dir: &std::path::Path,
    s3: &StorageConfig,
) -> (common::KillOnDrop, String) {
    let port = replication_support::free_port();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  s3:\n    accesskey: {}\n    \
             secretkey: {}\n    region: {}\n    regionendpoint: {}\n    bucket: {}\n    \
             rootdirectory: /{}\n    secure: false\n    v4auth: true\n  delete:\n    \
             enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            s3.access_key_id, s3.secret_access_key, s3.region, s3.endpoint, s3.bucket, s3.prefix
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("docker-registry");
    cmd.arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null());
    // Its AWS SDK reads AWS_* too (a CA bundle it cannot load makes it panic): the config
    // file says everything.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        cmd.env_remove(k);
    }
    let child = cmd
        .spawn()
        .expect("docker-registry (Debian package docker-registry) must be installed");
    let child = common::KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(20, "Distribution to answer /v2/", || {
        let url = format!("{base}/v2/");
        async move {
            let r = reqwest::get(url).await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_distribution_keeps_in_a_bucket_imports_and_pulls_with_the_same_digests() {
    let s3 = s3_config("import-src");
    let _scratch = Scratch(s3.prefix.clone());
    let (dd, kd, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut oci = OciDir::new(&work.path().join("src"));
    let amd = oci.image(
        "amd64",
        &[tar_of("big", &data(6 * MIB, 3)), tar_of("a", b"amd64")],
    );
    let arm = oci.image("arm64", &[tar_of("arm", b"arm64 only")]);
    let index = oci.index(&[("amd64", amd), ("arm64", arm)]);
    oci.tag("v1", &index);
    let (mut dist, d) = distribution_on_s3(dd.path(), &s3).await;
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", oci.dir.display()),
        &format!("docker://{}/team/app:v1", d.trim_start_matches("http://")),
    ]);
    let sig = push_signature(&d, "team/app", &index).await;
    dist.kill();
    let from = kd.path().join("source.toml");
    std::fs::write(&from, kura_toml(kd.path(), &s3)).unwrap();
    let from = from.to_str().unwrap();
    let root = kd.path().join("root");

    let (ok, plan, err) = import_from(&["--from-bucket", from, "--dry-run"]);
    assert!(ok, "{plan}\n{err}");
    let (ok, report, err) = import_from(&["--from-bucket", from, "--root", root.to_str().unwrap()]);
    assert!(ok, "{report}\n{err}");
    assert_eq!(
        report["manifests_new"], 4,
        "index, two images, signature: {report}"
    );
    assert_eq!(report["referrers_new"], 1, "{report}");
    assert_eq!(report["copied"], report["blobs_new"], "{report}");
    for k in [
        "manifests_new",
        "tags_new",
        "blobs_new",
        "links_new",
        "bytes_new",
    ] {
        assert_eq!(report[k], plan[k], "{k}: {report}");
    }
    let (ok, again, _) = import_from(&["--from-bucket", from, "--root", root.to_str().unwrap()]);
    assert!(ok && new_items(&again) == 0, "{again}");
    assert_fsck_clean(&root);

    let (_kura, k) = spawn_kura_guarded(&root, &[]);
    let out = work.path().join("out");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/team/app:v1", k.trim_start_matches("http://")),
        &format!("oci:{}:v1", out.display()),
    ]);
    assert_eq!(
        common::layout::tagged(&out, "v1")["digest"],
        index["digest"]
    );
    let source = common::layout::blobs(&oci.dir);
    for (digest, bytes) in common::layout::blobs(&out) {
        assert!(
            source.get(&digest) == Some(&bytes),
            "blob {digest} is not the source's"
        );
    }
    let subject = index["digest"].as_str().unwrap();
    assert_eq!(referrers(&k, "team/app", subject).await, [sig]);
}
