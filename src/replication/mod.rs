//! Replication between registries, on kura's own client (`crate::client`).
//!
//! - `config`: `[[replication.push]]` targets and `[[replication.pull]]` sources
//! - `push`: push mode. A target is an outbox endpoint of its own kind
//!   (`replication:<name>`): every manifest push and delete of a matching repository is queued
//!   in the transaction of the change (`registry::Outbox`), and one dispatcher per target
//!   applies the queue in order, from the local store (`source`) to the target
//! - `pull`: pull mode, periodic (`interval`) or once (`kura sync`)
//! - `status`: per target and source: pending events, last success, last error
//!
//! Mirrored (pull-through cache) content and pull-mode copies are written through handles
//! without an event context, so they are never queued.

pub mod config;
pub mod pull;
pub mod push;
pub mod source;
pub mod status;

use std::sync::Arc;

use tokio::sync::Mutex;

pub use config::{PullSource, PushTarget, ReplicationConfig};
pub use pull::SyncResult;
pub use status::{Board, Report};

use crate::client::auth::Credentials;
use crate::client::transport::{Registry as Remote, configured_remote};
use crate::registry::{Outbox, Registry};

/// Retries of one request inside a replication step; the dispatcher's backoff does the rest.
const REQUEST_RETRIES: u32 = 2;

/// A client handle on a remote registry.
pub fn connect(r: config::Remote<'_>) -> crate::client::Result<Remote> {
    let host = config::host_of(r.url).ok_or_else(|| {
        crate::client::Error::Invalid(format!("{:?} is not http(s)://host[:port]", r.url))
    })?;
    let creds = (!r.username.is_empty()).then(|| Credentials {
        username: r.username.to_string(),
        password: r.password.to_string(),
    });
    configured_remote(
        host,
        r.url.starts_with("http://"),
        REQUEST_RETRIES,
        r.token,
        creds,
    )
}

/// The outbox queues of the push targets: (endpoint, repository patterns).
pub fn outbox_queues(cfg: &ReplicationConfig) -> Vec<(String, Vec<String>)> {
    cfg.push
        .iter()
        .map(|t| (status::endpoint(&t.name), t.repositories.clone()))
        .collect()
}

/// One pull source and the lock serializing its syncs.
struct Source {
    cfg: PullSource,
    remote: Remote,
    running: Mutex<()>,
}

/// Replication in a running server: the dispatchers, the periodic syncs and their status.
pub struct Replication {
    registry: Registry,
    board: Arc<Board>,
    sources: Vec<Arc<Source>>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<&str> = self.sources.iter().map(|s| s.cfg.name.as_str()).collect();
        f.debug_struct("Replication")
            .field("sources", &sources)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// Replication over `registry` for `cfg`, without starting anything (`kura sync --root`).
    pub fn new(registry: Registry, cfg: &ReplicationConfig) -> crate::client::Result<Replication> {
        let board = Arc::new(Board::default());
        let mut sources = Vec::new();
        for s in &cfg.pull {
            board.add_source(&s.name, &s.url, s.interval.as_secs());
            sources.push(Arc::new(Source {
                cfg: s.clone(),
                remote: connect(s.remote())?,
                running: Mutex::new(()),
            }));
        }
        Ok(Replication {
            registry,
            board,
            sources,
        })
    }

    /// Starts, on the current runtime, a dispatcher per push target (whose queue `outbox`, the
    /// one installed in the registry, holds) and the periodic syncs of the pull sources.
    pub fn start(
        registry: Registry,
        cfg: &ReplicationConfig,
        outbox: Option<&Outbox>,
    ) -> crate::client::Result<Arc<Replication>> {
        let rep = Arc::new(Replication::new(registry, cfg)?);
        for t in &cfg.push {
            let queue = outbox
                .and_then(|o| o.replication_queue(&status::endpoint(&t.name)))
                .ok_or_else(|| {
                    crate::client::Error::Invalid(format!("no outbox queue for target {}", t.name))
                })?;
            rep.board.add_target(&t.name, &t.url);
            tokio::spawn(push::run(
                rep.registry.clone(),
                t.clone(),
                connect(t.remote())?,
                queue.wake.clone(),
                rep.board.clone(),
            ));
        }
        for s in rep.sources.iter().filter(|s| !s.cfg.interval.is_zero()) {
            let (rep, s) = (rep.clone(), s.clone());
            tokio::spawn(async move {
                // On a cluster one node at a time syncs each source.
                let leader = rep
                    .registry
                    .leader(&format!("replication-pull:{}", s.cfg.name));
                loop {
                    if !leader.is_leader() {
                        tokio::time::sleep(crate::cluster::LEADER_POLL).await;
                        continue;
                    }
                    rep.sync_one(&s).await;
                    tokio::time::sleep(s.cfg.interval).await;
                }
            });
        }
        Ok(rep)
    }

    async fn sync_one(&self, s: &Source) -> SyncResult {
        let _running = s.running.lock().await;
        let name = s.cfg.name.clone();
        match pull::sync(&self.registry, &s.cfg, &s.remote).await {
            Ok(copied) => {
                tracing::info!(target: "kura::replication", source = %name, tags = copied.tags, manifests = copied.manifests, blobs = copied.blobs, "sync done");
                self.board.synced(&name, copied);
                SyncResult {
                    name,
                    copied,
                    error: None,
                }
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(target: "kura::replication", source = %name, %error, "sync failed");
                self.board.sync_failed(&name, error.clone());
                SyncResult {
                    name,
                    copied: Default::default(),
                    error: Some(error),
                }
            }
        }
    }

    /// Syncs every pull source (or only `only`) once, now.
    pub async fn sync(&self, only: Option<&str>) -> Result<Vec<SyncResult>, String> {
        if let Some(n) = only
            && !self.sources.iter().any(|s| s.cfg.name == n)
        {
            return Err(format!("no [[replication.pull]] source named {n:?}"));
        }
        let mut out = Vec::new();
        for s in self
            .sources
            .iter()
            .filter(|s| only.is_none_or(|n| s.cfg.name == n))
        {
            out.push(self.sync_one(s).await);
        }
        Ok(out)
    }

    /// The status of every target and source.
    pub fn report(&self) -> crate::error::Result<Report> {
        self.board.report(&self.registry)
    }
}
