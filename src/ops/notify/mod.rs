//! Webhook notifications in Distribution's event envelope format
//! (`application/vnd.docker.distribution.events.v1+json`).
//!
//! Events of writes (push, mount, delete) are queued by the registry in the transaction of the
//! change they report (`registry/outbox.rs`), so an acknowledged write always has its event
//! queued, even across a crash. Pull events are best-effort: a pull changes nothing, and a
//! durable write per pull would tax the hottest path, so requests hand them to a channel
//! (`Notifier::emit`, never blocking) and a writer task queues them in batches; a crash may
//! lose the last 50 ms of them. One dispatcher task per endpoint delivers its rows in order,
//! deleting them once the endpoint answered 2xx and retrying with exponential backoff
//! otherwise; a slow or dead endpoint only grows its own queue.

mod dispatch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::Result;
use crate::registry::{Outbox, Registry};

pub use crate::events::{Event, EventContext, RequestInfo, Target};

/// The handle requests use to emit pull events, and that a live reload uses to replace the
/// endpoints. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Event>,
    registry: Registry,
    outbox: Arc<Outbox>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("endpoints", &self.outbox.endpoints().len())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts one dispatcher per webhook endpoint of `outbox` (installed in `registry`) and
    /// the pull-event writer on the current runtime.
    pub fn start(registry: Registry, outbox: Arc<Outbox>) -> Result<Notifier> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| crate::error::Error::internal("webhook client", e))?;
        for w in outbox.endpoints() {
            tokio::spawn(dispatch::deliver(registry.clone(), http.clone(), w));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch::persist_pulls(
            registry.clone(),
            outbox.clone(),
            rx,
        ));
        Ok(Notifier {
            tx,
            registry,
            outbox,
            http,
        })
    }

    /// Puts `endpoints` in force (a live reload): unchanged endpoints keep their dispatchers,
    /// changed and removed ones stop theirs (a batch being sent finishes; delivery stays at
    /// least once), new and changed ones get a dispatcher on `rt`.
    pub fn set_endpoints(
        &self,
        rt: &tokio::runtime::Handle,
        endpoints: &[crate::config::EndpointConfig],
    ) {
        for w in self.outbox.replace_endpoints(endpoints) {
            rt.spawn(dispatch::deliver(
                self.registry.clone(),
                self.http.clone(),
                w,
            ));
        }
    }

    /// Queues a pull event; returns at once.
    pub fn emit(&self, event: Event) {
        if self.tx.send(event).is_err() {
            tracing::warn!(target: "kura::notify", "notification writer stopped; event dropped");
        }
    }
}

/// Longest time pull events wait in memory before being written to the queue table.
const PERSIST_EVERY: Duration = Duration::from_millis(50);
