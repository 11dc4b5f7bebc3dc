//! The registry's capabilities, independent of HTTP: uploads, blobs, manifests and listings.
//! Each operation validates its input, touches blob files through `store` and records the
//! state change in one `meta` write transaction. Blocking work runs on tokio's blocking pool.

mod blobs;
mod cache;
mod cached;
mod listing;
mod locks;
mod manifests;
mod outbox;
mod pull_log;
mod quota;
mod sessions;
mod tag_pulls;
mod tag_writes;
mod uploads;
mod usage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::config::{MetadataConfig, MetadataKind, StorageConfig, StorageKind};
use crate::error::{Error, Result};
use crate::events::EventContext;
use crate::meta::settings::{self, StoreIdentity};
use crate::meta::{Meta, OpenError};
use crate::store::{BlobStore, Upload};

pub use listing::{Page, Referrer};
pub use locks::{DigestGuard, DigestLocks};
pub(crate) use manifests::remove_revision;
pub use manifests::{ManifestContent, PutManifest};
pub use outbox::{Outbox, Webhook};
pub use pull_log::PullLog;
pub use quota::SessionLimits;
pub(crate) use tag_writes::{remove_tag, set_tag};
pub use uploads::range_header;
pub use usage::{ScopeUsage, UsageReport};

/// Which blob store `open_inner` uses.
enum Choice<'a> {
    /// The configured one, which must be the one the metadata records.
    Configured(&'a StorageConfig),
    /// The one the metadata records.
    Recorded,
    /// The configured one, whatever is recorded.
    Migrating(&'a StorageConfig),
}

/// Why a registry could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RegistryOpenError {
    #[error("cannot create data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the {store:?} blob store: {source}")]
    Store {
        store: StorageKind,
        source: std::io::Error,
    },
    #[error(
        "this registry's blobs are in {recorded}, but the configuration names {configured}; \
         use the [storage] they were pushed to, or move them with `kura migrate-storage`"
    )]
    OtherStore {
        recorded: String,
        configured: String,
    },
    #[error(transparent)]
    Meta(#[from] OpenError),
    #[error(transparent)]
    Postgres(#[from] crate::meta::pg::PgOpenError),
    #[error("cannot read the metadata store: {0}")]
    Metadata(Error),
}

/// An upload session held in memory: its file's path, length and running hash.
type Session = Arc<tokio::sync::Mutex<Slot>>;

/// The state of an upload session in memory.
// One slot per session, behind its own mutex: boxing the file would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Slot {
    /// Known from its record only (after a restart): its file is rehashed on first use.
    Unloaded,
    Ready(Upload),
    /// Finished, cancelled, or its file is gone.
    Closed,
}

struct Inner {
    /// The data directory (metadata; blobs too on the filesystem driver).
    root: std::path::PathBuf,
    store: BlobStore,
    meta: Meta,
    sessions: Mutex<HashMap<String, Session>>,
    quota: quota::SessionQuota,
    locks: locks::DigestLocks,
    /// The cluster's database, for coordination (PostgreSQL metadata only).
    cluster: Option<crate::cluster::Target>,
    /// On a cluster, the turns of requests on upload sessions (`sessions.rs`).
    turns: Option<Arc<crate::cluster::SessionTurns>>,
    /// Backups running: the collector unlinks no blob meanwhile (`backup/pins.rs`).
    backups: crate::backup::BackupPins,
    gc: Mutex<()>,
    manifests: cache::ManifestCache,
    outbox: OnceLock<Arc<Outbox>>,
    /// The server's read-only switch, when one is followed (`follow_read_only`).
    read_only: RwLock<Arc<AtomicBool>>,
    /// The policies in force (`crate::policy`), replaced whole by a reload.
    policies: RwLock<Arc<crate::policy::Policies>>,
    /// Pulls of manifests by tag not yet written to `tag_pulls` (`tag_pulls.rs`).
    tag_pulls: PullLog,
}

