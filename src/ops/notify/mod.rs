//! Webhook notifications in Distribution's event envelope format
//! (`application/vnd.docker.distribution.events.v1+json`).
//!
//! Requests only hand events to a channel (`Notifier::emit`, never blocking). A writer task
//! persists them in batches into the `notifications` table, one row per matching endpoint, and
//! one dispatcher task per endpoint delivers its rows in order, deleting them once the endpoint
//! answered 2xx and retrying with exponential backoff otherwise. Undelivered events survive a
//! restart; a slow or dead endpoint only grows its own queue.

mod dispatch;
mod event;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::config::EndpointConfig;
use crate::error::Result;
use crate::meta::notifications;
use crate::registry::Registry;

pub use event::{Event, RequestInfo, Target};

/// The handle requests use to emit events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Event>,
}

impl Notifier {
    /// Starts the writer and one dispatcher per endpoint on the current runtime.
    pub fn start(
        registry: Registry,
        endpoints: Vec<EndpointConfig>,
        source_addr: String,
    ) -> Result<Notifier> {
        let seq = registry
            .meta()
            .read(|t| notifications::last_seq(&t.notifications))?;
        let seq = Arc::new(AtomicU64::new(seq + 1));
        let wake: HashMap<String, Arc<Notify>> = endpoints
            .iter()
            .map(|e| (e.name.clone(), Arc::new(Notify::new())))
            .collect();
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| crate::error::Error::internal("webhook client", e))?;
        for e in &endpoints {
            tokio::spawn(dispatch::deliver(
                registry.clone(),
                http.clone(),
                e.clone(),
                wake[&e.name].clone(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let instance = uuid::Uuid::new_v4().to_string();
        tokio::spawn(dispatch::persist(
            registry,
            endpoints,
            rx,
            seq,
            wake,
            source_addr,
            instance,
        ));
        Ok(Notifier { tx })
    }

    /// Queues an event; returns at once.
    pub fn emit(&self, event: Event) {
        if self.tx.send(event).is_err() {
            tracing::warn!(target: "kura::notify", "notification writer stopped; event dropped");
        }
    }
}

/// Longest time events wait in memory before being written to the queue table.
const PERSIST_EVERY: Duration = Duration::from_millis(50);
