//! Helpers for the tests of kura's operations on a bucket (s3_migrate, s3_gc_fsck,
//! s3_redirect): a raw S3 client for looking behind kura's back, pushes, and byte-for-byte checks.

use std::collections::BTreeMap;

use super::s3::{BUCKET, gateway, raw};
use super::{client, image_manifest};
use futures_util::StreamExt;
use kura::digest::Digest;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;

pub const MIB: usize = 1024 * 1024;

/// Every key under `<prefix>/<under>`, relative to the prefix, sorted.
pub async fn keys(prefix: &str, under: &str) -> Vec<String> {
    let root = Key::from(format!("{prefix}/{under}"));
    let mut out: Vec<String> = raw()
        .list(Some(&root))
        .map(|m| m.unwrap().location.as_ref()[prefix.len() + 1..].to_string())
        .collect()
        .await;
    out.sort();
    out
}

pub fn blob_key(prefix: &str, d: &Digest) -> Key {
    Key::from(format!("{prefix}/blobs/sha256/{}", d.hex()))
}

pub async fn put_object(key: &Key, bytes: Vec<u8>) {
    raw().put(key, PutPayload::from(bytes)).await.unwrap();
}

pub async fn delete_object(key: &Key) {
    raw().delete(key).await.unwrap();
}

/// Pushes `data` to `repo` of the registry at `base` in one `POST ?digest=`.
pub async fn push_blob_at(base: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "push of {d} to {repo}");
    d
}

/// A pushed image: its manifest and every blob it names, as bytes by digest.
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}

/// Pushes a config and `layers` and a manifest over them tagged `tag`.
pub async fn push_image_at(base: &str, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Pushed {
    let config = format!("{{\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}").into_bytes();
    let cd = push_blob_at(base, repo, &config).await;
    let mut blobs = BTreeMap::from([(cd.clone(), config.clone())]);
    let mut descs = Vec::new();
    for l in layers {
        let d = push_blob_at(base, repo, l).await;
        descs.push((d.clone(), l.len()));
        blobs.insert(d, l.clone());
    }
    let manifest = image_manifest(&(cd, config.len()), &descs, json!({}));
    let r = client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "manifest {repo}:{tag}");
    Pushed {
        repo: repo.into(),
        tag: tag.into(),
        manifest,
        blobs,
    }
}

/// The path of a `Location` (absolute or not).
pub fn path_of(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_string(),
        None => location.to_string(),
    }
}

/// Closes the upload at `loc` on the registry at `base` with `digest` and no further bytes,
/// asserting the 201.
pub async fn close_upload(base: &str, loc: &str, digest: &Digest) {
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = client()
        .put(format!("{base}{loc}{sep}digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "PUT on {base}: {:?}", r.text().await);
}

/// The body of a `GET` that must answer 200.
pub async fn get_ok(url: &str) -> Vec<u8> {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

/// Asserts the registry at `base` serves every blob and the manifest of `img` byte for byte.
pub async fn assert_serves(base: &str, img: &Pushed) {
    let m = get_ok(&format!("{base}/v2/{}/manifests/{}", img.repo, img.tag)).await;
    assert_eq!(m, img.manifest, "manifest {}:{}", img.repo, img.tag);
    for (d, bytes) in &img.blobs {
        let got = get_ok(&format!("{base}/v2/{}/blobs/{d}", img.repo)).await;
        assert!(got == *bytes, "blob {d} of {} differs", img.repo);
    }
}

/// The keys of the multipart uploads in progress under `<prefix>/` (S3 ListMultipartUploads,
/// which object_store does not offer: signed by curl, as the fixture creates the bucket).
pub fn multipart_uploads(prefix: &str) -> Vec<String> {
    let g = gateway();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", g.region))
        .arg("-H")
        .arg("x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        .arg("--user")
        .arg(format!("{}:{}", g.access_key, g.secret_key))
        .arg(format!(
            // Sorted keys and an encoded `/`: SigV4's canonical query string.
            "{}/{BUCKET}?prefix={}%2F&uploads=",
            g.endpoint.trim_end_matches('/'),
            prefix.replace('/', "%2F")
        ))
        .output()
        .expect("run curl");
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(xml.contains("ListMultipartUploadsResult"), "{xml}");
    xml.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}
