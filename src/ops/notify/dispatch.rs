//! Persisting events into the queue table and delivering them per endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::{Event, PERSIST_EVERY};
use crate::config::EndpointConfig;
use crate::meta::notifications;
use crate::registry::Registry;

/// Media type of a delivery request.
pub const ENVELOPE_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

fn wanted(e: &EndpointConfig, ev: &Event) -> bool {
    (e.actions.is_empty() || e.actions.iter().any(|a| a == &ev.action))
        && (e.repositories.is_empty()
            || e.repositories
                .iter()
                .any(|p| ev.target.repository.starts_with(p.as_str())))
}

/// Writes emitted events to the queue table in batches and wakes the dispatchers.
pub(super) async fn persist(
    registry: Registry,
    endpoints: Vec<EndpointConfig>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    seq: Arc<AtomicU64>,
    wake: HashMap<String, Arc<Notify>>,
    source_addr: String,
    instance: String,
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
        let mut rows: Vec<(String, u64, Vec<u8>)> = Vec::new();
        for mut ev in batch {
            ev.source.addr = source_addr.clone();
            ev.source.instance_id = instance.clone();
            let Ok(json) = serde_json::to_vec(&ev) else {
                continue;
            };
            for e in endpoints.iter().filter(|e| wanted(e, &ev)) {
                rows.push((
                    e.name.clone(),
                    seq.fetch_add(1, Ordering::Relaxed),
                    json.clone(),
                ));
            }
        }
        if rows.is_empty() {
            continue;
        }
        let r = registry.clone();
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let written = tokio::task::spawn_blocking(move || {
            r.meta().write(|t| {
                for (name, seq, json) in &rows {
                    notifications::push(t, name, *seq, json)?;
                }
                Ok(())
            })
        })
        .await;
        match written {
            Ok(Ok(())) => {
                for n in names {
                    if let Some(w) = wake.get(&n) {
                        w.notify_one();
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(target: "kura::notify", error = %e, "events not queued"),
            Err(e) => tracing::error!(target: "kura::notify", error = %e, "events not queued"),
        }
    }
}

/// Delivers `endpoint`'s queue forever, oldest first, with exponential backoff on failure.
pub(super) async fn deliver(
    registry: Registry,
    http: reqwest::Client,
    endpoint: EndpointConfig,
    wake: Arc<Notify>,
) {
    let mut backoff = endpoint.backoff;
    loop {
        let (r, name, n) = (registry.clone(), endpoint.name.clone(), endpoint.batch_size);
        let pending = tokio::task::spawn_blocking(move || {
            r.meta()
                .read(|t| notifications::pending(&t.notifications, &name, n))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
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
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(endpoint.max_backoff);
            }
        }
    }
}