/// A registry over one data directory. Cheap to clone. A handle made by `with_event` also
/// carries the request whose writes it makes, and queues their events (`outbox`).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
    event: Option<Arc<EventContext>>,
    /// Writes through this handle are not refused by quotas (the mirror's cache, imports;
    /// `exempt_from_quotas`).
    quota_exempt: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry whose data lives under `root` (created if missing), blobs included.
    pub fn open(root: &Path) -> Result<Registry, RegistryOpenError> {
        Self::open_with(root, &StorageConfig::default())
    }

    /// Opens the registry whose metadata lives under `root` (created if missing) and whose
    /// blobs are where `storage` says. The metadata records its blob store when it is created
    /// (`settings.blob_store`); a configuration naming another store is refused.
    pub fn open_with(root: &Path, storage: &StorageConfig) -> Result<Registry, RegistryOpenError> {
        Self::open_inner(
            root,
            Choice::Configured(storage),
            &MetadataConfig::default(),
        )
    }

    /// Opens the registry as configured: blobs where `storage` says, metadata where
    /// `metadata` says (redb under `root`, or a PostgreSQL database shared by a cluster's
    /// nodes; `root` then holds only this node's local files).
    pub fn open_configured(
        root: &Path,
        storage: &StorageConfig,
        metadata: &MetadataConfig,
    ) -> Result<Registry, RegistryOpenError> {
        Self::open_inner(root, Choice::Configured(storage), metadata)
    }

    /// Opens the registry under `root` on the blob store its metadata records (credentials
    /// from the `AWS_*` variables): what `kura gc`/`fsck --root` use without a config file.
    pub fn open_recorded(root: &Path) -> Result<Registry, RegistryOpenError> {
        Self::open_inner(root, Choice::Recorded, &MetadataConfig::default())
    }

    /// Opens the registry under `root` on `storage` whatever blob store its metadata records:
    /// for `kura migrate-storage`, which changes that record.
    pub fn open_for_migration(
        root: &Path,
        storage: &StorageConfig,
    ) -> Result<Registry, RegistryOpenError> {
        Self::open_inner(root, Choice::Migrating(storage), &MetadataConfig::default())
    }

    fn open_inner(
        root: &Path,
        choice: Choice<'_>,
        metadata: &MetadataConfig,
    ) -> Result<Registry, RegistryOpenError> {
        let io_err = |source| RegistryOpenError::Io {
            path: root.display().to_string(),
            source,
        };
        crate::store::create_dir_durable(root).map_err(io_err)?;
        let meta = match metadata.kind {
            MetadataKind::Redb => Meta::open(&root.join("meta.redb"))?,
            MetadataKind::Postgres => Meta::open_postgres(&metadata.url, metadata.pool_size)?,
        };
        // On a cluster the digest locks and leaderships are the database's (`crate::cluster`),
        // on connections of their own: as many for locks as the metadata pool has.
        let cluster = match meta.is_shared() {
            true => Some(crate::cluster::Target::parse(&metadata.url)?),
            false => None,
        };
        let locks = locks::DigestLocks::for_cluster(cluster.as_ref(), metadata.pool_size);
        // redb syncs the file, not the directory entry that names it.
        crate::store::sync_dir(root).map_err(io_err)?;
        let recorded = meta
            .read(|t| settings::blob_store(t))
            .map_err(RegistryOpenError::Metadata)?;
        let storage = match (choice, &recorded) {
            (Choice::Recorded, Some(r)) => r.to_config(),
            (Choice::Recorded, None) => StorageConfig::default(),
            (Choice::Configured(c), Some(r)) if !r.same_store(&StoreIdentity::of(c)) => {
                return Err(RegistryOpenError::OtherStore {
                    recorded: r.describe(),
                    configured: StoreIdentity::of(c).describe(),
                });
            }
            (Choice::Configured(c) | Choice::Migrating(c), _) => c.clone(),
        };
        if recorded.is_none() {
            let id = StoreIdentity::of(&storage);
            meta.write(|t| settings::set_blob_store(t, &id))
                .map_err(RegistryOpenError::Metadata)?;
        }
        let store = BlobStore::open(root, &storage).map_err(|source| RegistryOpenError::Store {
            store: storage.kind,
            source,
        })?;
        // Sessions that survived a restart keep their slots.
        let quota = quota::SessionQuota::default();
        let open = meta
            .read(|t| crate::meta::uploads::all(t))
            .map_err(RegistryOpenError::Metadata)?;
        for (id, rec) in open {
            quota.restore(&id, &rec.client);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                store,
                meta,
                sessions: Mutex::new(HashMap::new()),
                quota,
                locks,
                turns: cluster
                    .clone()
                    .map(|t| Arc::new(crate::cluster::SessionTurns::new(t))),
                cluster,
                backups: crate::backup::BackupPins::default(),
                gc: Mutex::new(()),
                manifests: cache::ManifestCache::default(),
                outbox: OnceLock::new(),
                read_only: RwLock::default(),
                policies: RwLock::default(),
                tag_pulls: PullLog::default(),
            }),
            event: None,
            quota_exempt: false,
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The blob file store.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// The metadata store.
    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    /// The per-digest locks ordering file publication against garbage collection.
    pub fn digest_locks(&self) -> &locks::DigestLocks {
        &self.inner.locks
    }

    /// This node's claim to `role` (`gc`, `webhook:<name>`, `replication:<name>`): on a
    /// cluster, one node at a time leads each role; alone (redb), this node always does.
    pub fn leader(&self, role: &str) -> crate::cluster::Leader {
        self.leader_retrying_every(role, crate::cluster::LEADER_RETRY)
    }

    /// `leader`, with a follower trying to take the role every `retry`.
    pub fn leader_retrying_every(
        &self,
        role: &str,
        retry: std::time::Duration,
    ) -> crate::cluster::Leader {
        match &self.inner.cluster {
            Some(t) => crate::cluster::Leader::elect(t, role, retry),
            None => crate::cluster::Leader::always(role),
        }
    }

    /// The backups running, which the collector's unlinks wait out (`backup/pins.rs`).
    pub fn backup_pins(&self) -> &crate::backup::BackupPins {
        &self.inner.backups
    }

    /// Serializes garbage collection runs.
    pub fn gc_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.gc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows a read-only switch: while it is on, reads record no client sightings (no
    /// durable write at all).
    pub fn follow_read_only(&self, flag: Arc<AtomicBool>) {
        *self
            .inner
            .read_only
            .write()
            .unwrap_or_else(|e| e.into_inner()) = flag;
    }

    /// The policies in force (none until `set_policies`).
    pub fn policies(&self) -> Arc<crate::policy::Policies> {
        self.inner
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `policies` in force for every request that starts after this call.
    pub fn set_policies(&self, policies: crate::policy::Policies) {
        *self
            .inner
            .policies
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(policies);
        if let Err(e) = self.sync_quota_namespaces() {
            // Each quota check tracks its namespace itself if this did not.
            tracing::warn!(error = %e, "could not update the namespaces whose usage is tracked");
        }
    }

    fn is_read_only(&self) -> bool {
        self.inner
            .read_only
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .load(Ordering::Relaxed)
    }

    /// Open upload sessions (records in the `uploads` table).
    pub fn session_count(&self) -> usize {
        self.inner.quota.open_sessions()
    }

    /// Sets the caps on open upload sessions (`[limits]`); unlimited until set.
    pub fn set_session_limits(&self, limits: SessionLimits) {
        self.inner.quota.set_limits(limits);
    }

    /// Forgets upload session `id` (after its record was removed) and frees its slot.
    pub fn drop_session(&self, id: &str) {
        self.inner
            .sessions
            .lock()
            .expect("sessions lock")
            .remove(id);
        self.inner.quota.release(id);
    }

    /// After a request that may have closed session `id`: forgets its in-memory state, and
    /// frees its slot if its record is gone (a failed close keeps both record and slot).
    fn settle_session(&self, id: &str) {
        let gone = self
            .meta()
            .read(|t| crate::meta::uploads::get(t, id))
            .is_ok_and(|r| r.is_none());
        if gone {
            self.drop_session(id);
        } else {
            self.inner
                .sessions
                .lock()
                .expect("sessions lock")
                .remove(id);
        }
    }

    /// Runs blocking work (file syncs, metadata commits) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Registry) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let r = self.clone();
        tokio::task::spawn_blocking(move || f(&r))
            .await
            .map_err(|e| Error::internal("blocking task", e))?
    }
}
