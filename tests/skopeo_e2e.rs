//! End-to-end interoperability with `skopeo` (containers/image): OCI layouts built by the test
//! are copied into kura and back with `--preserve-digests`, and every digest must survive.
//!
//! These tests need the `skopeo` binary on PATH (Debian/Ubuntu: `apt-get install skopeo`).
//! They fail, rather than skip, when it is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use common::layout::{REF_NAME, assert_same_blobs, blob_of, tagged};
use kura::digest::Digest;
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Runs `skopeo <args>` on a blocking thread; returns stdout, panicking with stderr on failure.
async fn skopeo(args: Vec<String>) -> Vec<u8> {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("--command-timeout=120s")
            .args(&args)
            .output()
    })
    .await
    .expect("skopeo task");
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `skopeo` binary is not on PATH; these end-to-end tests require it \
             (Debian/Ubuntu: `apt-get install skopeo`)"
        ),
        Err(e) => panic!("running skopeo {shown}: {e}"),
    };
    assert!(
        out.status.success(),
        "skopeo {shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A one-file POSIX (ustar) tar archive holding `name` with `content`.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100);
    let mut header = [0u8; 512];
    let field = |h: &mut [u8; 512], off: usize, v: &[u8]| h[off..off + v.len()].copy_from_slice(v);
    field(&mut header, 0, name.as_bytes());
    field(&mut header, 100, b"0000644\0"); // mode
    field(&mut header, 108, b"0000000\0"); // uid
    field(&mut header, 116, b"0000000\0"); // gid
    field(
        &mut header,
        124,
        format!("{:011o}\0", content.len()).as_bytes(),
    );
    field(&mut header, 136, b"00000000000\0"); // mtime
    field(&mut header, 148, b"        "); // checksum, as spaces while summing
    header[156] = b'0'; // regular file
    field(&mut header, 257, b"ustar\0");
    field(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    field(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().next_multiple_of(512), 0);
    tar.extend_from_slice(&[0u8; 1024]); // end-of-archive marker
    tar
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip stream of `data` using stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none())); // BFINAL, BTYPE=00
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// An OCI image layout under construction: blobs written as they are added.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `data` as a blob; returns a descriptor for it.
    fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let d = Digest::sha256_of(data);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), data).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()})
    }

    /// Writes an image (config + layers) for `arch`; returns the manifest bytes and descriptor.
    fn image(&self, arch: &str, layers: &[(&str, Vec<u8>)]) -> (Vec<u8>, Value) {
        let layer_descs: Vec<Value> = layers.iter().map(|(mt, d)| self.blob(mt, d)).collect();
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Labels": {"kura.test": arch}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(mt, d)| {
                // diff_ids are digests of the uncompressed tar.
                let tar = if *mt == OCI_LAYER_GZIP { ungzip_stored(d) } else { d.clone() };
                Digest::sha256_of(&tar).to_string()
            }).collect::<Vec<_>>()},
        });
        let config_desc = self.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
            "annotations": {"org.opencontainers.image.title": format!("kura e2e {arch}")},
        }))
        .unwrap();
        let desc = self.blob(OCI_MANIFEST, &manifest);
        (manifest, desc)
    }

    /// Writes `index.json` naming `desc` as tag `tag`.
    fn tag(&self, mut desc: Value, tag: &str) {
        desc["annotations"] = json!({ REF_NAME: tag });
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Inverse of `gzip_stored` (only for streams it produced).
fn ungzip_stored(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 10;
    loop {
        let last = gz[i] & 1 == 1;
        let len = u16::from_le_bytes([gz[i + 1], gz[i + 2]]) as usize;
        out.extend_from_slice(&gz[i + 5..i + 5 + len]);
        i += 5 + len;
        if last {
            return out;
        }
    }
}

async fn list_tags(image: &str) -> Vec<String> {
    let out = skopeo(vec![
        "list-tags".into(),
        "--tls-verify=false".into(),
        image.into(),
    ])
    .await;
    let v: Value = serde_json::from_slice(&out).expect("list-tags JSON");
    serde_json::from_value(v["Tags"].clone()).expect("Tags")
}

async fn inspect_raw(image: &str) -> Vec<u8> {
    skopeo(vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        "--raw".into(),
        image.into(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_oci_layout_with_identical_digests() {
    skopeo_round_trips_oci_layout_with_identical_digests_with(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_oci_layout_with_identical_digests_on_s3() {
    skopeo_round_trips_oci_layout_with_identical_digests_with(
        TestServer::start_on(&common::s3::s3_config(
            "skopeo_round_trips_oci_layout_with_ident",
        ))
        .await,
    )
    .await;
}

async fn skopeo_round_trips_oci_layout_with_identical_digests_with(s: TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));

    let layout = Layout::new(&src);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let (manifest, desc) = layout.image(
        "amd64",
        &[
            (
                OCI_LAYER_TAR,
                tar_with_file("etc/kura-e2e", b"hello from kura\n"),
            ),
            (
                OCI_LAYER_GZIP,
                gzip_stored(&tar_with_file("data.bin", &big)),
            ),
        ],
    );
    layout.tag(desc.clone(), "v1");
    let remote = format!("docker://{}/e2e/image:v1", s.addr);

    skopeo(vec![
        "copy".into(),
        "--preserve-digests".into(),
        "--dest-tls-verify=false".into(),
        format!("oci:{}:v1", src.display()),
        remote.clone(),
    ])
    .await;

    // The registry serves the exact manifest bytes under the tag.
    assert!(
        inspect_raw(&remote).await == manifest,
        "skopeo inspect --raw differs from the pushed manifest"
    );
    assert_eq!(
        list_tags(&format!("docker://{}/e2e/image", s.addr)).await,
        ["v1"]
    );
    let r = common::client()
        .head(s.url("/v2/e2e/image/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        desc["digest"].as_str().unwrap()
    );

    skopeo(vec![
        "copy".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        remote.clone(),
        format!("oci:{}:v1", dst.display()),
    ])
    .await;

    let back = tagged(&dst, "v1");
    assert_eq!(back["digest"], desc["digest"], "manifest digest");
    assert_eq!(back["size"], desc["size"]);
    assert_eq!(back["mediaType"], OCI_MANIFEST);
    assert!(blob_of(&dst, &back) == manifest, "manifest bytes");
    assert_same_blobs(&src, &dst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_multi_platform_index_with_identical_digests() {
    skopeo_round_trips_multi_platform_index_with_identical_digests_with(TestServer::start().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_multi_platform_index_with_identical_digests_on_s3() {
    skopeo_round_trips_multi_platform_index_with_identical_digests_with(
        TestServer::start_on(&common::s3::s3_config(
            "skopeo_round_trips_multi_platform_index_",
        ))
        .await,
    )
    .await;
}

async fn skopeo_round_trips_multi_platform_index_with_identical_digests_with(s: TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));

    let layout = Layout::new(&src);
    // A base layer shared by both platforms, plus one layer of each platform's own.
    let shared = tar_with_file("etc/os-release", b"ID=kura-e2e\n");
    let (amd64, amd64_desc) = layout.image(
        "amd64",
        &[
            (OCI_LAYER_TAR, shared.clone()),
            (
                OCI_LAYER_GZIP,
                gzip_stored(&tar_with_file("bin/tool", b"\x7fELF amd64")),
            ),
        ],
    );
    let (arm64, arm64_desc) = layout.image(
        "arm64",
        &[
            (OCI_LAYER_TAR, shared.clone()),
            (
                OCI_LAYER_GZIP,
                gzip_stored(&tar_with_file("bin/tool", b"\x7fELF arm64")),
            ),
        ],
    );
    let with_platform = |mut d: Value, arch: &str| {
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        d
    };
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [with_platform(amd64_desc.clone(), "amd64"), with_platform(arm64_desc.clone(), "arm64")],
    }))
    .unwrap();
    let index_desc = layout.blob(OCI_INDEX, &index);
    layout.tag(index_desc.clone(), "v1");
    let remote = format!("docker://{}/e2e/multi:v1", s.addr);

    skopeo(vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--dest-tls-verify=false".into(),
        format!("oci:{}:v1", src.display()),
        remote.clone(),
    ])
    .await;

    // The index and each platform manifest are served byte for byte.
    assert!(
        inspect_raw(&remote).await == index,
        "index bytes via the tag"
    );
    for (manifest, desc) in [(&amd64, &amd64_desc), (&arm64, &arm64_desc)] {
        let by_digest = format!(
            "docker://{}/e2e/multi@{}",
            s.addr,
            desc["digest"].as_str().unwrap()
        );
        assert!(
            inspect_raw(&by_digest).await == *manifest,
            "child manifest bytes via {by_digest}"
        );
    }
    assert_eq!(
        list_tags(&format!("docker://{}/e2e/multi", s.addr)).await,
        ["v1"]
    );

    skopeo(vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        remote.clone(),
        format!("oci:{}:v1", dst.display()),
    ])
    .await;

    let back = tagged(&dst, "v1");
    assert_eq!(back["digest"], index_desc["digest"], "index digest");
    assert_eq!(back["mediaType"], OCI_INDEX);
    let back_index: Value = serde_json::from_slice(&blob_of(&dst, &back)).unwrap();
    let children: Vec<&Value> = back_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["digest"])
        .collect();
    assert_eq!(children, [&amd64_desc["digest"], &arm64_desc["digest"]]);
    assert!(blob_of(&dst, &back) == index, "index bytes");
    assert_same_blobs(&src, &dst);
}
