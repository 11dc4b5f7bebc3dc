//! The `settings` table (v5): facts about the store itself. `blob_store` records where the
//! blobs of this metadata live, so a server (or `kura gc`/`fsck`) pointed at the metadata with
//! another blob store refuses to start instead of serving "recorded but missing" blobs and
//! writing new ones elsewhere.

use super::rows::ReadTx;

use super::WriteTables;
use crate::config::{StorageConfig, StorageKind};
use crate::error::Result;

/// Where the blobs of this metadata live (JSON `StoreIdentity`).
pub const BLOB_STORE: &str = "blob_store";

/// The parts of a `[storage]` configuration that name a blob store (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreIdentity {
    pub kind: StorageKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
}

impl StoreIdentity {
    /// Blobs under the data directory.
    pub fn filesystem() -> StoreIdentity {
        StoreIdentity {
            kind: StorageKind::Filesystem,
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: String::new(),
        }
    }

    /// The store `cfg` names. Endpoint and region are kept as written (empty: from the
    /// `AWS_*` variables); only kind, bucket and prefix decide whether two are the same store.
    pub fn of(cfg: &StorageConfig) -> StoreIdentity {
        match cfg.kind {
            StorageKind::Filesystem => StoreIdentity::filesystem(),
            StorageKind::S3 => StoreIdentity {
                kind: StorageKind::S3,
                bucket: cfg.bucket.clone(),
                prefix: cfg.prefix.trim_matches('/').to_string(),
                endpoint: cfg.endpoint.clone(),
                region: cfg.region.clone(),
            },
        }
    }

    /// Whether `self` and `other` name the same blobs.
    pub fn same_store(&self, other: &StoreIdentity) -> bool {
        (&self.kind, &self.bucket, &self.prefix) == (&other.kind, &other.bucket, &other.prefix)
    }

    /// A `[storage]` configuration for this store; credentials come from the `AWS_*`
    /// variables (for `kura gc`/`fsck --root` on a bucket).
    pub fn to_config(&self) -> StorageConfig {
        StorageConfig {
            kind: self.kind,
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            ..StorageConfig::default()
        }
    }

    /// `filesystem` or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self.kind {
            StorageKind::Filesystem => "the filesystem (blobs under the data directory)".into(),
            StorageKind::S3 => format!("s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

/// The recorded blob store, if any.
pub fn blob_store(t: &(impl ReadTx + ?Sized)) -> Result<Option<StoreIdentity>> {
    match t.setting(BLOB_STORE)? {
        Some(v) => Ok(Some(serde_json::from_str(&v)?)),
        None => Ok(None),
    }
}

/// Records the blob store.
pub fn set_blob_store(t: &mut WriteTables<'_>, id: &StoreIdentity) -> Result<()> {
    let json = serde_json::to_string(id)?;
    t.put_setting(BLOB_STORE, &json)
}
