//! Loading upload sessions: a session's in-memory slot, checked against its record (which
//! another node of a cluster may have moved on), and the slots of sessions closed elsewhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Registry, Slot};
use crate::cluster::{SessionTurns, session_key};
use crate::error::{Code, Error, Result};
use crate::meta::uploads;
use crate::names::RepoName;
use crate::store::Upload;

/// How long a request waits for its turn on a session another node is working on.
const TURN_WAIT: Duration = Duration::from_secs(60);
/// The longest pause between two tries for a turn.
const TURN_RETRY_MAX: Duration = Duration::from_millis(200);

/// A locked session: its in-memory slot and, on a cluster, the session's turn
/// (`crate::cluster::SessionTurns`), given back when the guard is dropped.
pub(super) struct SessionGuard {
    slot: tokio::sync::OwnedMutexGuard<Slot>,
    turn: Option<Turn>,
}

impl std::ops::Deref for SessionGuard {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        &self.slot
    }
}

impl std::ops::DerefMut for SessionGuard {
    fn deref_mut(&mut self) -> &mut Slot {
        &mut self.slot
    }
}

impl SessionGuard {
    /// Unlocks the slot but keeps the session's turn: a request finishing or cancelling a
    /// session holds it until the session's record is gone.
    pub(super) fn keep_turn(self) -> Option<Turn> {
        self.turn
    }
}

/// This node's turn on one session on a cluster; given back when dropped.
pub(super) struct Turn {
    turns: Arc<SessionTurns>,
    key: i64,
}

impl Turn {
    /// The turn of the session keyed `key`, if no request (on any node) holds it now.
    fn try_take(turns: &Arc<SessionTurns>, key: i64) -> Result<Option<Turn>> {
        Ok(turns.try_take(key)?.then(|| Turn {
            turns: turns.clone(),
            key,
        }))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.give_back(self.key);
    }
}

pub(super) fn upload_unknown(id: &str) -> Error {
    Error::new(Code::BlobUploadUnknown, format!("upload {id} is unknown"))
}

impl Registry {
    /// Frees the slots of sessions whose records are gone (finished, cancelled or purged by
    /// another node of a cluster). Blocking. A session being started on this node at the
    /// same moment (admitted, its record not yet written) may lose its slot too: the cap is
    /// then exceeded by that one session until it closes.
    pub(super) fn forget_closed_sessions(&self) -> Result<()> {
        let ids = self.inner.quota.ids();
        let gone: Vec<String> = self.meta().read(|t| {
            let mut gone = Vec::new();
            for id in &ids {
                if uploads::get(t, id)?.is_none() {
                    gone.push(id.clone());
                }
            }
            Ok(gone)
        })?;
        for id in gone {
            self.drop_session(&id);
        }
        Ok(())
    }

    /// Locks the session `id` of `repo`. A session this process has not seen (after a restart)
    /// is rehashed from its file on the blocking pool, holding only its own lock. On shared
    /// metadata (a cluster) another node may have appended since this one loaded the session:
    /// under the lock the record is read again, and a loaded session whose length or
    /// object-store state differs from it is reloaded from it the same way.
    pub(super) async fn lock_session(&self, repo: &RepoName, id: &str) -> Result<SessionGuard> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(upload_unknown(id));
        }
        let rec = self.meta().read(|t| uploads::get(t, id))?;
        let Some(rec) = rec.filter(|r| r.repo == repo.as_str()) else {
            return Err(upload_unknown(id));
        };
        let session = self.session_slot(id);
        let mut guard = session.lock_owned().await;
        let turn = self.take_turn(id).await?;
        let rec = if self.meta().is_shared() {
            // Read under the lock: a request of this node that held it has updated the record.
            let rec = self.meta().read(|t| uploads::get(t, id))?;
            let Some(rec) = rec.filter(|r| r.repo == repo.as_str()) else {
                return Err(upload_unknown(id));
            };
            if let Slot::Ready(f) = &*guard
                && (f.len() != rec.offset || f.state() != rec.state)
            {
                *guard = Slot::Unloaded;
            }
            rec
        } else {
            rec
        };
        if matches!(*guard, Slot::Unloaded) {
            let id2 = id.to_string();
            let file = self
                .blocking(move |r| Ok(r.store().resume_upload(&id2, &rec.state, rec.offset)?))
                .await;
            *guard = match file {
                Ok(Some(f)) => Slot::Ready(f),
                Ok(None) => Slot::Closed,
                // Left unloaded: the next request tries again.
                Err(e) => return Err(e),
            };
        }
        match *guard {
            Slot::Ready(_) => Ok(SessionGuard { slot: guard, turn }),
            _ => Err(upload_unknown(id)),
        }
    }

    /// Runs `f` holding session `id` as a request does (its slot on this node and, on a
    /// cluster, its turn), if no request is working on it: the collector purges a session
    /// under this hold, so one that a request is streaming into, however long ago its record
    /// last moved, is passed over. `None` (and `f` not run) while a request holds it.
    pub fn with_idle_session<T>(
        &self,
        id: &str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        let session = self.session_slot(id);
        let Ok(_slot) = session.try_lock_owned() else {
            return Ok(None);
        };
        let _turn = match &self.inner.turns {
            None => None,
            Some(turns) => match Turn::try_take(turns, session_key(id))? {
                Some(turn) => Some(turn),
                None => return Ok(None),
            },
        };
        f().map(Some)
    }

    /// Session `id`'s slot on this node, made (unloaded) on first use.
    fn session_slot(&self, id: &str) -> super::Session {
        self.inner
            .sessions
            .lock()
            .expect("sessions lock")
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Slot::Unloaded)))
            .clone()
    }

    /// On a cluster, waits for session `id`'s turn (another node's request on it may be
    /// working), trying at growing intervals for up to `TURN_WAIT`; alone, no turn is needed.
    async fn take_turn(&self, id: &str) -> Result<Option<Turn>> {
        let Some(turns) = &self.inner.turns else {
            return Ok(None);
        };
        let key = session_key(id);
        let deadline = Instant::now() + TURN_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(turn) = Turn::try_take(turns, key)? {
                return Ok(Some(turn));
            }
            if Instant::now() + pause > deadline {
                return Err(Error::new(
                    Code::TooManyRequests,
                    format!(
                        "upload {id} is busy: a request on it has been in progress on another node for over {}s; try again",
                        TURN_WAIT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(TURN_RETRY_MAX);
        }
    }
}

pub(super) fn ready(slot: &Slot) -> &Upload {
    match slot {
        Slot::Ready(f) => f,
        _ => unreachable!("lock_session returns ready sessions"),
    }
}

pub(super) fn ready_mut(slot: &mut Slot) -> &mut Upload {
    match slot {
        Slot::Ready(f) => f,
        _ => unreachable!("lock_session returns ready sessions"),
    }
}
