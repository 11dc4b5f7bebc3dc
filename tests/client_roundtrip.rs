//! The `kura` client binary against kura servers: layouts, indexes and `docker save` tarballs
//! pushed and pulled back with identical digests; blob skipping and mounting; copies between
//! and within registries (with referrers); tags, catalog, inspect and delete.

mod client_support;
mod common;

use client_support::{
    Client, Layout, OCI_INDEX, OCI_MANIFEST, entry, gzip, host_of, multi_platform, noise, p,
    reachable, read_blob, single_image, skopeo, tar_of,
};
use common::TestServer;
use kura::digest::Digest;
use serde_json::{Value, json};

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "blob")
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_layout_preserves_digests() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let c = Client::new();
    let image = format!("{host}/team/app:v1");

    let out = c
        .ok(&[
            "push",
            "--json",
            "--chunk-size",
            "1MiB",
            p(&src.dir),
            &image,
        ])
        .await;
    let done = out.events_of("done");
    assert_eq!(done.len(), 1, "{}", out.stdout);
    assert_eq!(done[0]["digest"], digest);
    assert_eq!(done[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(actions(&out.events()), ["uploaded"; 3]);

    let dest = tmp.path().join("pulled");
    let out = c.ok(&["pull", "--json", &image, p(&dest)]).await;
    assert_eq!(out.events_of("done")[0]["digest"], digest);
    assert_eq!(actions(&out.events()), ["downloaded"; 3]);
    let pulled = entry(&dest, Some("v1"));
    assert_eq!(pulled["digest"], digest);
    assert_eq!(pulled["mediaType"], OCI_MANIFEST);
    assert_eq!(reachable(&dest, digest), reachable(&src.dir, digest));
    assert_eq!(reachable(&dest, digest).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_again_skips_blobs_the_registry_has_and_quiet_prints_the_digest() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let c = Client::new();
    let image = format!("{host}/team/app:v1");
    c.ok(&["push", "-q", p(&src.dir), &image]).await;

    let out = c.ok(&["push", "--json", p(&src.dir), &image]).await;
    assert_eq!(actions(&out.events()), ["exists"; 3]);

    let out = c
        .ok(&[
            "push",
            "--quiet",
            p(&src.dir),
            &format!("{host}/team/app:v1b"),
        ])
        .await;
    assert_eq!(
        out.stdout,
        format!("{}\n", desc["digest"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_mount_from_links_blobs_instead_of_uploading() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, _) = single_image(&tmp.path().join("src"));
    let c = Client::new();
    c.ok(&["push", "-q", p(&src.dir), &format!("{host}/team/base:v1")])
        .await;
    let out = c
        .ok(&[
            "push",
            "--json",
            "--mount-from",
            "team/base",
            p(&src.dir),
            &format!("{host}/team/app:v1"),
        ])
        .await;
    assert_eq!(actions(&out.events()), ["mounted"; 3]);
    for e in out.events_of("blob") {
        assert_eq!(e["from"], "team/base");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_index_round_trips_every_platform() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, index, children) = multi_platform(&tmp.path().join("src"));
    let index_digest = index["digest"].as_str().unwrap();
    let c = Client::new();
    let image = format!("{host}/team/multi:v2");

    let out = c.ok(&["push", "--json", p(&src.dir), &image]).await;
    assert_eq!(out.events_of("done")[0]["mediaType"], OCI_INDEX);
    // 2 configs, 1 shared layer, 2 app layers.
    assert_eq!(out.events_of("blob").len(), 5);
    let manifests: Vec<Value> = out.events_of("manifest");
    assert_eq!(manifests.len(), 3);
    assert_eq!(manifests[2]["digest"], index_digest, "the index goes last");

    let dest = tmp.path().join("all");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    let e = entry(&dest, Some("v2"));
    assert_eq!(
        (e["digest"].as_str(), e["mediaType"].as_str()),
        (Some(index_digest), Some(OCI_INDEX))
    );
    let all = reachable(&dest, index_digest);
    assert_eq!(all, reachable(&src.dir, index_digest));
    for child in &children {
        assert!(all.contains(child["digest"].as_str().unwrap()));
    }

    let dest = tmp.path().join("arm");
    let out = c
        .ok(&[
            "pull",
            "--json",
            "--platform",
            "linux/arm64",
            &image,
            p(&dest),
        ])
        .await;
    let arm = children[1]["digest"].as_str().unwrap();
    assert_eq!(out.events_of("done")[0]["digest"], arm);
    assert_eq!(entry(&dest, Some("v2"))["digest"], arm);
    assert_eq!(reachable(&dest, arm), reachable(&src.dir, arm));

    let out = c
        .run(&[
            "pull",
            "--platform",
            "linux/s390x",
            &image,
            p(&tmp.path().join("none")),
        ])
        .await;
    assert!(
        !out.success && out.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_entries_are_chosen_by_name_or_pushed_together_as_an_index() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("src"));
    let one = layout.image("amd64", &[(&[("a", b"one")], false)]);
    let two = layout.image("arm64", &[(&[("a", b"two")], false)]);
    layout.tag(&one, "one");
    layout.tag(&two, "two");
    let c = Client::new();

    let out = c
        .ok(&[
            "push",
            "-q",
            &format!("{}:two", p(&layout.dir)),
            &format!("{host}/team/sel:two"),
        ])
        .await;
    assert_eq!(out.stdout.trim(), two["digest"]);
    let out = c
        .ok(&[
            "push",
            "-q",
            "--ref-name",
            "one",
            p(&layout.dir),
            &format!("{host}/team/sel:one"),
        ])
        .await;
    assert_eq!(out.stdout.trim(), one["digest"]);

    let out = c
        .ok(&[
            "push",
            "--json",
            p(&layout.dir),
            &format!("{host}/team/sel:both"),
        ])
        .await;
    let done = &out.events_of("done")[0];
    let index_json = std::fs::read(layout.dir.join("index.json")).unwrap();
    assert_eq!(done["mediaType"], OCI_INDEX);
    assert_eq!(done["digest"], Digest::sha256_of(&index_json).to_string());

    let out = c
        .run(&[
            "push",
            "--ref-name",
            "three",
            p(&layout.dir),
            &format!("{host}/team/sel:x"),
        ])
        .await;
    assert!(
        !out.success && out.stderr.contains("one, two"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_save_tarball_push_keeps_config_and_layers_byte_for_byte() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let src_manifest: Value =
        serde_json::from_slice(&read_blob(&src.dir, desc["digest"].as_str().unwrap())).unwrap();
    let src_config: Value = serde_json::from_slice(&read_blob(
        &src.dir,
        src_manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    // skopeo writes the `docker save` format: manifest.json, <hex>.json, one .tar per layer.
    let tarball = tmp.path().join("app.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", p(&src.dir)),
        &format!("docker-archive:{}:team/app:v1", p(&tarball)),
    ])
    .await;

    let c = Client::new();
    let image = format!("{host}/team/saved:v1");
    let out = c.ok(&["push", "--json", p(&tarball), &image]).await;
    let digest = out.events_of("done")[0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    let manifest: Value = serde_json::from_slice(&read_blob(&dest, &digest)).unwrap();
    let config_bytes = read_blob(&dest, manifest["config"]["digest"].as_str().unwrap());
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config["rootfs"], src_config["rootfs"]);
    assert_eq!(config["architecture"], "amd64");
    // Layers went up as the archive's uncompressed tars: each digest is its diff_id.
    let layer_digests: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let diff_ids: Vec<&Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(layer_digests, diff_ids);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
}

/// A classic `docker save` archive: `<id>/layer.tar` layers (the second a symlink to the
/// first, as docker writes repeated layers), `<hex>.json` config, `manifest.json`.
fn classic_archive(layer_a: &[u8], layer_b: &[u8], diff_ids: &[String]) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", Digest::sha256_of(&config).hex());
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": ["team/classic:v3"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    file(&mut b, "aaa/layer.tar", layer_a);
    file(&mut b, "aaa/VERSION", b"1.0");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
        .unwrap();
    file(&mut b, "ccc/layer.tar", layer_b);
    file(&mut b, &config_name, &config);
    file(&mut b, "manifest.json", &manifest);
    file(&mut b, "repositories", br#"{"team/classic":{"v3":"ccc"}}"#);
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzipped_classic_docker_save_with_linked_layers_is_pushed() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let layer_a = tar_of(&[("etc/a", b"layer a")]);
    let layer_b = tar_of(&[("etc/b", &noise(50_000, 9))]);
    let (da, db) = (
        Digest::sha256_of(&layer_a).to_string(),
        Digest::sha256_of(&layer_b).to_string(),
    );
    let archive = tmp.path().join("classic.tar.gz");
    std::fs::write(
        &archive,
        gzip(&classic_archive(
            &layer_a,
            &layer_b,
            &[da.clone(), da.clone(), db.clone()],
        )),
    )
    .unwrap();

    let c = Client::new();
    let image = format!("{host}/team/classic:v3");
    let out = c.ok(&["push", "--json", p(&archive), &image]).await;
    let digest = out.events_of("done")[0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Layer a appears twice but is one blob.
    assert_eq!(out.events_of("blob").len(), 3);

    let dest = tmp.path().join("pulled");
    c.ok(&["pull", "-q", &image, p(&dest)]).await;
    let m: Value = serde_json::from_slice(&read_blob(&dest, &digest)).unwrap();
    let layers: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers, [da.as_str(), da.as_str(), db.as_str()]);
    assert_eq!(read_blob(&dest, &da), layer_a);

    // An archive whose layer does not match its config's diff_id is refused.
    let bad = tmp.path().join("bad.tar");
    std::fs::write(
        &bad,
        classic_archive(&layer_a, &layer_b, &[db.clone(), db.clone(), db.clone()]),
    )
    .unwrap();
    let out = c
        .run(&["push", p(&bad), &format!("{host}/team/classic:bad")])
        .await;
    assert!(
        !out.success && out.stderr.contains("diff_ids"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_catalog_inspect_and_delete_report_the_registry_state() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let digest = desc["digest"].as_str().unwrap();
    let c = Client::new();
    for r in ["team/app:v1", "team/app:v2", "other/x:latest"] {
        c.ok(&["push", "-q", p(&src.dir), &format!("{host}/{r}")])
            .await;
    }

    let out = c.ok(&["tags", &format!("{host}/team/app")]).await;
    assert_eq!(out.stdout, "v1\nv2\n");
    let out = c.ok(&["tags", "--json", &format!("{host}/team/app")]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"name": "team/app", "tags": ["v1", "v2"]})
    );
    let out = c.ok(&["catalog", &host]).await;
    assert_eq!(out.stdout, "other/x\nteam/app\n");

    let out = c
        .ok(&["inspect", "--json", &format!("{host}/team/app:v1")])
        .await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["digest"], digest);
    assert_eq!(v["config"]["architecture"], "amd64");
    assert_eq!(v["manifest"]["layers"].as_array().unwrap().len(), 2);
    let out = c.ok(&["inspect", &format!("{host}/team/app:v1")]).await;
    assert!(
        out.stdout.contains(&format!("Digest:     {digest}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Config:\n{") && out.stdout.contains("\"architecture\": \"amd64\"")
    );
    let out = c
        .ok(&["inspect", "-q", &format!("{host}/team/app:v2")])
        .await;
    assert_eq!(out.stdout.trim(), digest);

    c.ok(&["delete", &format!("{host}/team/app:v2")]).await;
    let out = c.ok(&["tags", &format!("{host}/team/app")]).await;
    assert_eq!(out.stdout, "v1\n");
    c.ok(&["delete", &format!("{host}/other/x@{digest}")]).await;
    let out = c
        .run(&["inspect", &format!("{host}/other/x@{digest}")])
        .await;
    assert!(
        !out.success && out.stderr.contains("MANIFEST_UNKNOWN"),
        "{}",
        out.stderr
    );
    let out = c.run(&["delete", &format!("{host}/team/app")]).await;
    assert!(!out.success, "a bare repository is not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_between_two_servers_keeps_every_platform_and_referrers() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let (ha, hb) = (host_of(&a.base), host_of(&b.base));
    let tmp = tempfile::tempdir().unwrap();
    let (src, index, children) = multi_platform(&tmp.path().join("src"));
    let index_digest = index["digest"].as_str().unwrap();
    let c = Client::new();
    c.ok(&["push", "-q", p(&src.dir), &format!("{ha}/team/app:v2")])
        .await;

    // An SBOM-like referrer of the index, pushed over plain HTTP.
    let empty = common::push_blob(&a, "team/app", b"{}").await;
    let sbom = common::push_blob(&a, "team/app", b"{\"sbom\":true}").await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.kura.test.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": "application/json", "digest": sbom.to_string(), "size": 13}],
        "subject": {"mediaType": OCI_INDEX, "digest": index_digest, "size": index["size"]},
    }))
    .unwrap();
    let referrer_digest = Digest::sha256_of(&referrer).to_string();
    let r = common::put_manifest(&a, "team/app", &referrer_digest, OCI_MANIFEST, &referrer).await;
    assert_eq!(r.status(), 201);

    let out = c
        .ok(&[
            "copy",
            "--json",
            "--referrers",
            &format!("{ha}/team/app:v2"),
            &format!("{hb}/mirror/app"),
        ])
        .await;
    assert_eq!(out.events_of("done")[0]["digest"], index_digest);
    assert_eq!(
        actions(&out.events()),
        ["uploaded"; 7],
        "5 image blobs, 2 referrer blobs"
    );

    // The copy is complete: pulled back from b, it is the source layout's image.
    let dest = tmp.path().join("from-b");
    c.ok(&["pull", "-q", &format!("{hb}/mirror/app:v2"), p(&dest)])
        .await;
    assert_eq!(
        reachable(&dest, index_digest),
        reachable(&src.dir, index_digest)
    );
    for child in &children {
        let d = child["digest"].as_str().unwrap();
        let r = common::client()
            .head(b.url(&format!("/v2/mirror/app/manifests/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "child {d}");
    }
    let refs: Value = common::client()
        .get(b.url(&format!("/v2/mirror/app/referrers/{index_digest}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refs["manifests"][0]["digest"], referrer_digest.as_str());
    assert_eq!(
        refs["manifests"][0]["artifactType"],
        "application/vnd.kura.test.sbom"
    );

    // Without --referrers they stay behind.
    c.ok(&[
        "copy",
        "-q",
        &format!("{ha}/team/app:v2"),
        &format!("{hb}/plain/app:v2"),
    ])
    .await;
    let refs: Value = common::client()
        .get(b.url(&format!("/v2/plain/app/referrers/{index_digest}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refs["manifests"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_within_one_registry_mounts_blobs() {
    let s = TestServer::start().await;
    let host = host_of(&s.base);
    let tmp = tempfile::tempdir().unwrap();
    let (src, desc) = single_image(&tmp.path().join("src"));
    let c = Client::new();
    c.ok(&["push", "-q", p(&src.dir), &format!("{host}/team/app:v1")])
        .await;
    let out = c
        .ok(&[
            "copy",
            "--json",
            &format!("{host}/team/app:v1"),
            &format!("{host}/team/copy:stable"),
        ])
        .await;
    assert_eq!(actions(&out.events()), ["mounted"; 3]);
    assert_eq!(out.events_of("done")[0]["digest"], desc["digest"]);
    let out = c.ok(&["tags", &format!("{host}/team/copy")]).await;
    assert_eq!(out.stdout, "stable\n");
}
