//! Parsing and validating pushed manifests: OCI image manifests and indexes, Docker schema2
//! manifests and manifest lists, and artifact manifests. Only the fields kura relies on are
//! typed; the stored bytes are always the client's own.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Code, Error};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 3] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
];

/// Largest manifest accepted (the spec asks registries to take at least 4 MB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What kura records about a valid manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The manifest's media type (from its `mediaType`, else the request's `Content-Type`).
    pub media_type: String,
    /// `artifactType`, or for an image manifest without one, the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub subject: Option<Digest>,
    /// Config and layers that must be present in the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index) that must be present in the repository.
    pub manifests: Vec<Digest>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Code::ManifestInvalid, msg)
}

fn descriptor_digest(d: &Descriptor, field: &str) -> Result<Digest, Error> {
    if d.size < 0 {
        return Err(invalid(format!("{field}: negative size")));
    }
    if d.media_type.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(format!("{field}: descriptor without mediaType")));
    }
    d.digest
        .parse()
        .map_err(|e: Error| invalid(format!("{field}: {}", e.message)))
}

/// A layer a registry does not have to hold (Docker foreign / OCI non-distributable with URLs).
fn is_foreign(d: &Descriptor) -> bool {
    let mt = d.media_type.as_deref().unwrap_or("");
    !d.urls.is_empty() && (mt.contains(".foreign.") || mt.contains(".nondistributable."))
}

/// Parses `body` pushed with `content_type` and checks its structure.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Parsed, Error> {
    // JSON text is UTF-8 (RFC 8259); serde_json does not check strings in fields it skips.
    let body = std::str::from_utf8(body)
        .map_err(|e| invalid(format!("manifest is not UTF-8 JSON: {e}")))?;
    let raw: Raw =
        serde_json::from_str(body).map_err(|e| invalid(format!("not a valid manifest: {e}")))?;
    let header = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty());
    let media_type = match (&raw.media_type, &header) {
        (Some(m), Some(h)) if m != h && !DOCKER_SCHEMA1.contains(&h.as_str()) => {
            return Err(invalid(format!(
                "mediaType {m} does not match Content-Type {h}"
            )));
        }
        (Some(m), _) => m.clone(),
        (None, Some(h)) if !DOCKER_SCHEMA1.contains(&h.as_str()) => h.clone(),
        (None, _) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, _) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (None, _) => return Err(invalid("cannot tell the manifest's media type")),
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) || raw.schema_version == Some(1) {
        return Err(invalid(
            "Docker schema1 manifests are not supported; push schema2 or OCI",
        ));
    }
    let mut parsed = Parsed {
        media_type: media_type.clone(),
        artifact_type: raw.artifact_type.clone().filter(|a| !a.is_empty()),
        annotations: raw.annotations,
        subject: None,
        blobs: Vec::new(),
        manifests: Vec::new(),
    };
    if let Some(s) = &raw.subject {
        parsed.subject = Some(descriptor_digest(s, "subject")?);
    }
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if raw.schema_version != Some(2) {
                return Err(invalid("schemaVersion must be 2"));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("missing config"))?;
            parsed.blobs.push(descriptor_digest(config, "config")?);
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = config.media_type.clone();
            }
            let layers = raw
                .layers
                .as_ref()
                .ok_or_else(|| invalid("missing layers"))?;
            for (i, l) in layers.iter().enumerate() {
                let d = descriptor_digest(l, &format!("layers[{i}]"))?;
                if !is_foreign(l) {
                    parsed.blobs.push(d);
                }
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            if raw.schema_version != Some(2) {
                return Err(invalid("schemaVersion must be 2"));
            }
            let children = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("missing manifests"))?;
            for (i, m) in children.iter().enumerate() {
                parsed
                    .manifests
                    .push(descriptor_digest(m, &format!("manifests[{i}]"))?);
            }
        }
        OCI_ARTIFACT => {
            if parsed.artifact_type.is_none() {
                return Err(invalid("artifact manifest without artifactType"));
            }
            for (i, b) in raw.blobs.iter().flatten().enumerate() {
                parsed
                    .blobs
                    .push(descriptor_digest(b, &format!("blobs[{i}]"))?);
            }
        }
        other => {
            return Err(invalid(format!("unsupported manifest media type {other}")));
        }
    }
    parsed.blobs.sort();
    parsed.blobs.dedup();
    parsed.manifests.sort();
    parsed.manifests.dedup();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let p = parse(Some(OCI_MANIFEST), image("").as_bytes()).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(p.subject.is_none());
    }

    #[test]
    fn subject_and_artifact_type_are_recorded() {
        let extra = format!(
            r#","artifactType":"application/x.sbom","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":9}}"#
        );
        let p = parse(None, image(&extra).as_bytes()).unwrap();
        assert_eq!(p.artifact_type.as_deref(), Some("application/x.sbom"));
        assert_eq!(p.subject.unwrap().to_string(), D1);
    }

    #[test]
    fn content_type_must_match_media_type() {
        let e = parse(Some(OCI_INDEX), image("").as_bytes()).unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
    }

    #[test]
    fn malformed_manifests_are_rejected() {
        for body in [
            "not json",
            "{}",
            r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#,
            &format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
            &format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"x","digest":"sha256:bad","size":1}}]}}"#
            ),
        ] {
            assert_eq!(
                parse(None, body.as_bytes()).unwrap_err().code,
                Code::ManifestInvalid,
                "{body}"
            );
        }
    }

    #[test]
    fn manifest_that_is_not_utf8_json_is_rejected() {
        // Found by fuzz/manifest: a byte 0xBE inside a field serde skips was accepted.
        let mut body = image(r#","x":"lin_ux""#).into_bytes();
        let at = body.iter().position(|&b| b == b'_').unwrap();
        body[at] = 0xBE;
        let e = parse(Some(OCI_MANIFEST), &body).unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn index_lists_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":5}},{{"mediaType":"{DOCKER_MANIFEST}","digest":"{D2}","size":5}}]}}"#
        );
        let p = parse(Some(DOCKER_LIST), body.as_bytes()).unwrap();
        assert_eq!(p.manifests.len(), 2);
        assert!(p.blobs.is_empty());
    }
}
