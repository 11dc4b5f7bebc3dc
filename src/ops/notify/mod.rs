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

/// The handle requests use to emit pull events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Event>,
}

impl Notifier {
    /// Starts one dispatcher per webhook endpoint of `outbox` (installed in `registry`) and
    /// the pull-event writer on the current runtime.
    pub fn start(registry: Registry, outbox: Arc<Outbox>) -> Result<Notifier> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| crate::error::Error::internal("webhook client", e))?;
        for (e, wake) in outbox.endpoints() {
            tokio::spawn(dispatch::deliver(
                registry.clone(),
                http.clone(),
                e.clone(),
                wake.clone(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch::persist_pulls(registry, outbox, rx));
        Ok(Notifier { tx })
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
