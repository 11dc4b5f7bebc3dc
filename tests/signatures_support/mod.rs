//! Signing test images the way cosign and notation do, with the crates kura verifies with
//! (aws-lc-rs, rcgen, coset), and a `kura serve` whose config holds `[[policies.signatures]]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use kura::digest::Digest;
use serde_json::{Value, json};

use crate::common::s3_ops::{push_blob_at, push_image_at};
use crate::common::{KillOnDrop, client, spawn_kura_guarded};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const COSIGN_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const NOTATION_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
const NOTATION_PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";

/// A P-256 key pair: its PEM public key (for `cosign_keys`) and an aws-lc-rs signer.
pub struct Key {
    pub rcgen: rcgen::KeyPair,
    pub public_pem: String,
}

impl Key {
    pub fn generate() -> Key {
        let rcgen = rcgen::KeyPair::generate().expect("P-256 key");
        let public_pem = rcgen.public_key_pem();
        Key { rcgen, public_pem }
    }

    fn signer(&self, fixed: bool) -> EcdsaKeyPair {
        let alg = if fixed {
            &ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &ECDSA_P256_SHA256_ASN1_SIGNING
        };
        EcdsaKeyPair::from_pkcs8(alg, &self.rcgen.serialize_der()).expect("pkcs8")
    }

    /// ECDSA P-256 SHA-256, DER encoded (cosign).
    pub fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        let s = self.signer(false).sign(&SystemRandom::new(), msg).unwrap();
        s.as_ref().to_vec()
    }

    /// ECDSA P-256 SHA-256, `r || s` (JWS ES256, COSE ES256).
    pub fn sign_fixed(&self, msg: &[u8]) -> Vec<u8> {
        let s = self.signer(true).sign(&SystemRandom::new(), msg).unwrap();
        s.as_ref().to_vec()
    }
}

/// A CA and a code-signing leaf it issued (both rcgen-made, P-256).
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub leaf_der: Vec<u8>,
    pub leaf_key: Key,
}

impl Pki {
    /// A CA and a leaf valid now; `leaf_expired` makes the leaf's validity end in 2020.
    pub fn new(name: &str, leaf_expired: bool) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} root"));
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = Key::generate();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} signer"));
        leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        if leaf_expired {
            leaf.not_before = rcgen::date_time_ymd(2019, 1, 1);
            leaf.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let leaf_cert = leaf.signed_by(&leaf_key.rcgen, &issuer).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key,
        }
    }
}

/// A running `kura serve` with a config file in a temporary directory.
pub struct Server {
    pub kura: KillOnDrop,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Writes `files` (name → contents) and `config` (file names relative to the directory
    /// as `{dir}`) and starts kura with it.
    pub fn start(files: &[(&str, &str)], config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), files, config);
        let (kura, base) = spawn_kura_guarded(
            &dir.path().join("root"),
            &["--config", dir.path().join("kura.toml").to_str().unwrap()],
        );
        Server { kura, base, dir }
    }

    /// `127.0.0.1:<port>`, for `docker://` references.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

/// Writes `files` and `kura.toml` (`{dir}` replaced by `dir`) into `dir`.
pub fn write_config(dir: &Path, files: &[(&str, &str)], config: &str) -> PathBuf {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("kura.toml");
    std::fs::write(&path, config.replace("{dir}", dir.to_str().unwrap())).unwrap();
    path
}

/// An image pushed as `repo:tag` (two small layers whose bytes depend on `seed`).
pub struct Image {
    pub digest: Digest,
    pub size: usize,
}

pub async fn push_image(base: &str, repo: &str, tag: &str, seed: &str) -> Image {
    let layers = vec![
        format!("layer one of {seed}").into_bytes(),
        format!("layer two of {seed}").into_bytes(),
    ];
    let p = push_image_at(base, repo, tag, &layers).await;
    Image {
        digest: Digest::sha256_of(&p.manifest),
        size: p.manifest.len(),
    }
}

/// Where a cosign signature manifest is put.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CosignAt {
    /// As an OCI 1.1 referrer (`subject`, `artifactType`), pushed by digest.
    Referrer,
    /// Under cosign's tag `sha256-<hex>.sig`, without subject (cosign's classic scheme).
    Tag,
    /// Both: a referrer, also tagged `sha256-<hex>.sig`.
    Both,
}

/// cosign's simple-signing payload for `digest`.
pub fn simple_signing(repo_ref: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": repo_ref},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

/// Pushes a cosign signature of `subject` to `repo`: layer `payload` with `signature` (raw
/// bytes, base64-encoded into the annotation). Returns the signature manifest's digest.
pub async fn push_cosign(
    base: &str,
    repo: &str,
    subject: &Image,
    payload: &[u8],
    signature: &[u8],
    at: CosignAt,
) -> Digest {
    let payload_d = push_blob_at(base, repo, payload).await;
    let layer = json!({
        "mediaType": SIMPLE_SIGNING,
        "digest": payload_d.to_string(),
        "size": payload.len(),
        "annotations": {"dev.cosignproject.cosign/signature": STANDARD.encode(signature)}
    });
    let m = if at == CosignAt::Tag {
        let config = br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cd = push_blob_at(base, repo, config).await;
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
            "layers": [layer],
        })
    } else {
        artifact_manifest(base, repo, COSIGN_ARTIFACT, layer, subject).await
    };
    let body = serde_json::to_vec(&m).unwrap();
    let d = Digest::sha256_of(&body);
    if at != CosignAt::Tag {
        put(base, repo, &d.to_string(), &body).await;
    }
    if at != CosignAt::Referrer {
        let tag = format!("{}.sig", subject.digest.to_string().replace(':', "-"));
        put(base, repo, &tag, &body).await;
    }
    d
}

