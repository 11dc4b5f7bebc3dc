//! One upstream fetch per blob, however many clients want it at once. The first request leads:
//! its fetch runs in a task of its own (a client hanging up does not stop it) and streams the
//! bytes to that client while `Registry::put_blob` writes and hashes them. The last chunk is
//! held back until the digest is verified and the blob recorded, so a mismatch is never served
//! whole: the client's body ends in an error instead. Others wait for the fetch and are served
//! from the store. A broken upstream transfer is resumed with `Range` (`resume`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::{Route, metrics, resume};
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::names::RepoName;
use crate::registry::Registry;

/// How a fetch ended, as every waiter needs it.
#[derive(Clone, Debug)]
enum State {
    Running,
    Done(Result<(), (Code, u16, String)>),
}

/// The fetches in progress, by digest.
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<State>>>,
}

/// What a blob request gets from the mirror.
pub enum Pulled {
    /// The blob is in the store, linked to the repository: serve it from there.
    Local,
    /// The blob is being fetched: its length and the body as it arrives.
    Stream {
        len: u64,
        body: mpsc::Receiver<Result<Bytes>>,
    },
}

/// Ends a flight when dropped: removes it from the map and tells the waiters.
struct Lead {
    route: Route,
    key: String,
    tx: watch::Sender<State>,
}

impl Lead {
    fn finish(&self, out: &Result<()>) {
        let state = State::Done(
            out.as_ref()
                .map(|_| ())
                .map_err(|e| (e.code, e.status.as_u16(), e.message.clone())),
        );
        self.tx.send_replace(state);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if matches!(*self.tx.borrow(), State::Running) {
            self.tx.send_replace(State::Done(Err((
                Code::Unknown,
                502,
                "the upstream fetch was abandoned".into(),
            ))));
        }
        self.route
            .mirror
            .flights
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

fn rebuild(code: Code, status: u16, message: String) -> Error {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    Error::new(code, message).with_status(status)
}

/// Fetches blob `digest` of `repo` from upstream, or waits for the fetch in progress. With
/// `stream`, a leading request gets the bytes as they arrive; otherwise it returns once the
/// blob is stored.
pub async fn fetch(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    digest: &Digest,
    stream: bool,
) -> Result<Pulled> {
    let key = digest.to_string();
    let joined = {
        let mut running = route
            .mirror
            .flights
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match running.get(&key) {
            Some(rx) => Err(rx.clone()),
            None => {
                let (tx, rx) = watch::channel(State::Running);
                running.insert(key.clone(), rx);
                Ok(Lead {
                    route: route.clone(),
                    key,
                    tx,
                })
            }
        }
    };
    let lead = match joined {
        Ok(lead) => lead,
        Err(rx) => return follow(reg, route, repo, digest, rx).await,
    };
    let m = &route.mirror;
    let first = match m.upstream.blob(&route.upstream_name, digest, 0).await {
        Ok(r) => r,
        Err(f) => {
            let out = Err(super::blobs::failed(route, digest, f));
            lead.finish(&out);
            return out.map(|()| Pulled::Local);
        }
    };
    let len = first.content_length();
    let (tx, rx) = mpsc::channel(4);
    let client = (stream && len.is_some()).then_some(tx);
    let done = lead.tx.subscribe();
    let (reg2, route2, repo2, digest2) = (reg.clone(), route.clone(), repo.clone(), digest.clone());
    tokio::spawn(async move {
        let out = run(&reg2, &route2, &repo2, &digest2, first, len, client).await;
        if out.is_ok() {
            route2
                .mirror
                .pulls
                .note(repo2.as_str(), &digest2.to_string());
            route2.mirror.grew.notify_one();
        } else {
            metrics::upstream_error(&route2.mirror.cfg.name);
        }
        lead.finish(&out);
    });
    match (stream, len) {
        (true, Some(len)) => Ok(Pulled::Stream { len, body: rx }),
        _ => follow(reg, route, repo, digest, done).await,
    }
}

/// Waits for a fetch by another request, then serves the stored blob.
async fn follow(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    digest: &Digest,
    mut rx: watch::Receiver<State>,
) -> Result<Pulled> {
    let state = rx
        .wait_for(|s| matches!(s, State::Done(_)))
        .await
        .map(|s| s.clone())
        .unwrap_or(State::Done(Err((Code::Unknown, 502, "fetch ended".into()))));
    match state {
        State::Done(Ok(()))
            if reg
                .link_recorded(repo.as_str(), &digest.to_string())
                .await? =>
        {
            route.mirror.pulls.note(repo.as_str(), &digest.to_string());
            Ok(Pulled::Local)
        }
        State::Done(Ok(())) => Err(Error::new(
            Code::BlobUnknown,
            format!("blob {digest} was removed while it was being fetched; retry"),
        )),
        State::Done(Err((code, status, msg))) => Err(rebuild(code, status, msg)),
        State::Running => unreachable!("waited for Done"),
    }
}

/// Holds the latest chunk back from the client until the next one (or verification) comes.
struct Tee {
    client: Option<mpsc::Sender<Result<Bytes>>>,
    held: Option<Bytes>,
}

impl Tee {
    async fn pass(&mut self, chunk: Bytes) {
        if let Some(prev) = self.held.replace(chunk) {
            self.send(Ok(prev)).await;
        }
    }

    async fn send(&mut self, item: Result<Bytes>) {
        if let Some(tx) = &self.client
            && tx.send(item).await.is_err()
        {
            // The client hung up; the fetch goes on for the cache.
            self.client = None;
        }
    }
}

/// The leader's task: stores the upstream body through `put_blob`, teeing it to the client.
async fn run(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    digest: &Digest,
    first: reqwest::Response,
    len: Option<u64>,
    client: Option<mpsc::Sender<Result<Bytes>>>,
) -> Result<()> {
    let tee = Arc::new(tokio::sync::Mutex::new(Tee { client, held: None }));
    let source = resume::body(route.clone(), digest.clone(), first, len);
    let teed = {
        let tee = tee.clone();
        source.then(move |item| {
            let tee = tee.clone();
            async move {
                if let Ok(b) = &item {
                    tee.lock().await.pass(b.clone()).await;
                }
                item
            }
        })
    };
    // Cached content counts toward usage but no quota refuses it (the mirror has its budget).
    let out = reg
        .exempt_from_quotas()
        .put_blob(repo, digest, Box::pin(teed))
        .await;
    let mut tee = tee.lock().await;
    match &out {
        Ok(()) => {
            if let Some(last) = tee.held.take() {
                tee.send(Ok(last)).await;
            }
        }
        Err(e) => {
            tracing::warn!(target: "kura::mirror", mirror = %route.mirror.cfg.name, %digest, error = %e, "upstream blob not stored");
            tee.send(Err(Error::new(e.code, e.message.clone()))).await;
        }
    }
    out
}
