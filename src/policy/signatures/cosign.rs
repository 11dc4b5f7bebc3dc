//! cosign signatures: an image manifest whose layers are simple-signing payloads, each with
//! its signature in the `dev.cosignproject.cosign/signature` annotation. Found as a referrer
//! with `artifactType` `application/vnd.dev.cosign.artifact.sig.v1+json` (OCI 1.1 mode) or under
//! the tag `sha256-<hex>.sig` (cosign's tag scheme).

use base64::Engine;
use serde::Deserialize;

use super::trust::PublicKey;

/// The `artifactType` of a cosign signature referrer.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The media type of a signed payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature over the payload bytes.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The cosign tag-scheme name of the signatures of `digest` (`sha256-<hex>.sig`).
pub fn signature_tag(digest: &crate::digest::Digest) -> String {
    let d = digest.to_string();
    format!("{}.sig", d.replacen(':', "-", 1))
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Checks one payload layer: its signature (`signature_b64`, from the annotation) verifies
/// with one of `keys` over the exact `payload` bytes, and the payload names `digest`.
pub fn verify_layer(
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
    keys: &[PublicKey],
) -> Result<(), String> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| format!("signature annotation is not base64: {e}"))?;
    if !keys.iter().any(|k| k.verify_cosign(payload, &signature)) {
        return Err("signature does not verify with any trusted cosign key".into());
    }
    // Only a payload whose signature verified is read: its claims are the signer's.
    let p: SimpleSigning = serde_json::from_slice(payload)
        .map_err(|e| format!("payload is not a simple-signing document: {e}"))?;
    if p.critical.kind != "cosign container image signature" {
        return Err(format!(
            "payload type {:?} is not cosign's",
            p.critical.kind
        ));
    }
    if p.critical.image.digest != digest {
        return Err(format!(
            "payload signs {}, not {digest}",
            p.critical.image.digest
        ));
    }
    Ok(())
}

/// Whether `tag` is cosign's name for the signatures or attestations of a digest
/// (`sha256-<hex>.sig`, `.att`): cosign fetches those by tag.
pub fn is_cosign_tag(tag: &str) -> bool {
    let Some((name, ext)) = tag.rsplit_once('.') else {
        return false;
    };
    let Some((alg, hex)) = name.split_once('-') else {
        return false;
    };
    matches!(ext, "sig" | "att")
        && matches!(alg, "sha256" | "sha512")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The media types of cosign's signature and attestation layers.
const COSIGN_LAYERS: &[&str] = &[PAYLOAD_MEDIA_TYPE, "application/vnd.dsse.envelope.v1+json"];

/// Whether manifest `digest` is a cosign signature or attestation: every layer is a
/// simple-signing payload or a DSSE envelope (nothing to run). Only such manifests are
/// served under cosign's tags without a signature of their own.
pub fn is_cosign_artifact(
    reg: &crate::registry::Registry,
    digest: &crate::digest::Digest,
) -> crate::error::Result<bool> {
    Ok(match super::found::layers(reg, &digest.to_string())? {
        Ok(layers) => {
            !layers.is_empty()
                && layers
                    .iter()
                    .all(|l| COSIGN_LAYERS.contains(&l.media_type.as_str()))
        }
        Err(_) => false,
    })
}
