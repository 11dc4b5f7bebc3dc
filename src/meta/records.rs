//! Records stored as JSON values in the `manifests` and `uploads` tables.

use std::collections::BTreeMap;

use crate::store::UploadState;
use serde::{Deserialize, Serialize};

/// One manifest revision of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// The manifest's media type, returned as `Content-Type`.
    pub media_type: String,
    /// Size of the stored bytes.
    pub size: u64,
    /// `artifactType`, or the config's media type for an image manifest without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest's annotations, copied into referrers descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The `subject` digest, when the manifest is a referrer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Config and layer digests (counted references).
    pub blobs: Vec<String>,
    /// Child manifest digests of an index (counted references).
    pub manifests: Vec<String>,
    /// Creation time, unix seconds.
    pub created: u64,
    /// The last re-push or client sighting by digest (unix seconds; a sighting sets it up to
    /// `blobs::SIGHTING_LEASE` ahead), 0 if none. Untagged revisions are collected
    /// (`delete_untagged`) a grace period after `grace_start`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub touched: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ManifestRecord {
    /// When the revision's grace period started: its creation, re-push or last sighting.
    pub fn grace_start(&self) -> u64 {
        self.created.max(self.touched)
    }
}

/// One open upload session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The repository the upload belongs to.
    pub repo: String,
    /// Bytes received so far.
    pub offset: u64,
    /// Start time, unix seconds.
    pub started: u64,
    /// Time of the last change, unix seconds.
    pub updated: u64,
    /// Who opened it (`user:<name>` or `ip:<address>`), for the per-client session cap;
    /// empty in records written before the cap existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Where an object-store driver keeps the session's bytes (its multipart upload and tail);
    /// empty on the filesystem.
    #[serde(default, skip_serializing_if = "UploadState::is_empty")]
    pub state: UploadState,
}
