//! Images for the mirror tests: pushed (with a bearer token, or anonymously) and pulled with
//! raw HTTP, every byte and digest checked.

use crate::client_support::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, gzip, tar_of};
use crate::common::client;
use kura::digest::Digest;
use serde_json::json;

/// What clients send in `Accept` for a manifest.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A pushed image: its manifest and every blob (config first), bytes included.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

impl Image {
    /// An image whose layers are `layers` (opaque bytes, typed as gzipped tars) under a
    /// config naming `label`.
    pub fn opaque(label: &str, layers: &[Vec<u8>]) -> Image {
        let config = json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {"kura.test": label}},
            "rootfs": {"type": "layers", "diff_ids": []}});
        Self::build(serde_json::to_vec(&config).unwrap(), layers.to_vec())
    }

    /// A runnable image: one gzipped tar layer holding `files`, with a config whose
    /// `diff_ids` match (what podman and containerd unpack).
    pub fn runnable(label: &str, files: &[(&str, &[u8])]) -> Image {
        let tar = tar_of(files);
        let config = json!({"architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"kura.test": label}},
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&tar).to_string()]},
            "history": [{"created_by": "kura mirror test"}]});
        Self::build(serde_json::to_vec(&config).unwrap(), vec![gzip(&tar)])
    }

    fn build(config: Vec<u8>, layers: Vec<Vec<u8>>) -> Image {
        let desc = |t: &str, b: &[u8]| json!({"mediaType": t, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, &config),
            "layers": layers.iter().map(|l| desc(OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
        }))
        .unwrap();
        let mut blobs = vec![(Digest::sha256_of(&config), config)];
        blobs.extend(layers.into_iter().map(|l| (Digest::sha256_of(&l), l)));
        Image {
            digest: Digest::sha256_of(&manifest),
            manifest,
            blobs,
        }
    }

    /// The layers (every blob but the config).
    pub fn layers(&self) -> &[(Digest, Vec<u8>)] {
        &self.blobs[1..]
    }

    /// Total bytes of the blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// Pushes the image to `base` as `repo:tag` (with `bearer` when given).
    pub async fn push(&self, base: &str, repo: &str, tag: &str, bearer: Option<&str>) {
        let auth = |r: reqwest::RequestBuilder| match bearer {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        for (d, data) in &self.blobs {
            let r = auth(client().post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}")))
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "push blob {d} to {base}/{repo}");
        }
        let r = auth(client().put(format!("{base}/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(self.manifest.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 201, "push {repo}:{tag}: {:?}", r.text().await);
    }
}

/// A manifest `GET`: status, `Docker-Content-Digest`, body.
pub async fn get_manifest(base: &str, repo: &str, reference: &str) -> (u16, String, Vec<u8>) {
    get_manifest_url(&format!("{base}/v2/{repo}/manifests/{reference}")).await
}

/// A manifest `GET` of a full URL (e.g. with `?ns=`).
pub async fn get_manifest_url(url: &str) -> (u16, String, Vec<u8>) {
    let r = client()
        .get(url)
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let digest = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, digest, r.bytes().await.unwrap().to_vec())
}

/// A blob `GET`: the status and the whole body, or the error that ended the body early.
pub async fn get_blob(base: &str, repo: &str, d: &Digest) -> Result<(u16, Vec<u8>), String> {
    get_blob_url(&format!("{base}/v2/{repo}/blobs/{d}")).await
}

/// A blob `GET` of a full URL.
pub async fn get_blob_url(url: &str) -> Result<(u16, Vec<u8>), String> {
    let r = client().get(url).send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, body.to_vec()))
}

/// Pulls `repo:reference` from `base` and checks it is exactly `img`: the manifest byte for
/// byte under its digest, then every blob.
pub async fn pull_exact(base: &str, repo: &str, reference: &str, img: &Image) {
    let (status, digest, body) = get_manifest(base, repo, reference).await;
    assert_eq!(
        status,
        200,
        "manifest {repo}:{reference}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        digest,
        img.digest.to_string(),
        "digest of {repo}:{reference}"
    );
    assert!(body == img.manifest, "manifest bytes of {repo}:{reference}");
    for (d, data) in &img.blobs {
        let (status, got) = get_blob(base, repo, d)
            .await
            .unwrap_or_else(|e| panic!("blob {d} of {repo}: {e}"));
        assert_eq!(status, 200, "blob {d} of {repo}");
        assert!(got == *data, "blob {d} of {repo}: {} bytes", got.len());
    }
}
