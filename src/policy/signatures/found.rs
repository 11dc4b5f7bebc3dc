//! Finding the signatures of a manifest in the registry, and reading their layers.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{cosign, notation};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::meta::{manifests, referrers, tags};
use crate::registry::Registry;

/// At most this many signature manifests of one digest are examined (a bound on the work a
/// pull can cause); the referrers come first, in digest order.
pub const MAX_SIGNATURES: usize = 64;
/// Signature layers (payloads, envelopes) larger than this are not read.
pub const MAX_LAYER_BYTES: u64 = 1 << 20;
/// Layers examined per signature manifest.
const MAX_LAYERS: usize = 16;

/// The format of a signature manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Cosign,
    Notation,
}

/// A signature manifest of the digest being pulled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Found {
    pub digest: String,
    pub format: Format,
}

/// The signature manifests of `digest` in `repo`, sorted: cosign and notation referrers, and
/// the manifest under cosign's tag `sha256-<hex>.sig`. One read snapshot, no file read.
pub fn signatures_of(reg: &Registry, repo: &str, digest: &Digest) -> Result<Vec<Found>> {
    let subject = digest.to_string();
    let tag = cosign::signature_tag(digest);
    reg.meta().read(|t| {
        let mut out = Vec::new();
        referrers::scan(t, repo, &subject, None, |d| {
            let Some(rec) = manifests::get(t, repo, d)? else {
                return Ok(true);
            };
            let format = match rec.artifact_type.as_deref() {
                Some(cosign::ARTIFACT_TYPE) => Format::Cosign,
                Some(notation::ARTIFACT_TYPE) => Format::Notation,
                _ => return Ok(true),
            };
            out.push(Found {
                digest: d.to_string(),
                format,
            });
            Ok(out.len() < MAX_SIGNATURES)
        })?;
        if let Some(d) = tags::get(t, repo, &tag)? {
            out.push(Found {
                digest: d.to_string(),
                format: Format::Cosign,
            });
        }
        out.sort();
        out.dedup();
        Ok(out)
    })
}

/// A layer of a signature manifest.
#[derive(Debug, Deserialize)]
pub struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

/// The stored bytes of blob or manifest `digest`; the inner error when it names nothing
/// stored (the outer one when the store fails).
pub fn read(reg: &Registry, digest: &str) -> Result<std::result::Result<Vec<u8>, String>> {
    let Ok(d) = digest.parse::<Digest>() else {
        return Ok(Err(format!("{digest:?} is not a digest")));
    };
    Ok(reg
        .store()
        .read_blob(&d)
        .map_err(|e| Error::internal("blob store", e))?
        .ok_or_else(|| format!("{digest} is not stored")))
}

/// The layers of manifest `digest` (the first `MAX_LAYERS`).
pub fn layers(reg: &Registry, digest: &str) -> Result<std::result::Result<Vec<Layer>, String>> {
    let body = match read(reg, digest)? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    Ok(match serde_json::from_slice::<Manifest>(&body) {
        Ok(mut m) => {
            m.layers.truncate(MAX_LAYERS);
            Ok(m.layers)
        }
        Err(e) => Err(format!("not an image manifest: {e}")),
    })
}

/// The bytes of `layer`, unless it is larger than `MAX_LAYER_BYTES` (or not what its
/// descriptor says).
pub fn layer_bytes(reg: &Registry, layer: &Layer) -> Result<std::result::Result<Vec<u8>, String>> {
    if layer.size > MAX_LAYER_BYTES {
        return Ok(Err(format!(
            "layer {} is larger than {MAX_LAYER_BYTES} bytes",
            layer.digest
        )));
    }
    let bytes = match read(reg, &layer.digest)? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    if bytes.len() as u64 != layer.size {
        return Ok(Err(format!(
            "layer {} is not of its stated size",
            layer.digest
        )));
    }
    Ok(Ok(bytes))
}
