//! What the manifest page shows, and the platforms of tag rows: read from the stored
//! manifest and config bytes (HTTP-free). Nothing here writes: looking at a manifest in the
//! UI is not a client's sighting and does not move its GC grace period.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::digest::Digest;
use crate::error::Result;
use crate::meta::records::ManifestRecord;
use crate::meta::{manifests, repos, tags};
use crate::names::RepoName;
use crate::registry::Referrer;
use crate::registry::Registry;

/// Config blobs larger than this are not parsed for the page.
const MAX_CONFIG: u64 = 4 << 20;
/// Referrers listed at most.
const MAX_REFERRERS: usize = 1000;

/// A descriptor as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Desc {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// `os/arch[/variant]` for an index's child.
    pub platform: String,
}

/// What an image's config says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigInfo {
    pub platform: String,
    pub env: Vec<String>,
    pub entrypoint: String,
    pub cmd: String,
    pub labels: Vec<(String, String)>,
    /// `created_by` of each history entry (empty layers included).
    pub history: Vec<String>,
}

/// The manifest page's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub is_index: bool,
    pub config: Option<Desc>,
    pub config_info: Option<ConfigInfo>,
    pub layers: Vec<Desc>,
    pub children: Vec<Desc>,
    pub annotations: Vec<(String, String)>,
    /// Referrers by artifact type.
    pub referrers: Vec<(String, Vec<Referrer>)>,
    pub referrers_more: bool,
    pub raw: String,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn desc(v: &Value) -> Desc {
    Desc {
        digest: s(&v["digest"]),
        media_type: s(&v["mediaType"]),
        size: v["size"].as_u64().unwrap_or(0),
        platform: platform(&v["platform"]),
    }
}

/// `os/architecture[/variant]` of a platform object (or an image config).
pub fn platform(v: &Value) -> String {
    let (os, arch) = (s(&v["os"]), s(&v["architecture"]));
    if os.is_empty() && arch.is_empty() {
        return String::new();
    }
    match v["variant"].as_str() {
        Some(var) if !var.is_empty() => format!("{os}/{arch}/{var}"),
        _ => format!("{os}/{arch}"),
    }
}

fn read_json(reg: &Registry, digest: &str, max: u64) -> Option<Value> {
    let d: Digest = digest.parse().ok()?;
    if reg.store().stat(&d).ok()?? > max {
        return None;
    }
    let bytes = reg.store().read_blob(&d).ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default()
}

/// The parts of image config `v` the page shows.
pub fn config_info(v: &Value) -> ConfigInfo {
    let c = &v["config"];
    ConfigInfo {
        platform: platform(v),
        env: strings(&c["Env"]),
        entrypoint: strings(&c["Entrypoint"]).join(" "),
        cmd: strings(&c["Cmd"]).join(" "),
        labels: c["Labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
            .unwrap_or_default(),
        history: v["history"]
            .as_array()
            .map(|a| a.iter().map(|h| s(&h["created_by"])).collect())
            .unwrap_or_default(),
    }
}

/// The platforms of revision `digest` (with record `rec`): its children's for an index, its
/// config's for an image; empty for anything else or unreadable content.
pub fn platforms(reg: &Registry, digest: &str, rec: &ManifestRecord) -> Vec<String> {
    let Some(m) = read_json(reg, digest, rec.size) else {
        return Vec::new();
    };
    if let Some(children) = m["manifests"].as_array() {
        return children
            .iter()
            .map(|c| platform(&c["platform"]))
            .filter(|p| !p.is_empty())
            .collect();
    }
    let cfg = desc(&m["config"]);
    match read_json(reg, &cfg.digest, MAX_CONFIG) {
        Some(c) => Some(platform(&c))
            .filter(|p| !p.is_empty())
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

/// Resolves `reference` (a tag or a digest) of `repo` to a digest; `None` when unknown.
pub fn resolve(reg: &Registry, repo: &str, reference: &str) -> Result<Option<String>> {
    reg.meta().read(|t| {
        if !repos::exists(t, repo)? {
            return Ok(None);
        }
        if reference.contains(':') {
            return Ok(Some(reference.to_string()));
        }
        tags::get(t, repo, reference)
    })
}

/// The manifest page of revision `digest` of `repo`; `None` when it is not there.
pub fn manifest(reg: &Registry, repo: &RepoName, digest: &str) -> Result<Option<Detail>> {
    let Some(rec) = reg
        .meta()
        .read(|t| manifests::get(t, repo.as_str(), digest))?
    else {
        return Ok(None);
    };
    let m = read_json(reg, digest, rec.size).unwrap_or(Value::Null);
    let is_index = m["manifests"].is_array();
    let config = m.get("config").map(desc);
    let config_info = match &config {
        Some(c) if c.media_type.contains("config") && c.size <= MAX_CONFIG => {
            read_json(reg, &c.digest, MAX_CONFIG).map(|v| config_info(&v))
        }
        _ => None,
    };
    let layers: Vec<Desc> = m["layers"]
        .as_array()
        .map(|a| a.iter().map(desc).collect())
        .unwrap_or_default();
    let children: Vec<Desc> = m["manifests"]
        .as_array()
        .map(|a| a.iter().map(desc).collect())
        .unwrap_or_default();
    let annotations = m["annotations"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default();
    let subject: Digest = digest.parse()?;
    let (refs, referrers_more) = reg.referrers(repo, &subject, None, None, MAX_REFERRERS)?;
    let mut grouped: BTreeMap<String, Vec<Referrer>> = BTreeMap::new();
    for r in refs {
        let key = r
            .artifact_type
            .clone()
            .unwrap_or_else(|| "(no artifact type)".into());
        grouped.entry(key).or_default().push(r);
    }
    let raw = serde_json::to_string_pretty(&m).unwrap_or_default();
    Ok(Some(Detail {
        digest: digest.to_string(),
        media_type: rec.media_type.clone(),
        size: rec.size,
        artifact_type: rec.artifact_type.clone(),
        subject: rec.subject.clone(),
        is_index,
        config,
        config_info,
        layers,
        children,
        annotations,
        referrers: grouped.into_iter().collect(),
        referrers_more,
        raw,
    }))
}
