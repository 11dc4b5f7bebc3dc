//! Interoperability with the `oci-client` crate (the Rust OCI distribution client): pushing and
//! pulling images, chunked uploads, image indexes and tag listing against an in-process kura.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::TestServer;
use kura::digest::Digest;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer, linux_amd64_resolver};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, ImageIndexEntry,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex, OciImageManifest, OciManifest,
    Platform,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

const MIB: usize = 1024 * 1024;

/// Deterministic pseudo-random bytes (xorshift64*), so large layers are incompressible and
/// any misplaced or dropped byte changes the digest.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> String {
    Digest::sha256_of(data).to_string()
}

/// An oci-client speaking plain HTTP to the test server.
fn oci_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

fn reference(s: &TestServer, repo_and_tag: &str) -> Reference {
    let r = format!("{}/{repo_and_tag}", s.addr);
    r.parse().unwrap_or_else(|e| panic!("reference {r}: {e:?}"))
}

fn image_config(note: &str) -> Config {
    let body = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"kura.test": note}},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    Config::oci_v1(serde_json::to_vec(&body).unwrap(), None)
}

/// The raw manifest bytes stored under `r` and the digest oci-client verified them against.
async fn raw_manifest(client: &Client, r: &Reference) -> (Bytes, String) {
    client
        .pull_manifest_raw(
            r,
            &RegistryAuth::Anonymous,
            &[OCI_IMAGE_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE],
        )
        .await
        .expect("pull_manifest_raw")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_and_pulls_multi_layer_image_byte_for_byte() {
    oci_client_pushes_and_pulls_multi_layer_image_byte_for_byte_with(TestServer::start().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_and_pulls_multi_layer_image_byte_for_byte_on_s3() {
    oci_client_pushes_and_pulls_multi_layer_image_byte_for_byte_with(
        TestServer::start_on(&common::s3::s3_config(
            "oci_client_pushes_and_pulls_multi_layer_",
        ))
        .await,
    )
    .await;
}

async fn oci_client_pushes_and_pulls_multi_layer_image_byte_for_byte_with(s: TestServer) {
    let client = oci_client();
    let auth = RegistryAuth::Anonymous;
    let image = reference(&s, "interop/multi-layer:v1");

    let layers = vec![
        ImageLayer::oci_v1(b"a small first layer\n".to_vec(), None),
        ImageLayer::oci_v1_gzip(pseudo_random(3 * MIB + 12_345, 1), None),
        ImageLayer::oci_v1(pseudo_random(64 * 1024 + 1, 2), None),
    ];
    let config = image_config("multi-layer");
    let pushed = client
        .push(&image, &layers, config.clone(), &auth, None)
        .await
        .expect("push image");

    // What oci-client computes for the manifest it sent.
    let expected = OciImageManifest::build(&layers, &config, None);
    let (raw, raw_digest) = raw_manifest(&client, &image).await;
    assert_eq!(raw_digest, sha256(&raw), "manifest digest header");
    assert!(
        pushed
            .manifest_url
            .ends_with(&format!("/manifests/{raw_digest}")),
        "push Location {} names the manifest digest {raw_digest}",
        pushed.manifest_url
    );
    assert!(
        pushed
            .config_url
            .ends_with(&format!("/blobs/{}", config.sha256_digest())),
        "config Location {}",
        pushed.config_url
    );

    let pulled = client
        .pull(
            &image,
            &auth,
            vec![IMAGE_LAYER_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .expect("pull image");
    assert_eq!(pulled.digest.as_deref(), Some(raw_digest.as_str()));
    assert_eq!(
        client
            .fetch_manifest_digest(&image, &auth)
            .await
            .expect("HEAD manifest"),
        raw_digest
    );

    // Config: same bytes and media type.
    assert_eq!(pulled.config.data, config.data, "config bytes");
    assert_eq!(pulled.config.media_type, IMAGE_CONFIG_MEDIA_TYPE);

    // Manifest: same descriptors, in order.
    let manifest = pulled.manifest.expect("pulled manifest");
    assert_eq!(manifest.config.digest, expected.config.digest);
    assert_eq!(manifest.config.size, expected.config.size);
    let descriptors = |m: &OciImageManifest| {
        m.layers
            .iter()
            .map(|l| (l.digest.clone(), l.size, l.media_type.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(descriptors(&manifest), descriptors(&expected));

    // Layers: oci-client downloads them concurrently, so match them up by digest.
    assert_eq!(pulled.layers.len(), layers.len());
    let by_digest: HashMap<String, &ImageLayer> = pulled
        .layers
        .iter()
        .map(|l| (l.sha256_digest(), l))
        .collect();
    for (i, sent) in layers.iter().enumerate() {
        let got = by_digest
            .get(&sent.sha256_digest())
            .unwrap_or_else(|| panic!("layer {i} ({} bytes) missing from pull", sent.data.len()));
        assert_eq!(got.data, sent.data, "layer {i} bytes");
        assert_eq!(got.media_type, sent.media_type, "layer {i} media type");
    }

    // And each blob fetched on its own, in manifest order.
    for (i, (d, sent)) in manifest.layers.iter().zip(&layers).enumerate() {
        let mut out = Vec::new();
        client
            .pull_blob(&image, d, &mut out)
            .await
            .expect("pull_blob");
        assert!(out == sent.data, "layer {i} via pull_blob differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_in_chunks() {
    oci_client_pushes_in_chunks_with(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_in_chunks_on_s3() {
    oci_client_pushes_in_chunks_with(
        TestServer::start_on(&common::s3::s3_config("oci_client_pushes_in_chunks")).await,
    )
    .await;
}

async fn oci_client_pushes_in_chunks_with(s: TestServer) {
    let client = oci_client();
    let auth = RegistryAuth::Anonymous;
    let image = reference(&s, "interop/chunked:v1");

    // oci-client sends each stream item as one or more PATCHes of at most 4 MiB, each with
    // a Content-Range continuing the previous one, then a closing PUT ?digest=. The stream
    // APIs have no monolithic fallback, so success proves the chunked path worked.
    // Pieces: 1 MiB, 5 MiB + 7 (split by the client into 4 MiB + 1 MiB + 7), 333_333.
    let big = pseudo_random(6 * MIB + 333_340, 3);
    let pieces = {
        let (a, rest) = big.split_at(MIB);
        let (b, c) = rest.split_at(5 * MIB + 7);
        vec![
            Bytes::copy_from_slice(a),
            Bytes::copy_from_slice(b),
            Bytes::copy_from_slice(c),
        ]
    };
    assert_eq!(pieces.iter().map(Bytes::len).sum::<usize>(), big.len());
    let big_digest = sha256(&big);
    let url = client
        .push_blob_stream(
            &image,
            futures_util::stream::iter(pieces.into_iter().map(Ok)),
            &big_digest,
            Some(big.len() as u64),
        )
        .await
        .expect("chunked push with known digest");
    assert!(
        url.ends_with(&format!("/blobs/{big_digest}")),
        "blob Location {url}"
    );

    // The same again with the digest computed on the fly by the client.
    let second = pseudo_random(4 * MIB + 4097, 4);
    let pieces: Vec<_> = second
        .chunks(MIB + 17)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let resp = client
        .push_blob_stream_chunked(&image, futures_util::stream::iter(pieces))
        .await
        .expect("chunked push with computed digest");
    assert_eq!(resp.blob_digest, sha256(&second));
    assert_eq!(resp.size, second.len() as u64);

    // A blob bigger than the 4 MiB chunk limit through the plain push_blob path too.
    let third = pseudo_random(9 * MIB + 1, 5);
    client
        .push_blob(&image, third.clone(), &sha256(&third))
        .await
        .expect("push_blob");

    // Tie them into an image and pull it back.
    let config = image_config("chunked");
    client
        .push_blob(&image, config.data.clone(), &config.sha256_digest())
        .await
        .expect("push config");
    let layers = vec![
        ImageLayer::oci_v1(big.clone(), None),
        ImageLayer::oci_v1(second.clone(), None),
        ImageLayer::oci_v1(third.clone(), None),
    ];
    let manifest = OciImageManifest::build(&layers, &config, None);
    client
        .push_manifest(&image, &manifest.into())
        .await
        .expect("push manifest");

    let pulled = client
        .pull(&image, &auth, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("pull");
    assert_eq!(pulled.config.data, config.data);
    let by_digest: HashMap<String, Bytes> = pulled
        .layers
        .into_iter()
        .map(|l| (l.sha256_digest(), l.data))
        .collect();
    for (name, sent) in [("6 MiB", &big), ("4 MiB", &second), ("9 MiB", &third)] {
        let got = by_digest
            .get(&sha256(sent))
            .unwrap_or_else(|| panic!("{name} layer missing from pull"));
        assert!(got.as_ref() == sent.as_slice(), "{name} layer bytes differ");
    }
}

/// Pushes a one-layer image for `arch` to `image`; returns its index entry.
async fn push_platform_image(client: &Client, image: &Reference, arch: &str) -> ImageIndexEntry {
    let config = Config::oci_v1(
        serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap(),
        None,
    );
    let layers = vec![ImageLayer::oci_v1(
        pseudo_random(200_000, arch.len() as u64 + 10),
        None,
    )];
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    client
        .push(
            image,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .expect("push platform image");
    let (raw, digest) = raw_manifest(client, image).await;
    assert_eq!(digest, sha256(&raw));
    let platform: Platform =
        serde_json::from_value(serde_json::json!({"architecture": arch, "os": "linux"})).unwrap();
    ImageIndexEntry {
        media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
        digest,
        size: raw.len() as i64,
        platform: Some(platform),
        annotations: None,
        artifact_type: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_and_pulls_image_index() {
    let s = TestServer::start().await;
    let client = oci_client();
    let auth = RegistryAuth::Anonymous;

    let amd64 = push_platform_image(&client, &reference(&s, "interop/index:amd64"), "amd64").await;
    let arm64 = push_platform_image(&client, &reference(&s, "interop/index:arm64"), "arm64").await;
    assert_ne!(amd64.digest, arm64.digest);

    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: vec![amd64.clone(), arm64.clone()],
        artifact_type: None,
        annotations: None,
    };
    let image = reference(&s, "interop/index:multi");
    let url = client
        .push_manifest(&image, &OciManifest::ImageIndex(index))
        .await
        .expect("push image index");

    let (raw, index_digest) = raw_manifest(&client, &image).await;
    assert_eq!(index_digest, sha256(&raw));
    assert!(
        url.ends_with(&format!("/manifests/{index_digest}")),
        "index Location {url}"
    );

    // The index comes back as an index, listing both children by digest.
    let (pulled, digest) = client
        .pull_manifest(&image, &auth)
        .await
        .expect("pull index");
    assert_eq!(digest, index_digest);
    let OciManifest::ImageIndex(pulled) = pulled else {
        panic!("expected an image index, got {pulled}");
    };
    assert_eq!(
        pulled.media_type.as_deref(),
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE)
    );
    let children: Vec<_> = pulled
        .manifests
        .iter()
        .map(|m| (m.digest.clone(), m.size, m.platform.clone()))
        .collect();
    assert_eq!(
        children,
        vec![
            (amd64.digest.clone(), amd64.size, amd64.platform.clone()),
            (arm64.digest.clone(), arm64.size, arm64.platform.clone()),
        ]
    );

    // Resolving the index through a platform picks the right child.
    let resolve = |resolver: fn(&[ImageIndexEntry]) -> Option<String>| {
        Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            platform_resolver: Some(Box::new(resolver)),
            ..Default::default()
        })
    };
    let (m, child, list) = resolve(linux_amd64_resolver)
        .pull_image_manifest_and_list_digest(&image, &auth)
        .await
        .expect("resolve amd64");
    assert_eq!(child, amd64.digest);
    assert_eq!(list.as_deref(), Some(index_digest.as_str()));
    assert_eq!(m.layers.len(), 1);

    fn arm64_resolver(entries: &[ImageIndexEntry]) -> Option<String> {
        entries
            .iter()
            .find(|e| {
                e.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture.to_string() == "arm64")
            })
            .map(|e| e.digest.clone())
    }
    let (_, child, _) = resolve(arm64_resolver)
        .pull_image_manifest_and_list_digest(&image, &auth)
        .await
        .expect("resolve arm64");
    assert_eq!(child, arm64.digest);

    // Each child is also reachable by digest in the index's repository.
    for entry in [&amd64, &arm64] {
        let by_digest = image.clone_with_digest(entry.digest.clone());
        let (m, d) = client
            .pull_image_manifest(&by_digest, &auth)
            .await
            .expect("pull child by digest");
        assert_eq!(d, entry.digest);
        let mut cfg = Vec::new();
        client
            .pull_blob(&by_digest, &m.config, &mut cfg)
            .await
            .expect("child config");
        assert_eq!(sha256(&cfg), m.config.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_lists_tags() {
    let s = TestServer::start().await;
    let client = oci_client();
    let auth = RegistryAuth::Anonymous;

    let config = image_config("tags");
    let layers = vec![ImageLayer::oci_v1(b"tagged layer".to_vec(), None)];
    // Pushed out of order; "v10" sorts before "v2" lexically.
    for tag in ["v2", "latest", "v10"] {
        client
            .push(
                &reference(&s, &format!("interop/tags:{tag}")),
                &layers,
                config.clone(),
                &auth,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("push {tag}: {e}"));
    }
    // Another repository's tags must not leak into the listing.
    client
        .push(
            &reference(&s, "interop/other:zzz"),
            &layers,
            config.clone(),
            &auth,
            None,
        )
        .await
        .expect("push other repo");

    let image = reference(&s, "interop/tags:latest");
    let all = client
        .list_tags(&image, &auth, None, None)
        .await
        .expect("list tags");
    assert_eq!(all.name, "interop/tags");
    assert_eq!(all.tags, vec!["latest", "v10", "v2"]);

    // Paginated with n and last.
    let first = client
        .list_tags(&image, &auth, Some(2), None)
        .await
        .expect("first page");
    assert_eq!(first.tags, vec!["latest", "v10"]);
    let rest = client
        .list_tags(&image, &auth, Some(2), Some("v10"))
        .await
        .expect("second page");
    assert_eq!(rest.tags, vec!["v2"]);

    // All three tags name the same manifest.
    let digests: Vec<String> = {
        let mut v = Vec::new();
        for tag in &all.tags {
            let r = reference(&s, &format!("interop/tags:{tag}"));
            v.push(client.fetch_manifest_digest(&r, &auth).await.expect("HEAD"));
        }
        v
    };
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}
