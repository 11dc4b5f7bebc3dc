//! Manifests as the client sees them: descriptors, image manifests, indexes and artifact
//! manifests, and the walk from a root manifest to every child manifest and blob.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Error, Result};
use crate::digest::{Digest, Hasher};
pub use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_ARTIFACT, OCI_INDEX, OCI_MANIFEST};

/// The `Accept` header for manifest requests: every manifest type the client handles.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.artifact.manifest.v1+json";

/// The image spec's annotation naming an entry of a layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest manifest the client reads (the size registries must accept).
pub const MAX_MANIFEST: usize = crate::manifest::MAX_MANIFEST_SIZE;

/// An OCI content descriptor (the fields the client uses; others are dropped on re-encoding,
/// which only happens for `index.json` entries, never for pushed manifests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A descriptor's platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Platform {
    /// `os/architecture[/variant]`.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// True when `want` (`os/arch[/variant]`) names this platform.
    pub fn matches(&self, want: &str) -> bool {
        let mut p = want.split('/');
        let (os, arch, variant) = (p.next(), p.next(), p.next());
        os == Some(self.os.as_str())
            && arch == Some(self.architecture.as_str())
            && variant.is_none_or(|v| self.variant.as_deref() == Some(v))
    }
}

impl Descriptor {
    /// A descriptor of `bytes` with `media_type`.
    pub fn of(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            urls: Vec::new(),
            platform: None,
            artifact_type: None,
            annotations: None,
        }
    }

    /// The parsed digest.
    pub fn digest(&self) -> Result<Digest> {
        self.digest
            .parse()
            .map_err(|e: crate::error::Error| Error::Invalid(e.message))
    }

    /// A layer a registry need not hold: non-distributable (foreign) with external URLs.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
            && (self.media_type.contains(".foreign.")
                || self.media_type.contains(".nondistributable."))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
}

/// What a manifest points at.
#[derive(Debug, Clone)]
pub enum Body {
    /// An image manifest (OCI or Docker schema2).
    Image {
        config: Box<Descriptor>,
        layers: Vec<Descriptor>,
    },
    /// An index (OCI image index or Docker manifest list).
    Index { manifests: Vec<Descriptor> },
    /// An OCI artifact manifest.
    Artifact { blobs: Vec<Descriptor> },
}

/// A manifest: its exact bytes, digest, media type and parsed body.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub body: Body,
    pub subject: Option<Descriptor>,
}

/// The digest of `bytes` with `algorithm`.
pub fn digest_of(algorithm: crate::digest::Algorithm, bytes: &[u8]) -> Digest {
    let mut h = Hasher::new(algorithm);
    h.update(bytes);
    h.finish()
}

impl Manifest {
    /// Parses `bytes`; `hint` is the media type announced with it (a `Content-Type` or a
    /// descriptor's), used when the manifest has no `mediaType` field.
    pub fn parse(bytes: Vec<u8>, hint: Option<&str>, digest: Digest) -> Result<Manifest> {
        let bad = |why: String| Error::Invalid(format!("manifest {digest}: {why}"));
        let raw: Raw =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        let hint = hint
            .map(|h| h.split(';').next().unwrap_or("").trim())
            .filter(|h| !h.is_empty() && *h != "application/json" && *h != "text/plain");
        let media_type = match (&raw.media_type, hint) {
            (Some(m), _) => m.clone(),
            (None, Some(h)) => h.to_string(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
            (None, None) => return Err(bad("cannot tell its media type".into())),
        };
        let body = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Body::Image {
                config: Box::new(raw.config.ok_or_else(|| bad("no config".into()))?),
                layers: raw.layers.unwrap_or_default(),
            },
            OCI_INDEX | DOCKER_LIST => Body::Index {
                manifests: raw.manifests.ok_or_else(|| bad("no manifests".into()))?,
            },
            OCI_ARTIFACT => Body::Artifact {
                blobs: raw.blobs.unwrap_or_default(),
            },
            other => return Err(bad(format!("unsupported media type {other}"))),
        };
        Ok(Manifest {
            digest,
            media_type,
            bytes,
            body,
            subject: raw.subject,
        })
    }

