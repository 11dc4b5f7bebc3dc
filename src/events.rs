//! The event format of Distribution's notifications, and the request context a write's event
//! is built from. Events of writes are queued by `registry` in the transaction of the change
//! they report (the outbox, `registry/outbox.rs`); `ops::notify` delivers them.

use serde::{Deserialize, Serialize};

/// What an event is about.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    pub length: u64,
    pub repository: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The request that caused an event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

/// One event: `push`, `pull`, `mount` or `delete` of a manifest or blob.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    pub action: String,
    pub target: Target,
    pub request: RequestInfo,
    pub actor: Actor,
    pub source: Source,
}

/// Who caused an event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Which registry instance emitted an event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

impl Event {
    /// A new event stamped now.
    pub fn new(action: &str, target: Target, request: RequestInfo, actor: Option<String>) -> Event {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            action: action.into(),
            target,
            request,
            actor: Actor {
                name: actor.unwrap_or_default(),
            },
            source: Source::default(),
        }
    }
}

/// What a write's event says about the request that caused it: set on a `Registry` handle with
/// `Registry::with_event`, turned into an `Event` inside the write's transaction.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    pub request: RequestInfo,
    pub actor: Option<String>,
    /// `scheme://host` the client addressed; event URLs are built on it.
    pub base_url: String,
}

impl EventContext {
    /// The event `action` of `target` caused by this request, stamped now.
    pub fn event(&self, action: &str, target: Target) -> Event {
        Event::new(action, target, self.request.clone(), self.actor.clone())
    }
}

/// The media type of blob events' targets (manifest events carry the manifest's, or none).
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// What a replication target is told of a write (`replication::push`): a manifest pushed (by
/// tag or digest) or deleted (a tag, or a revision by digest). Blob events are not replicated:
/// a manifest's push carries its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationEvent {
    /// `push` or `delete`.
    pub action: String,
    pub repository: String,
    /// The manifest's digest; empty for a tag delete.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl ReplicationEvent {
    /// The replication event of write event `ev`, if it is a manifest push or delete.
    pub fn of(ev: &Event) -> Option<ReplicationEvent> {
        let wanted = matches!(ev.action.as_str(), "push" | "delete")
            && ev.target.media_type != BLOB_MEDIA_TYPE;
        wanted.then(|| ReplicationEvent {
            action: ev.action.clone(),
            repository: ev.target.repository.clone(),
            digest: ev.target.digest.clone(),
            tag: ev.target.tag.clone(),
        })
    }
}
