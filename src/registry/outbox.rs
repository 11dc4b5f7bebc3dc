//! The outbox of write events: a write's event rows go into the `notifications` table in the
//! same metadata transaction as the change they report, so a 2xx implies a queued event, even
//! across a crash. Two kinds of endpoint read that table: webhooks (`ops::notify`, rows in
//! Distribution's event format) and replication targets (`replication::push`, endpoint
//! `replication:<name>`, a `ReplicationEvent` per manifest push or delete). Their dispatchers
//! only read the table; they are woken once the transaction is durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use super::Registry;
use crate::config::EndpointConfig;
use crate::error::{Error, Result};
use crate::events::{Event, EventContext, ReplicationEvent, Source, Target};
use crate::meta::{WriteTables, notifications};

/// The configured endpoints, which events each wants, and the wake-up of each dispatcher.
/// The webhook endpoints can be replaced while serving (a live reload).
#[derive(Debug)]
pub struct Outbox {
    endpoints: RwLock<Vec<Arc<Webhook>>>,
    replication: Vec<ReplicationQueue>,
    source: Source,
}

/// A webhook endpoint in force: its settings, the wake-up of its dispatcher, and whether a
/// reload retired it (its dispatcher then stops; its undelivered rows stay in the table, for
/// an endpoint of the same name configured later).
#[derive(Debug)]
pub struct Webhook {
    pub config: EndpointConfig,
    pub wake: Notify,
    retired: AtomicBool,
    /// Notified once, when retired (a dispatcher backing off waits on it).
    pub retire: Notify,
}

impl Webhook {
    fn new(config: EndpointConfig) -> Arc<Webhook> {
        Arc::new(Webhook {
            config,
            wake: Notify::new(),
            retired: AtomicBool::new(false),
            retire: Notify::new(),
        })
    }

    /// Whether a reload replaced or removed this endpoint.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// A replication target's queue: the endpoint its rows are kept under, the glob patterns of the
/// repositories it wants (all when empty), and the wake-up of its dispatcher.
#[derive(Debug)]
pub struct ReplicationQueue {
    pub endpoint: String,
    pub repositories: Vec<String>,
    pub wake: Arc<Notify>,
}

impl Outbox {
    /// An outbox for `endpoints`, stamping events with `source_addr` and a new instance id.
    pub fn new(endpoints: Vec<EndpointConfig>, source_addr: String) -> Outbox {
        Outbox {
            endpoints: RwLock::new(endpoints.into_iter().map(Webhook::new).collect()),
            replication: Vec::new(),
            source: Source {
                addr: source_addr,
                instance_id: uuid::Uuid::new_v4().to_string(),
            },
        }
    }

    /// The outbox also queues manifest pushes and deletes for each of `queues`: (endpoint,
    /// repository patterns).
    pub fn with_replication(mut self, queues: Vec<(String, Vec<String>)>) -> Outbox {
        self.replication = queues
            .into_iter()
            .map(|(endpoint, repositories)| ReplicationQueue {
                endpoint,
                repositories,
                wake: Arc::new(Notify::new()),
            })
            .collect();
        self
    }

    /// The replication queue kept under `endpoint`.
    pub fn replication_queue(&self, endpoint: &str) -> Option<&ReplicationQueue> {
        self.replication.iter().find(|q| q.endpoint == endpoint)
    }

    /// The webhook endpoints in force.
    pub fn endpoints(&self) -> Vec<Arc<Webhook>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `configs` in force as the webhook endpoints: an endpoint whose settings did not
    /// change is kept (with its dispatcher); the others are retired and their dispatchers
    /// woken to stop. Returns the new endpoints, which need dispatchers. Events of writes
    /// committed from now on are queued for the new set.
    pub fn replace_endpoints(&self, configs: &[EndpointConfig]) -> Vec<Arc<Webhook>> {
        let mut current = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::with_capacity(configs.len());
        let mut started = Vec::new();
        for c in configs {
            match current.iter().find(|w| w.config == *c) {
                Some(w) => next.push(w.clone()),
                None => {
                    let w = Webhook::new(c.clone());
                    started.push(w.clone());
                    next.push(w);
                }
            }
        }
        for old in current.iter() {
            if !next.iter().any(|w| Arc::ptr_eq(w, old)) {
                old.retired.store(true, Ordering::Release);
                old.wake.notify_one();
                old.retire.notify_one();
            }
        }
        *current = next;
        started
    }

