//! Many clients pushing the same layer into different repositories at once.

mod common;

use common::*;
use kura::digest::Digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_one_layer_leave_one_blob_file_and_valid_manifests() {
    let s = TestServer::start().await;
    let layer: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let ld = Digest::sha256_of(&layer);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let base = s.base.clone();
        let layer = layer.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let repo = format!("team{i}/app");
            // Chunked upload: POST, two PATCHes, PUT.
            let r = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            let half = layer.len() / 2;
            let r = c
                .patch(&loc)
                .header("Content-Range", format!("0-{}", half - 1))
                .body(layer[..half].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let r = c
                .patch(&loc)
                .header("Content-Range", format!("{half}-{}", layer.len() - 1))
                .body(layer[half..].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let d = Digest::sha256_of(&layer);
            let r = c.put(format!("{loc}?digest={d}")).send().await.unwrap();
            assert_eq!(r.status(), 201);
            let cfg = format!("{{\"i\":{i}}}");
            let r = c
                .post(format!(
                    "{base}/v2/{repo}/blobs/uploads/?digest={}",
                    Digest::sha256_of(cfg.as_bytes())
                ))
                .body(cfg.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let m = image_manifest(
                &(Digest::sha256_of(cfg.as_bytes()), cfg.len()),
                &[(d, layer.len())],
                serde_json::json!({}),
            );
            let r = c
                .put(format!("{base}/v2/{repo}/manifests/v1"))
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(m.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{repo}");
            (repo, m)
        }));
    }
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.unwrap());
    }
    // One blob file for the shared layer, and nothing left in uploads/.
    let blob_files: Vec<_> = std::fs::read_dir(s.dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n == ld.hex())
        .collect();
    assert_eq!(blob_files.len(), 1);
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    let c = client();
    for (repo, m) in &pushed {
        let r = c
            .get(s.url(&format!("/v2/{repo}/manifests/v1")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), m.as_slice());
        let r = c
            .get(s.url(&format!("/v2/{repo}/blobs/{ld}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(Digest::sha256_of(&r.bytes().await.unwrap()), ld);
    }
    // The shared layer is referenced by all 32 manifests.
    let row = s
        .registry
        .meta()
        .read(|t| kura::meta::blobs::get(t, &ld.to_string()))
        .unwrap()
        .unwrap();
    assert_eq!(row.refs, 32);
    assert_eq!(row.size, layer.len() as u64);
}
