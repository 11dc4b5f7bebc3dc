//! The pull-through cache: repositories under a mirror's prefix are served from upstream
//! registries and kept in this store (`[[mirrors]]`).
//!
//! - `config`: the `[[mirrors]]` entries and their checks.
//! - `upstream`: one mirror's upstream, through kura's own client (token flow, retries).
//! - `manifests`: manifests by digest cached for good, by tag revalidated after `tag_ttl`,
//!   served stale when the upstream fails.
//! - `blobs` and `flight`: a blob fetched once however many clients want it, streamed to the
//!   first while it is written and hashed, resumed with `Range`, never served unverified.
//! - `evict`: the size budget, least recently pulled first, never pushed content.
//! - `metrics`: hits, misses, upstream bytes and errors, revalidations, evictions.
//!
//! What is cached lives in the normal tables (`registry/cached.rs`), so listings, GC and fsck
//! see it; pushes into a mirrored repository are refused.

pub mod blobs;
pub mod config;
mod evict;
mod flight;
pub mod manifests;
pub mod metrics;
mod resume;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

pub use config::MirrorConfig;

use crate::error::{Code, Error, Result};
use crate::names::RepoName;
use crate::registry::Registry;

/// One configured mirror and its state.
pub struct Mirror {
    pub cfg: MirrorConfig,
    pub upstream: upstream::Upstream,
    flights: flight::Flights,
    pulls: crate::registry::PullLog,
    /// Woken when content was added, so the budget is checked soon.
    grew: tokio::sync::Notify,
}

/// A repository of a mirror: the mirror and the repository's name upstream.
#[derive(Clone)]
pub struct Route {
    pub mirror: Arc<Mirror>,
    pub upstream_name: RepoName,
}

/// Every configured mirror.
#[derive(Default)]
pub struct Mirrors {
    list: Vec<Arc<Mirror>>,
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.list.iter().map(|m| m.cfg.name.as_str()).collect();
        f.debug_struct("Mirrors").field("names", &names).finish()
    }
}

impl Mirrors {
    /// The mirrors of `configs` (already validated).
    pub fn new(configs: &[MirrorConfig]) -> Result<Mirrors> {
        let mut list = Vec::new();
        for cfg in configs {
            list.push(Arc::new(Mirror {
                upstream: upstream::Upstream::new(cfg)?,
                cfg: cfg.clone(),
                flights: flight::Flights::default(),
                pulls: crate::registry::PullLog::default(),
                grew: tokio::sync::Notify::new(),
            }));
        }
        Ok(Mirrors { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The mirror serving local repository `repo`, if it is under a mirror's prefix.
    pub fn route(&self, repo: &str) -> Option<Route> {
        let mirror = self.list.iter().find(|m| repo.starts_with(&m.cfg.prefix))?;
        let rest = &repo[mirror.cfg.prefix.len()..];
        let name = if mirror.cfg.is_docker_hub() && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_string()
        };
        Some(Route {
            mirror: mirror.clone(),
            upstream_name: RepoName::parse(&name).ok()?,
        })
    }

    /// The local repository name of upstream repository `name` of the mirror containerd names
    /// with `?ns=<ns>`, if a mirror answers to it.
    pub fn ns_repository(&self, ns: &str, name: &str) -> Option<String> {
        let m = self.list.iter().find(|m| m.cfg.answers_ns(ns))?;
        Some(format!("{}{name}", m.cfg.prefix))
    }

    /// Refuses a write (push, delete) to a mirrored repository with `DENIED`.
    pub fn refuse_write(&self, repo: &str) -> Result<()> {
        match self.list.iter().find(|m| repo.starts_with(&m.cfg.prefix)) {
            Some(m) => Err(Error::new(
                Code::Denied,
                format!(
                    "repository {repo} is a read-only mirror of {} (mirror {}); push to a repository outside {:?}",
                    m.cfg.upstream, m.cfg.name, m.cfg.prefix
                ),
            )),
            None => Ok(()),
        }
    }

    /// Starts each mirror's background task: recording pulls in batches and keeping the size
    /// budget.
    pub fn start(&self, registry: Registry) {
        for m in &self.list {
            tokio::spawn(upkeep(registry.clone(), m.clone()));
        }
    }
}

/// How often pulls are written and the budget is checked, at the least.
const UPKEEP_EVERY: Duration = Duration::from_secs(10);

async fn upkeep(registry: Registry, mirror: Arc<Mirror>) {
    // Every node records its own pulls; on a cluster one node at a time evicts.
    let leader = registry.leader(&format!("mirror-evict:{}", mirror.cfg.name));
    loop {
        let _ = tokio::time::timeout(UPKEEP_EVERY, mirror.grew.notified()).await;
        if let Err(e) = registry.record_cached_pulls(mirror.pulls.take()).await {
            tracing::warn!(target: "kura::mirror", mirror = %mirror.cfg.name, error = %e, "recording pulls failed");
        }
        if !leader.is_leader() {
            continue;
        }
        if let Err(e) = evict::keep_budget(&registry, &mirror).await {
            tracing::warn!(target: "kura::mirror", mirror = %mirror.cfg.name, error = %e, "eviction failed");
        }
    }
}

/// Runs one upkeep pass of every mirror now (tests and `kura gc`-style callers).
pub async fn upkeep_now(registry: &Registry, mirrors: &Mirrors) -> Result<()> {
    for m in &mirrors.list {
        registry.record_cached_pulls(m.pulls.take()).await?;
        evict::keep_budget(registry, m).await?;
    }
    Ok(())
}