    /// Queues `ev` in `t` for every endpoint that wants it.
    pub fn queue(&self, t: &mut WriteTables<'_>, mut ev: Event) -> Result<()> {
        ev.source = self.source.clone();
        let mut json = None;
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        for e in endpoints
            .iter()
            .map(|w| &w.config)
            .filter(|e| wanted(e, &ev))
        {
            if json.is_none() {
                json = Some(serde_json::to_vec(&ev).map_err(|e| Error::internal("event", e))?);
            }
            notifications::push(t, &e.name, json.as_deref().expect("set above"))?;
        }
        let Some(rep) = ReplicationEvent::of(&ev) else {
            return Ok(());
        };
        let mut json = None;
        for q in &self.replication {
            if !crate::replication::config::matches_any(&q.repositories, &rep.repository) {
                continue;
            }
            if json.is_none() {
                json = Some(serde_json::to_vec(&rep).map_err(|e| Error::internal("event", e))?);
            }
            notifications::push(t, &q.endpoint, json.as_deref().expect("set above"))?;
        }
        Ok(())
    }

    /// Wakes every dispatcher (after a commit that may have queued events).
    pub fn wake(&self) {
        for w in self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            w.wake.notify_one();
        }
        for q in &self.replication {
            q.wake.notify_one();
        }
    }
}

/// Whether endpoint `e` is sent `ev` (its `actions` and `repositories` filters).
fn wanted(e: &EndpointConfig, ev: &Event) -> bool {
    (e.actions.is_empty() || e.actions.iter().any(|a| a == &ev.action))
        && (e.repositories.is_empty()
            || e.repositories
                .iter()
                .any(|p| ev.target.repository.starts_with(p.as_str())))
}

impl Registry {
    /// Makes this registry queue events of writes made through `with_event` handles. Once.
    pub fn install_outbox(&self, outbox: Outbox) -> Result<Arc<Outbox>> {
        let outbox = Arc::new(outbox);
        self.inner
            .outbox
            .set(outbox.clone())
            .map_err(|_| Error::internal("outbox", "installed twice"))?;
        Ok(outbox)
    }

    /// The installed outbox, if any.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.inner.outbox.get()
    }

    /// A handle on the same registry whose writes queue their events with `ctx` (when an
    /// outbox is installed).
    pub fn with_event(&self, ctx: Option<EventContext>) -> Registry {
        Registry {
            inner: self.inner.clone(),
            event: ctx.map(Arc::new),
            quota_exempt: self.quota_exempt,
        }
    }

    /// Inside a write transaction: queues the event `action` of `target` (built only when this
    /// handle carries a request context and an outbox is installed).
    pub(super) fn queue_event(
        &self,
        t: &mut WriteTables<'_>,
        action: &str,
        target: impl FnOnce(&str) -> Target,
    ) -> Result<()> {
        let (Some(ctx), Some(outbox)) = (&self.event, self.outbox()) else {
            return Ok(());
        };
        outbox.queue(t, ctx.event(action, target(&ctx.base_url)))
    }

    /// After a durable commit that may have queued events: wakes the dispatchers.
    pub(super) fn events_committed(&self) {
        if let (Some(_), Some(outbox)) = (&self.event, self.outbox()) {
            outbox.wake();
        }
    }
}

/// The event target of blob `digest` of `repo`, addressed under `base`.
pub(super) fn blob_target(base: &str, repo: &str, digest: &str, size: u64) -> Target {
    Target {
        media_type: crate::events::BLOB_MEDIA_TYPE.into(),
        size,
        digest: digest.to_string(),
        length: size,
        repository: repo.to_string(),
        url: format!("{base}/v2/{repo}/blobs/{digest}"),
        tag: None,
    }
}
