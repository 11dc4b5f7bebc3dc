//! End-to-end interoperability with the ORAS Python client (`oras` on PyPI, oras-py): artifacts
//! with custom media types are pushed over plain HTTP and pulled back, an artifact with a
//! `subject` shows up in kura's referrers API, and kura's HTTP API serves what oras-py stored.
//!
//! These tests need `python3` with the `oras` package importable (`python3 -m pip install oras`).
//! They fail, rather than skip, when it is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use kura::digest::Digest;
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TITLE: &str = "org.opencontainers.image.title";

const THING_CONFIG: &str = "application/vnd.kura.thing.config.v1+json";
const THING_TEXT: &str = "application/vnd.kura.thing.text.v1";
const THING_DATA: &str = "application/vnd.kura.thing.data.v1";
const SBOM_TYPE: &str = "application/vnd.kura.sbom.v1+json";
const SBOM_LAYER: &str = "application/vnd.kura.sbom.layer.v1+json";

/// The oras-py driver: `python3 driver.py <registry> '<json request>'` prints one JSON line.
const DRIVER: &str = r#"
import json
import os
import sys

import oras.client
import oras.oci

registry, request = sys.argv[1], json.loads(sys.argv[2])
client = oras.client.OrasClient(hostname=registry, insecure=True)

# Count the HTTP methods oras-py sends, so the test can tell which upload flow it used.
methods = {}
do_request = client.do_request


def counting_do_request(url, method="GET", *args, **kwargs):
    methods[method] = methods.get(method, 0) + 1
    return do_request(url, method, *args, **kwargs)


client.do_request = counting_do_request
op = request["op"]
target = f"{registry}/{request['ref']}"

if op == "push":
    os.chdir(request["workdir"])
    subject = request.get("subject")
    response = client.push(
        target=target,
        files=request["files"],
        manifest_config=request.get("config"),
        manifest_annotations=request.get("annotations"),
        subject=oras.oci.Subject(**subject) if subject else None,
        do_chunked=request.get("chunk_size") is not None,
        chunk_size=request.get("chunk_size") or 16777216,
        quiet=True,
    )
    result = {
        "status": response.status_code,
        "headers": {k.lower(): v for k, v in response.headers.items()},
        "methods": methods,
    }
elif op == "pull":
    files = client.pull(target=target, outdir=request["outdir"])
    result = {"files": sorted(os.path.relpath(f, request["outdir"]) for f in files)}
elif op == "manifest":
    result = {"manifest": client.get_manifest(target)}
elif op == "tags":
    result = {"tags": client.get_tags(target)}
else:
    raise SystemExit(f"unknown op {op}")

print(json.dumps(result))
"#;

/// Runs `python3 <args>` on a blocking thread; returns stdout, panicking with stderr on failure.
async fn python3(args: Vec<String>) -> Vec<u8> {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output())
        .await
        .expect("python3 task");
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`python3` is not on PATH; this end-to-end test requires it with the `oras` \
             package (`python3 -m pip install oras`)"
        ),
        Err(e) => panic!("running python3 {shown}: {e}"),
    };
    assert!(
        out.status.success(),
        "python3 {shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Fails the test with an install hint unless python3 can import oras-py.
async fn require_oras() {
    let out = tokio::task::spawn_blocking(|| {
        Command::new("python3")
            .args([
                "-c",
                "import oras.client, oras.oci, oras.version; print(oras.version.__version__)",
            ])
            .output()
    })
    .await
    .expect("python3 task");
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 cannot import the ORAS Python client; this end-to-end test requires it \
             (`python3 -m pip install oras`):\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run python3 ({e}); this end-to-end test requires python3 with the `oras` \
             package (`python3 -m pip install oras`)"
        ),
    }
}

/// oras-py against one kura: the driver script and the registry's host:port.
struct Oras {
    driver: PathBuf,
    registry: String,
}

impl Oras {
    async fn new(s: &TestServer, dir: &Path) -> Oras {
        require_oras().await;
        let driver = dir.join("oras_driver.py");
        std::fs::write(&driver, DRIVER).unwrap();
        Oras {
            driver,
            registry: s.addr.to_string(),
        }
    }

    /// Runs one driver request; returns its JSON result.
    async fn call(&self, request: Value) -> Value {
        let out = python3(vec![
            self.driver.to_str().unwrap().to_string(),
            self.registry.clone(),
            request.to_string(),
        ])
        .await;
        let text = String::from_utf8(out).expect("driver output is UTF-8");
        let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("driver output for {request} is not JSON ({e}):\n{text}"))
    }
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn read(root: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{}/{rel}: {e}", root.display()))
}

/// GETs a manifest by reference; returns its digest header, content type and bytes.
async fn get_manifest(s: &TestServer, repo: &str, reference: &str) -> (String, String, Vec<u8>) {
    let r = common::client()
        .get(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET manifest {repo}:{reference}");
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        Digest::sha256_of(&body).to_string(),
        digest,
        "Docker-Content-Digest of {repo}:{reference} is not the digest of its body"
    );
    (digest, ct, body)
}

