//! End-to-end on a 3-node cluster: three `kura serve` children, each with a data directory of
//! its own, on one PostgreSQL database and one bucket prefix; requests of one client go to
//! any node. Needs PostgreSQL (`KURA_TEST_PG_URL` or a private cluster), Ceph RGW and skopeo.

mod common;

use common::client;
use common::cluster::{self, Node};
use common::layout::{assert_same_blobs, blobs, tagged};
use common::pg::TestDb;
use common::rt;
use common::s3::{data, delete_prefix, s3_config};
use common::s3_ops::{MIB, Pushed, assert_serves, close_upload, get_ok, path_of, push_image_at};
use kura::digest::Digest;
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn json_of(url: &str) -> Value {
    serde_json::from_slice(&get_ok(url).await).unwrap()
}

/// Uploads `blob` to `repo` in chunks of `chunk` bytes, each request on the next node in
/// turn (the `POST` on the first, the `PUT` on the one after the last chunk).
async fn chunked_across(nodes: &[Node], repo: &str, blob: &[u8], chunk: usize) -> Digest {
    let r = client()
        .post(nodes[0].url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = path_of(r.headers()["Location"].to_str().unwrap());
    let mut turn = 1;
    for (i, c) in blob.chunks(chunk).enumerate() {
        let node = &nodes[turn % nodes.len()];
        turn += 1;
        let start = i * chunk;
        let r = client()
            .patch(node.url(&loc))
            .header("Content-Range", format!("{start}-{}", start + c.len() - 1))
            .body(c.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk at {start} on {}", node.base);
        loc = path_of(r.headers()["Location"].to_str().unwrap());
    }
    let d = Digest::sha256_of(blob);
    close_upload(&nodes[turn % nodes.len()].base, &loc, &d).await;
    d
}

#[test]
fn a_three_node_cluster_serves_every_write_from_every_node() {
    let db = TestDb::new();
    let storage = s3_config("cluster-e2e");
    let nodes = cluster::start(3, &storage, &db.url);
    let work = tempfile::tempdir().unwrap();
    let other = rt().block_on(async {
        // One upload's chunks on all three nodes, across the 5 MiB part size.
        let layer = data(11 * MIB + 5, 3);
        let ld = chunked_across(&nodes, "team/app", &layer, 2 * MIB + 17).await;
        // Config on node 1, manifest on node 2.
        let config = br#"{"cluster":"e2e"}"#.to_vec();
        let cd = common::s3_ops::push_blob_at(&nodes[1].base, "team/app", &config).await;
        let manifest = common::image_manifest(
            &(cd.clone(), config.len()),
            &[(ld.clone(), layer.len())],
            json!({}),
        );
        let r = client()
            .put(nodes[2].url("/v2/team/app/manifests/v1"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let md = Digest::sha256_of(&manifest);
        let img = Pushed {
            repo: "team/app".into(),
            tag: "v1".into(),
            manifest: manifest.clone(),
            blobs: [(cd, config), (ld, layer)].into_iter().collect(),
        };
        // A second image pushed whole on node 0.
        let other = push_image_at(&nodes[0].base, "team/web", "latest", &[data(1000, 9)]).await;
        for n in &nodes {
            assert_serves(&n.base, &img).await;
            assert_serves(&n.base, &other).await;
            let by_digest = get_ok(&n.url(&format!("/v2/team/app/manifests/{md}"))).await;
            assert_eq!(by_digest, manifest, "manifest by digest on {}", n.base);
        }
        // Referrers pushed on node 0, listed on node 2.
        let empty = common::s3_ops::push_blob_at(&nodes[0].base, "team/app", b"{}").await;
        let subject =
            json!({"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": manifest.len()});
        let sbom = common::image_manifest(
            &(empty, 2),
            &[],
            json!({"artifactType": "application/vnd.example.sbom", "subject": subject}),
        );
        let sd = Digest::sha256_of(&sbom);
        let r = client()
            .put(nodes[0].url(&format!("/v2/team/app/manifests/{sd}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(sbom)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let refs = json_of(&nodes[2].url(&format!("/v2/team/app/referrers/{md}"))).await;
        assert_eq!(refs["manifests"][0]["digest"], sd.to_string().as_str());
        // Tags and catalog agree on every node.
        let tag_v2 = client()
            .put(nodes[1].url("/v2/team/app/manifests/v2"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(tag_v2.status(), 201);
        for n in &nodes {
            let tags = json_of(&n.url("/v2/team/app/tags/list")).await;
            assert_eq!(tags["tags"], json!(["v1", "v2"]), "tags on {}", n.base);
            let cat = json_of(&n.url("/v2/_catalog")).await;
            assert_eq!(
                cat["repositories"],
                json!(["team/app", "team/web"]),
                "catalog on {}",
                n.base
            );
        }
        // Untag on node 1, delete the manifest on node 0, collect on node 2: gone everywhere.
        for (n, reference) in [(&nodes[1], "v2".to_string()), (&nodes[0], md.to_string())] {
            let r = client()
                .delete(n.url(&format!("/v2/team/app/manifests/{reference}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "DELETE {reference} on {}", n.base);
        }
        let r = client()
            .post(nodes[2].url("/admin/gc?grace=0s&upload_max_age=1h"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "gc on node 2: {:?}", r.text().await);
        for n in &nodes {
            for path in [
                "/v2/team/app/manifests/v1".to_string(),
                format!("/v2/team/app/manifests/{md}"),
            ] {
                let r = client().get(n.url(&path)).send().await.unwrap();
                assert_eq!(r.status(), 404, "{path} on {} after the delete", n.base);
            }
            for d in img.blobs.keys() {
                let r = client()
                    .get(n.url(&format!("/v2/team/app/blobs/{d}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 404, "blob {d} on {} after gc", n.base);
            }
            assert_serves(&n.base, &other).await;
        }
        other
    });
    // The other image: deleted on node 0, collected by `kura gc --config` (the cluster's
    // configuration, not a node), gone on every node.
    let cfg = cluster::config_file(work.path(), &storage, &db.url);
    let rt = rt();
    let web = rt.block_on(async {
        let wd = Digest::sha256_of(&other.manifest);
        let r = client()
            .delete(nodes[0].url(&format!("/v2/team/web/manifests/{wd}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        other
    });
    let cfg_s = cfg.display().to_string();
    let (ok, out, err) = common::kura_cmd(&["gc", "--config", &cfg_s, "--grace", "0s"]);
    assert!(ok, "kura gc --config: {out}\n{err}");
    rt.block_on(async {
        for n in &nodes {
            for d in web.blobs.keys() {
                let r = client()
                    .get(n.url(&format!("/v2/team/web/blobs/{d}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 404, "blob {d} on {} after kura gc", n.base);
            }
        }
    });
    cluster::fsck_clean(&cfg);
    drop(nodes);
    delete_prefix(&storage.prefix);
}

fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (apt-get install {program}): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host(n: &Node) -> String {
    n.base.trim_start_matches("http://").to_string()
}

#[test]
fn skopeo_copies_into_one_node_and_out_of_another_with_every_digest() {
    let db = TestDb::new();
    let storage = s3_config("cluster-skopeo");
    let nodes = cluster::start(3, &storage, &db.url);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("src");
    let image = format!("{}:v1", layout.display());
    run(
        "umoci",
        &["init", "--layout", &layout.display().to_string()],
    );
    run("umoci", &["new", "--image", &image]);
    let file = work.path().join("hello.txt");
    std::fs::write(&file, data(3 * MIB, 5)).unwrap();
    let file_s = file.display().to_string();
    run(
        "umoci",
        &[
            "insert",
            "--rootless",
            "--image",
            &image,
            &file_s,
            "/hello.txt",
        ],
    );
    let skopeo = |tls: &str, from: String, to: String| {
        let copy = [
            "--insecure-policy",
            "--command-timeout=120s",
            "copy",
            "--preserve-digests",
        ];
        let mut args = copy.to_vec();
        args.extend([tls, from.as_str(), to.as_str()]);
        run("skopeo", &args);
    };
    skopeo(
        "--dest-tls-verify=false",
        format!("oci:{image}"),
        format!("docker://{}/e2e/img:v1", host(&nodes[0])),
    );
    let desc = tagged(&layout, "v1");
    let digest = desc["digest"].as_str().unwrap().to_string();
    // Out by tag from node 1, by digest from node 2.
    let by_tag = work.path().join("by-tag");
    skopeo(
        "--src-tls-verify=false",
        format!("docker://{}/e2e/img:v1", host(&nodes[1])),
        format!("oci:{}:v1", by_tag.display()),
    );
    let by_digest = work.path().join("by-digest");
    skopeo(
        "--src-tls-verify=false",
        format!("docker://{}/e2e/img@{digest}", host(&nodes[2])),
        format!("oci:{}:v1", by_digest.display()),
    );
    // umoci left the image's earlier revisions in the source layout: what was copied out is
    // the tagged image, byte for byte, whichever node served it.
    let src = blobs(&layout);
    for out in [&by_tag, &by_digest] {
        assert_eq!(
            tagged(out, "v1")["digest"],
            desc["digest"],
            "{}",
            out.display()
        );
        let got = blobs(out);
        let manifest: Value = serde_json::from_slice(&got[&digest]).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(
            got.len(),
            2 + layers.len(),
            "{}: manifest, config, layers",
            out.display()
        );
        for (d, bytes) in &got {
            assert!(
                src.get(d) == Some(bytes),
                "{d} in {} differs from the source",
                out.display()
            );
        }
    }
    assert_same_blobs(&by_tag, &by_digest);
    drop(nodes);
    delete_prefix(&storage.prefix);
}