    /// Parses `bytes` after checking they hash to `expected`.
    pub fn parse_verified(bytes: Vec<u8>, hint: Option<&str>, expected: &Digest) -> Result<Self> {
        let actual = digest_of(expected.algorithm(), &bytes);
        if &actual != expected {
            return Err(Error::DigestMismatch {
                what: format!("manifest {expected}"),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Manifest::parse(bytes, hint, actual)
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::of(&self.media_type, &self.digest, self.bytes.len() as u64)
    }

    /// True for indexes.
    pub fn is_index(&self) -> bool {
        matches!(self.body, Body::Index { .. })
    }

    /// The blobs this manifest needs in its repository (config and layers, or an artifact's
    /// blobs), foreign layers excepted.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match &self.body {
            Body::Image { config, layers } => std::iter::once(&**config)
                .chain(layers.iter().filter(|l| !l.is_foreign()))
                .collect(),
            Body::Artifact { blobs } => blobs.iter().filter(|b| !b.is_foreign()).collect(),
            Body::Index { .. } => Vec::new(),
        }
    }

    /// An index's child manifests.
    pub fn children(&self) -> &[Descriptor] {
        match &self.body {
            Body::Index { manifests } => manifests,
            _ => &[],
        }
    }

    /// The config descriptor of an image manifest.
    pub fn config(&self) -> Option<&Descriptor> {
        match &self.body {
            Body::Image { config, .. } => Some(&**config),
            _ => None,
        }
    }
}

/// Every manifest and blob reachable from a root manifest.
#[derive(Debug)]
pub struct Graph {
    /// Each manifest once, children before the indexes naming them, the root last.
    pub manifests: Vec<Manifest>,
    /// Each blob once, in the order first met.
    pub blobs: Vec<Descriptor>,
}

impl Graph {
    /// The root manifest.
    pub fn root(&self) -> &Manifest {
        self.manifests.last().expect("a graph has a root")
    }

    /// The bytes of all blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// Walks from `root` through every index child (fetched with `fetch`) and collects blobs.
pub async fn walk<F, Fut>(root: Manifest, fetch: F) -> Result<Graph>
where
    F: Fn(Descriptor) -> Fut,
    Fut: Future<Output = Result<Manifest>>,
{
    let mut order = vec![root];
    let mut seen: HashSet<Digest> = HashSet::from([order[0].digest.clone()]);
    let mut i = 0;
    while i < order.len() {
        let children: Vec<Descriptor> = order[i].children().to_vec();
        for child in children {
            let d = child.digest()?;
            if seen.insert(d.clone()) {
                let m = fetch(child).await?;
                if m.digest != d {
                    return Err(Error::Invalid(format!(
                        "fetched manifest {} for {d}",
                        m.digest
                    )));
                }
                order.push(m);
            }
        }
        i += 1;
    }
    let mut blobs = Vec::new();
    let mut seen_blobs = HashSet::new();
    for m in &order {
        for b in m.blobs() {
            if seen_blobs.insert(b.digest.clone()) {
                b.digest()?;
                blobs.push(b.clone());
            }
        }
    }
    order.reverse();
    Ok(Graph {
        manifests: order,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn manifests_without_media_type_are_typed_by_shape_or_hint() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            d(1)
        );
        let m = Manifest::parse(idx.into_bytes(), None, Digest::sha256_of(b"x")).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        let p = m.children()[0].platform.as_ref().unwrap();
        assert!(p.matches("linux/arm64") && p.matches("linux/arm64/v8"));
        assert!(!p.matches("linux/amd64") && !p.matches("linux/arm64/v7"));
        assert_eq!(p.display(), "linux/arm64/v8");

        let img = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":2}},"layers":[{{"mediaType":"l","digest":"{}","size":3}},{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":4,"urls":["https://x"]}}]}}"#,
            d(2),
            d(3),
            d(4)
        );
        let m = Manifest::parse(
            img.into_bytes(),
            Some(DOCKER_MANIFEST),
            d(9).parse().unwrap(),
        )
        .unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        assert_eq!(
            m.blobs().len(),
            2,
            "the foreign layer is not a blob to move"
        );
    }

    #[test]
    fn verified_parse_rejects_other_content() {
        let body = br#"{"schemaVersion":2,"manifests":[]}"#.to_vec();
        let e = Manifest::parse_verified(body, None, &Digest::sha256_of(b"other")).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }));
    }
}
