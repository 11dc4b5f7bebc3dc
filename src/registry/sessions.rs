//! Loading upload sessions: a session's in-memory slot, checked against its record (which
//! another node of a cluster may have moved on), and the slots of sessions closed elsewhere.

use std::sync::Arc;

use super::{Registry, Slot};
use crate::error::{Code, Error, Result};
use crate::meta::uploads;
use crate::names::RepoName;
use crate::store::Upload;

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
            for id in ids {
                if uploads::get(t, &id)?.is_none() {
                    gone.push(id);
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
    pub(super) async fn lock_session(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Slot>> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(upload_unknown(id));
        }
        let rec = self.meta().read(|t| uploads::get(t, id))?;
        let Some(rec) = rec.filter(|r| r.repo == repo.as_str()) else {
            return Err(upload_unknown(id));
        };
        let session = self
            .inner
            .sessions
            .lock()
            .expect("sessions lock")
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Slot::Unloaded)))
            .clone();
        let mut guard = session.lock_owned().await;
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
            Slot::Ready(_) => Ok(guard),
            _ => Err(upload_unknown(id)),
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
