//! Caps on open upload sessions, in total and per client (peer address or user).
//!
//! Every open session (a row of the `uploads` table) holds a slot from the moment it is
//! admitted until it is finished, cancelled or purged; sessions found in the table when the
//! registry opens hold theirs too, so a restart does not reset the caps. Releasing is by
//! session id and idempotent, so two paths closing one session free one slot.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Code, Error};

/// Session caps; `usize::MAX` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub total: usize,
    pub per_client: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            total: usize::MAX,
            per_client: usize::MAX,
        }
    }
}

#[derive(Default)]
struct Open {
    /// session id → client
    sessions: HashMap<String, String>,
    /// client → sessions it holds
    per_client: HashMap<String, usize>,
}

/// The open sessions and the caps they are admitted under.
#[derive(Default)]
pub struct SessionQuota {
    limits: Mutex<SessionLimits>,
    open: Mutex<Open>,
}

impl SessionQuota {
    /// Replaces the caps (sessions already open stay open).
    pub fn set_limits(&self, limits: SessionLimits) {
        *self.limits.lock().expect("quota lock") = limits;
    }

    /// Admits session `id` of `client`, or fails with 429 `TOOMANYREQUESTS` when the client or
    /// the registry is at its cap.
    pub fn admit(&self, id: &str, client: &str) -> Result<(), Error> {
        let limits = *self.limits.lock().expect("quota lock");
        let mut open = self.open.lock().expect("quota lock");
        if open.sessions.len() >= limits.total {
            return Err(Error::new(
                Code::TooManyRequests,
                format!(
                    "{} upload sessions are open, the most this registry allows; finish or cancel some, or retry later",
                    open.sessions.len()
                ),
            ));
        }
        let mine = open.per_client.get(client).copied().unwrap_or(0);
        if mine >= limits.per_client {
            return Err(Error::new(
                Code::TooManyRequests,
                format!(
                    "this client has {mine} upload sessions open, the most allowed per client; finish or cancel some, or retry later"
                ),
            ));
        }
        Self::insert(&mut open, id, client);
        Ok(())
    }

    /// Counts session `id` of `client` as open whatever the caps (sessions found at start-up).
    pub fn restore(&self, id: &str, client: &str) {
        Self::insert(&mut self.open.lock().expect("quota lock"), id, client);
    }

    fn insert(open: &mut Open, id: &str, client: &str) {
        if open
            .sessions
            .insert(id.to_string(), client.to_string())
            .is_none()
        {
            *open.per_client.entry(client.to_string()).or_default() += 1;
        }
    }

    /// Frees the slot of session `id`, if it holds one.
    pub fn release(&self, id: &str) {
        let mut open = self.open.lock().expect("quota lock");
        let Some(client) = open.sessions.remove(id) else {
            return;
        };
        if let Some(n) = open.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&client);
            }
        }
    }

    /// The sessions holding a slot.
    pub fn ids(&self) -> Vec<String> {
        let open = self.open.lock().expect("quota lock");
        open.sessions.keys().cloned().collect()
    }

    /// Open sessions in total.
    pub fn open_sessions(&self) -> usize {
        self.open.lock().expect("quota lock").sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(total: usize, per_client: usize) -> SessionQuota {
        let q = SessionQuota::default();
        q.set_limits(SessionLimits { total, per_client });
        q
    }

    #[test]
    fn per_client_cap_refuses_only_that_client() {
        let q = quota(10, 2);
        q.admit("a1", "ip:a").unwrap();
        q.admit("a2", "ip:a").unwrap();
        let e = q.admit("a3", "ip:a").unwrap_err();
        assert!(matches!(e.code, Code::TooManyRequests));
        q.admit("b1", "ip:b").unwrap();
    }

    #[test]
    fn total_cap_refuses_every_client() {
        let q = quota(2, 5);
        q.admit("a1", "ip:a").unwrap();
        q.admit("b1", "ip:b").unwrap();
        assert!(q.admit("c1", "ip:c").is_err());
    }

    #[test]
    fn released_slot_is_reusable_and_release_is_idempotent() {
        let q = quota(2, 1);
        q.admit("a1", "ip:a").unwrap();
        q.release("a1");
        q.release("a1");
        q.admit("a2", "ip:a").unwrap();
        q.admit("b1", "ip:b").unwrap();
        assert_eq!(q.open_sessions(), 2);
        assert!(q.admit("c1", "ip:c").is_err());
    }

    #[test]
    fn restored_sessions_count_against_the_caps() {
        let q = quota(3, 1);
        q.restore("a1", "ip:a");
        q.restore("a2", "ip:a");
        assert!(q.admit("a3", "ip:a").is_err());
        q.admit("b1", "ip:b").unwrap();
        assert!(q.admit("c1", "ip:c").is_err());
    }
}