/// A trusted-key cosign signature of `subject`, the usual way.
pub async fn cosign_sign(base: &str, repo: &str, subject: &Image, key: &Key, at: CosignAt) {
    let payload = simple_signing(&format!("{base}/{repo}"), &subject.digest.to_string());
    let sig = key.sign_der(&payload);
    push_cosign(base, repo, subject, &payload, &sig, at).await;
}

/// An artifact manifest over the empty config with one `layer`, referring to `subject`.
async fn artifact_manifest(
    base: &str,
    repo: &str,
    artifact_type: &str,
    layer: Value,
    subject: &Image,
) -> Value {
    let cd = push_blob_at(base, repo, b"{}").await;
    json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": cd.to_string(), "size": 2},
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest.to_string(), "size": subject.size},
    })
}

async fn put(base: &str, repo: &str, reference: &str, body: &[u8]) {
    let r = client()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "PUT {repo}:{reference}: {:?}",
        r.text().await
    );
}

/// notation's payload naming `digest` of `size` bytes.
pub fn notation_payload(digest: &str, size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "targetArtifact": {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}
    }))
    .unwrap()
}

/// A notation JWS envelope (JSON serialization, ES256) over `payload`, signed by `pki`'s leaf,
/// carrying the leaf and the CA in `x5c`.
pub fn jws_envelope(pki: &Pki, payload: &[u8]) -> Vec<u8> {
    let protected = json!({
        "alg": "ES256",
        "crit": ["io.cncf.notary.signingScheme"],
        "cty": NOTATION_PAYLOAD,
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": "2026-01-01T00:00:00Z",
    });
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected).unwrap());
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let sig = pki
        .leaf_key
        .sign_fixed(format!("{protected}.{payload}").as_bytes());
    serde_json::to_vec(&json!({
        "payload": payload,
        "protected": protected,
        "header": {
            "x5c": [STANDARD.encode(&pki.leaf_der), STANDARD.encode(&pki.ca_der)],
            "io.cncf.notary.signingAgent": "kura-test"
        },
        "signature": URL_SAFE_NO_PAD.encode(sig),
    }))
    .unwrap()
}

/// A notation COSE_Sign1 envelope (ES256) over `payload`, signed by `pki`'s leaf, with the
/// leaf and the CA in `x5chain` (label 33).
pub fn cose_envelope(pki: &Pki, payload: &[u8]) -> Vec<u8> {
    use coset::cbor::Value as Cbor;
    use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana};
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .add_critical_label(coset::RegisteredLabelWithPrivate::Text(
            "io.cncf.notary.signingScheme".into(),
        ))
        .content_type(NOTATION_PAYLOAD.into())
        .text_value(
            "io.cncf.notary.signingScheme".into(),
            Cbor::Text("notary.x509".into()),
        )
        .build();
    let unprotected = HeaderBuilder::new()
        .value(
            33,
            Cbor::Array(vec![
                Cbor::Bytes(pki.leaf_der.clone()),
                Cbor::Bytes(pki.ca_der.clone()),
            ]),
        )
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload.to_vec())
        .create_signature(b"", |data| pki.leaf_key.sign_fixed(data))
        .build()
        .to_tagged_vec()
        .unwrap()
}

/// Pushes a notation signature referrer of `subject` with `envelope` of `media_type`.
pub async fn push_notation(
    base: &str,
    repo: &str,
    subject: &Image,
    media_type: &str,
    envelope: &[u8],
) {
    let d = push_blob_at(base, repo, envelope).await;
    let layer = json!({"mediaType": media_type, "digest": d.to_string(), "size": envelope.len()});
    let m = artifact_manifest(base, repo, NOTATION_ARTIFACT, layer, subject).await;
    let body = serde_json::to_vec(&m).unwrap();
    put(base, repo, &Digest::sha256_of(&body).to_string(), &body).await;
}

/// `skopeo --insecure-policy copy` of `docker://<reference>` into an OCI layout; returns
/// whether it succeeded and its stderr.
pub async fn skopeo_copy(reference: &str) -> (bool, String) {
    let dest = tempfile::tempdir().unwrap();
    let args = vec![
        "--insecure-policy".to_string(),
        "--command-timeout=60s".into(),
        "copy".into(),
        "--src-tls-verify=false".into(),
        format!("docker://{reference}"),
        format!("oci:{}:out", dest.path().display()),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("skopeo").args(&args).output())
        .await
        .unwrap()
        .expect("the skopeo binary (apt-get install skopeo)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The status and body of a `HEAD` and a `GET` of manifest `reference` of `repo`.
pub async fn pull_status(base: &str, repo: &str, reference: &str) -> (u16, u16, String) {
    let url = format!("{base}/v2/{repo}/manifests/{reference}");
    let head = client()
        .head(&url)
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let get = client()
        .get(&url)
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = get.status().as_u16();
    (head.status().as_u16(), status, get.text().await.unwrap())
}
