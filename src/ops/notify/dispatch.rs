//! Persisting events into the queue table and delivering them per endpoint.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Event, PERSIST_EVERY};
use crate::config::EndpointConfig;
use crate::meta::notifications;
use crate::registry::{Outbox, Registry, Webhook};

/// Media type of a delivery request.
pub const ENVELOPE_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// Writes pull events to the queue table in batches (best-effort) and wakes the dispatchers.
pub(super) async fn persist_pulls(
    registry: Registry,
    outbox: Arc<Outbox>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(PERSIST_EVERY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => batch.push(ev),
                    None => { open = false; break; }
                },
                _ = &mut deadline => break,
            }
        }
        let (r, o) = (registry.clone(), outbox.clone());
        let written = tokio::task::spawn_blocking(move || {
            r.meta().write(|t| {
                for ev in &batch {
                    o.queue(t, ev.clone())?;
                }
                Ok(())
            })
        })
        .await;
        match written {
            Ok(Ok(())) => outbox.wake(),
            Ok(Err(e)) => {
                tracing::error!(target: "kura::notify", error = %e, "pull events not queued")
            }
            Err(e) => tracing::error!(target: "kura::notify", error = %e, "pull events not queued"),
        }
    }
}

/// Delivers `webhook`'s queue, oldest first, with exponential backoff on failure, until a
/// reload retires it; on a cluster, only while this node leads role `webhook:<name>`.
pub(super) async fn deliver(registry: Registry, http: reqwest::Client, webhook: Arc<Webhook>) {
    let endpoint: &EndpointConfig = &webhook.config;
    let wake = &webhook.wake;
    let mut backoff = endpoint.backoff;
    let leader = registry.leader(&format!("webhook:{}", endpoint.name));
    while !webhook.is_retired() {
        if !leader.is_leader() {
            let _ =
                tokio::time::timeout(crate::cluster::LEADER_POLL, webhook.retire.notified()).await;
            continue;
        }
        let (r, name, n) = (registry.clone(), endpoint.name.clone(), endpoint.batch_size);
        let pending = tokio::task::spawn_blocking(move || {
            r.meta().read(|t| notifications::pending(t, &name, n))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        if webhook.is_retired() {
            break;
        }
        if pending.is_empty() {
            // Woken by new events; the timeout also picks up anything missed.
            let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
            continue;
        }
        let mut body = b"{\"events\":[".to_vec();
        for (i, (_, ev)) in pending.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(ev);
        }
        body.extend_from_slice(b"]}");
        let mut req = http
            .post(&endpoint.url)
            .timeout(endpoint.timeout)
            .header("Content-Type", ENVELOPE_TYPE)
            .body(body);
        for (k, v) in &endpoint.headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                backoff = endpoint.backoff;
                let seqs: Vec<u64> = pending.iter().map(|p| p.0).collect();
                let (r, name) = (registry.clone(), endpoint.name.clone());
                let removed = tokio::task::spawn_blocking(move || {
                    r.meta().write(|t| notifications::remove(t, &name, &seqs))
                })
                .await;
                if !matches!(removed, Ok(Ok(()))) {
                    tracing::error!(target: "kura::notify", endpoint = %endpoint.name, "delivered events not dequeued; they may be sent again");
                }
            }
            outcome => {
                let why = match outcome {
                    Ok(resp) => format!("status {}", resp.status()),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(target: "kura::notify", endpoint = %endpoint.name, events = pending.len(), %why, retry_in = ?backoff, "webhook delivery failed");
                // A retirement cuts the wait short.
                let _ = tokio::time::timeout(backoff, webhook.retire.notified()).await;
                backoff = (backoff * 2).min(endpoint.max_backoff);
            }
        }
    }
}
