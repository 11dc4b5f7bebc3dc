//! Push mode: one dispatcher per target consumes the target's queue (`notifications` rows
//! under `replication:<name>`, written by the outbox in the transaction of each manifest push
//! or delete) in order. A manifest push is copied from the local store with every platform and
//! its referrers, digests preserved; a delete deletes the tag or manifest at the target. A row
//! is removed only once the target acknowledged it; a failure is retried with exponential
//! backoff, so a target that is down catches up when it is back, even after a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::config::PushTarget;
use super::source::LocalSource;
use super::status::{Board, endpoint, pending};
use crate::client::api::Repo;
use crate::client::transfer::{Context, copy};
use crate::client::transport::Registry as Remote;
use crate::digest::Digest;
use crate::events::ReplicationEvent;
use crate::meta::{manifests, notifications};
use crate::names::{Reference, RepoName};
use crate::registry::Registry;

/// Rows read from the queue at a time.
const BATCH: usize = 50;

/// How an event ended.
enum Outcome {
    /// Applied at the target; `n` manifests copied.
    Done(u64),
    /// Nothing to do: the target has it already, or it is gone locally (and its delete
    /// event follows).
    Skipped,
    /// The target can never accept it: dropped, with the reason.
    Refused(String),
}

/// Runs target `t`'s dispatcher forever; on a cluster, it applies events only while this node
/// leads role `replication:<name>`.
pub async fn run(
    registry: Registry,
    t: PushTarget,
    remote: Remote,
    wake: Arc<Notify>,
    board: Arc<Board>,
) {
    let queue = endpoint(&t.name);
    let mut backoff = t.backoff;
    let leader = registry.leader(&format!("replication:{}", t.name));
    loop {
        if !leader.is_leader() {
            tokio::time::sleep(crate::cluster::LEADER_POLL).await;
            continue;
        }
        let (r, q, name) = (registry.clone(), queue.clone(), t.name.clone());
        let rows = tokio::task::spawn_blocking(move || {
            if let Ok(n) = pending(&r, &name) {
                crate::ops::metrics::set_replication_pending(&name, n);
            }
            r.meta().read(|tx| notifications::pending(tx, &q, BATCH))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        if rows.is_empty() {
            // Woken after each commit that queued events; the timeout picks up anything missed.
            let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
            continue;
        }
        for (seq, row) in rows {
            match apply(&registry, &t, &remote, &row).await {
                Ok(outcome) => {
                    match outcome {
                        Outcome::Done(n) => board.replicated(&t.name, n),
                        Outcome::Skipped => board.replicated(&t.name, 0),
                        Outcome::Refused(why) => {
                            tracing::error!(target: "kura::replication", target_name = %t.name, %why, "event refused by the target; dropped");
                            board.target_failed(&t.name, why, true);
                        }
                    }
                    backoff = t.backoff;
                    if !dequeue(&registry, &queue, seq).await {
                        tracing::error!(target: "kura::replication", target_name = %t.name, seq, "replicated event not dequeued; it will be applied again");
                        tokio::time::sleep(t.max_backoff.min(Duration::from_secs(5))).await;
                        break;
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::warn!(target: "kura::replication", target_name = %t.name, %why, retry_in = ?backoff, "replication failed");
                    board.target_failed(&t.name, why, false);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(t.max_backoff);
                    break;
                }
            }
        }
    }
}

async fn dequeue(registry: &Registry, queue: &str, seq: u64) -> bool {
    let (r, q) = (registry.clone(), queue.to_string());
    matches!(
        tokio::task::spawn_blocking(move || r.meta().write(|t| notifications::remove(
            t,
            &q,
            &[seq]
        )))
        .await,
        Ok(Ok(()))
    )
}

/// Statuses meaning a request can never succeed as it is (retrying cannot help).
fn refused(e: &crate::client::Error) -> bool {
    matches!(e.status(), Some(400 | 405 | 413 | 415))
}

/// Applies one queued event at the target.
async fn apply(
    registry: &Registry,
    t: &PushTarget,
    remote: &Remote,
    row: &[u8],
) -> Result<Outcome, crate::client::Error> {
    let ev: ReplicationEvent = match serde_json::from_slice(row) {
        Ok(ev) => ev,
        Err(e) => return Ok(Outcome::Refused(format!("unreadable queued event: {e}"))),
    };
    let names = (
        RepoName::parse(&ev.repository),
        RepoName::parse(&format!("{}{}", t.prefix, ev.repository)),
    );
    let (Ok(local), Ok(target)) = names else {
        return Ok(Outcome::Refused(format!(
            "{}{} is not a valid target repository name",
            t.prefix, ev.repository
        )));
    };
    let dst = Repo::new(remote.clone(), target).for_push();
    let tag = ev.tag.clone().map(Reference::Tag);
    match ev.action.as_str() {
        "push" => {
            let Ok(digest) = ev.digest.parse::<Digest>() else {
                return Ok(Outcome::Refused(format!("bad digest {:?}", ev.digest)));
            };
            if !has_revision(registry, &local, &digest).await {
                return Ok(Outcome::Skipped);
            }
            let src = LocalSource {
                registry: registry.clone(),
                repo: local,
            };
            let dst_ref = tag.unwrap_or(Reference::Digest(digest.clone()));
            // Already there (a registry holds a manifest only with everything it names): no
            // write, so two registries replicating to each other do not echo pushes forever.
            if dst.manifest_digest(&dst_ref).await?.flatten() == Some(digest.clone()) {
                return Ok(Outcome::Skipped);
            }
            let ctx = Context {
                progress: crate::client::progress::Progress::new(
                    crate::client::progress::OutputMode::Quiet,
                ),
                opts: Default::default(),
                jobs: 4,
            };
            match copy(
                &ctx,
                &src,
                &Reference::Digest(digest),
                &dst,
                Some(&dst_ref),
                true,
            )
            .await
            {
                Ok(_) => Ok(Outcome::Done(1)),
                Err(e) if refused(&e) => Ok(Outcome::Refused(e.to_string())),
                Err(e) => Err(e),
            }
        }
        "delete" => {
            let reference = match (tag, ev.digest.parse::<Digest>()) {
                (Some(r), _) => r,
                (None, Ok(d)) => Reference::Digest(d),
                (None, Err(_)) => return Ok(Outcome::Refused("a delete names nothing".into())),
            };
            match dst.delete_manifest(&reference).await {
                Ok(()) => Ok(Outcome::Done(0)),
                // Already gone there (or never replicated): the target is as wanted.
                Err(e) if e.status() == Some(404) => Ok(Outcome::Done(0)),
                Err(e) if refused(&e) => Ok(Outcome::Refused(e.to_string())),
                Err(e) => Err(e),
            }
        }
        other => Ok(Outcome::Refused(format!("unknown action {other:?}"))),
    }
}

/// Whether revision `digest` of `repo` is still stored locally.
async fn has_revision(registry: &Registry, repo: &RepoName, digest: &Digest) -> bool {
    let (r, repo, d) = (registry.clone(), repo.to_string(), digest.to_string());
    tokio::task::spawn_blocking(move || {
        r.meta()
            .read(|t| Ok(manifests::get(t, &repo, &d)?.is_some()))
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or(true)
}