/// GETs a blob; returns its bytes after checking them against `desc`.
async fn get_blob(s: &TestServer, repo: &str, desc: &Value) -> Vec<u8> {
    let d = desc["digest"].as_str().unwrap();
    let r = common::client()
        .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET blob {d}");
    assert_eq!(r.headers()["docker-content-digest"], d);
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        body.len() as u64,
        desc["size"].as_u64().unwrap(),
        "size of {d}"
    );
    assert_eq!(Digest::sha256_of(&body).to_string(), d, "content of {d}");
    body
}

fn layer_titled<'a>(manifest: &'a Value, title: &str) -> &'a Value {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["annotations"][TITLE] == title)
        .unwrap_or_else(|| panic!("no layer titled {title} in {manifest}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_py_pushes_and_pulls_artifact_with_custom_media_types() {
    oras_py_pushes_and_pulls_artifact_with_custom_media_types_with(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_py_pushes_and_pulls_artifact_with_custom_media_types_on_s3() {
    oras_py_pushes_and_pulls_artifact_with_custom_media_types_with(
        TestServer::start_on(&common::s3::s3_config(
            "oras_py_pushes_and_pulls_artifact_with_c",
        ))
        .await,
    )
    .await;
}

async fn oras_py_pushes_and_pulls_artifact_with_custom_media_types_with(s: TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let oras = Oras::new(&s, tmp.path()).await;
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));

    let readme = b"kura artifact pushed by oras-py\n".to_vec();
    let data = common::s3::data(200_000, 1);
    let config = serde_json::to_vec(&json!({"kind": "thing", "version": 1})).unwrap();
    write(&src, "readme.txt", &readme);
    write(&src, "data.bin", &data);
    write(&src, "thing-config.json", &config);
    // A directory: oras-py packs it as one tar+gzip layer and unpacks it on pull.
    write(&src, "docs/a.md", b"# a\n");
    write(&src, "docs/nested/b.md", b"# b\n");

    let pushed = oras
        .call(json!({
            "op": "push",
            "ref": "artifacts/thing:v1",
            "workdir": src,
            "files": [
                format!("readme.txt:{THING_TEXT}"),
                format!("data.bin:{THING_DATA}"),
                "docs",
            ],
            "config": format!("thing-config.json:{THING_CONFIG}"),
            "annotations": {"org.opencontainers.image.description": "kura oras-py e2e"},
        }))
        .await;
    assert_eq!(pushed["status"], 201, "manifest PUT: {pushed}");
    let digest = pushed["headers"]["docker-content-digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no Docker-Content-Digest on the manifest PUT: {pushed}"))
        .to_string();

    // kura stored the manifest oras-py wrote, under the tag.
    let (served_digest, ct, body) = get_manifest(&s, "artifacts/thing", "v1").await;
    assert_eq!(served_digest, digest);
    assert_eq!(ct, OCI_MANIFEST);
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["config"]["mediaType"], THING_CONFIG);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.description"],
        "kura oras-py e2e"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    let (readme_l, data_l, docs_l) = (
        layer_titled(&manifest, "readme.txt"),
        layer_titled(&manifest, "data.bin"),
        layer_titled(&manifest, "docs"),
    );
    assert_eq!(readme_l["mediaType"], THING_TEXT);
    assert_eq!(data_l["mediaType"], THING_DATA);
    assert_eq!(docs_l["mediaType"], OCI_LAYER_TAR_GZIP);

    // And serves each blob it references.
    assert!(get_blob(&s, "artifacts/thing", readme_l).await == readme);
    assert!(get_blob(&s, "artifacts/thing", data_l).await == data);
    assert!(get_blob(&s, "artifacts/thing", &manifest["config"]).await == config);
    get_blob(&s, "artifacts/thing", docs_l).await;

    // oras-py reads the same back.
    let seen = oras
        .call(json!({"op": "manifest", "ref": "artifacts/thing:v1"}))
        .await;
    assert_eq!(seen["manifest"], manifest);
    let tags = oras
        .call(json!({"op": "tags", "ref": "artifacts/thing"}))
        .await;
    assert_eq!(tags["tags"], json!(["v1"]));
    let pulled = oras
        .call(json!({"op": "pull", "ref": "artifacts/thing:v1", "outdir": dst}))
        .await;
    assert_eq!(
        pulled["files"],
        json!(["data.bin", "docs", "readme.txt"]),
        "pulled files"
    );
    assert!(read(&dst, "readme.txt") == readme, "readme.txt");
    assert!(read(&dst, "data.bin") == data, "data.bin");
    assert_eq!(read(&dst, "docs/a.md"), b"# a\n");
    assert_eq!(read(&dst, "docs/nested/b.md"), b"# b\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_py_pushes_referrer_with_subject_listed_by_referrers_api() {
    oras_py_pushes_referrer_with_subject_listed_by_referrers_api_with(TestServer::start().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_py_pushes_referrer_with_subject_listed_by_referrers_api_on_s3() {
    oras_py_pushes_referrer_with_subject_listed_by_referrers_api_with(
        TestServer::start_on(&common::s3::s3_config(
            "oras_py_pushes_referrer_with_subject_lis",
        ))
        .await,
    )
    .await;
}

async fn oras_py_pushes_referrer_with_subject_listed_by_referrers_api_with(s: TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let oras = Oras::new(&s, tmp.path()).await;
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));

    write(&src, "payload.txt", b"the subject artifact\n");
    write(&src, "thing-config.json", b"{\"kind\":\"thing\"}");
    let sbom = serde_json::to_vec_pretty(&json!({
        "spdxVersion": "SPDX-2.3",
        "name": "kura-e2e",
        "packages": (0..100).map(|i| json!({"name": format!("pkg-{i}"), "version": "1.0"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    assert!(sbom.len() > 3 * 1024, "several chunks of 1 KiB");
    write(&src, "sbom.spdx.json", &sbom);
    write(&src, "sbom-config.json", b"{\"generator\":\"kura-e2e\"}");

    let subject_push = oras
        .call(json!({
            "op": "push",
            "ref": "artifacts/thing:v1",
            "workdir": src,
            "files": [format!("payload.txt:{THING_TEXT}")],
            "config": format!("thing-config.json:{THING_CONFIG}"),
        }))
        .await;
    assert_eq!(subject_push["status"], 201, "{subject_push}");
    let (subject_digest, _, subject_bytes) = get_manifest(&s, "artifacts/thing", "v1").await;
    assert_eq!(
        subject_push["headers"]["docker-content-digest"],
        subject_digest
    );

    // Nothing refers to it yet.
    let r = common::client()
        .get(s.url(&format!("/v2/artifacts/thing/referrers/{subject_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let empty: Value = r.json().await.unwrap();
    assert_eq!(empty["manifests"], json!([]));

    // The referrer: its blobs go up in chunked uploads (POST, PATCH…, PUT) of 1 KiB.
    let annotations = json!({"org.opencontainers.image.created": "2024-01-01T00:00:00Z"});
    let referrer_push = oras
        .call(json!({
            "op": "push",
            "ref": "artifacts/thing:sbom",
            "workdir": src,
            "files": [format!("sbom.spdx.json:{SBOM_LAYER}")],
            "config": format!("sbom-config.json:{SBOM_TYPE}"),
            "annotations": annotations,
            "subject": {
                "mediaType": OCI_MANIFEST,
                "digest": subject_digest,
                "size": subject_bytes.len(),
            },
            "chunk_size": 1024,
        }))
        .await;
    assert_eq!(referrer_push["status"], 201, "{referrer_push}");
    // Two blobs (sbom, config) each opened by POST and closed by PUT, the sbom in 1 KiB PATCHes.
    let methods = &referrer_push["methods"];
    assert_eq!(methods["POST"], 2, "{referrer_push}");
    assert_eq!(
        methods["PUT"], 3,
        "two blob PUTs and the manifest: {referrer_push}"
    );
    assert!(
        methods["PATCH"].as_u64().unwrap() > (sbom.len() / 1024) as u64,
        "{referrer_push}"
    );
    assert_eq!(
        referrer_push["headers"]["oci-subject"], subject_digest,
        "a manifest PUT with a subject is answered with OCI-Subject: {referrer_push}"
    );
    let (referrer_digest, _, referrer_bytes) = get_manifest(&s, "artifacts/thing", "sbom").await;
    assert_eq!(
        referrer_push["headers"]["docker-content-digest"],
        referrer_digest
    );
    let referrer: Value = serde_json::from_slice(&referrer_bytes).unwrap();
    assert_eq!(referrer["subject"]["digest"], subject_digest);
    assert!(
        get_blob(&s, "artifacts/thing", &referrer["layers"][0]).await == sbom,
        "sbom blob"
    );

    // The referrers API lists it, with the config media type as its artifactType.
    let expected = json!({
        "mediaType": OCI_MANIFEST,
        "digest": referrer_digest,
        "size": referrer_bytes.len(),
        "artifactType": SBOM_TYPE,
        "annotations": annotations,
    });
    let r = common::client()
        .get(s.url(&format!("/v2/artifacts/thing/referrers/{subject_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"], json!([expected]));

    // Filtered by artifactType: kept when it matches, dropped when it does not.
    for (filter, want) in [(SBOM_TYPE, json!([expected])), (THING_CONFIG, json!([]))] {
        let r = common::client()
            .get(s.url(&format!(
                "/v2/artifacts/thing/referrers/{subject_digest}?artifactType={}",
                filter.replace('+', "%2B")
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
        let index: Value = r.json().await.unwrap();
        assert_eq!(index["manifests"], want, "artifactType={filter}");
    }

    // oras-py sees both tags and pulls the referrer's content back.
    let tags = oras
        .call(json!({"op": "tags", "ref": "artifacts/thing"}))
        .await;
    assert_eq!(tags["tags"], json!(["sbom", "v1"]));
    let pulled = oras
        .call(json!({"op": "pull", "ref": "artifacts/thing:sbom", "outdir": dst}))
        .await;
    assert_eq!(pulled["files"], json!(["sbom.spdx.json"]));
    assert!(read(&dst, "sbom.spdx.json") == sbom, "sbom.spdx.json");
}
