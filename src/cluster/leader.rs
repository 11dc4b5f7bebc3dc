//! Leadership of a role (`gc`, `webhook:<name>`, `replication:<name>`): the node whose
//! connection holds `pg_try_advisory_lock(KURA, hash(role))` leads it. A thread per `Leader`
//! keeps that connection: every `retry` period a leader checks its session is alive (the lock
//! lives as long as the session) and a follower tries the lock again. So when a leader stops
//! or dies, its session closes, the lock goes, and a follower takes over within one period.
//! On redb every node is trivially leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::meta::pg::Client;

use super::conn::{Target, describe};

/// How often a follower tries to take a role, and a leader checks it still holds it.
pub const LEADER_RETRY: Duration = Duration::from_secs(5);
/// How often a role's loop that is not leading looks again (a cheap read of a flag).
pub const LEADER_POLL: Duration = Duration::from_secs(1);
/// The first key of every role lock ("kura"); role locks use the two-key form, a key space
/// apart from the digest locks' and the metadata writers' single 64-bit keys.
const ROLE_CLASS: i32 = 0x6b75_7261;

/// This node's claim to one role. Dropping it gives the role up.
pub struct Leader {
    role: String,
    leading: Arc<AtomicBool>,
    /// Closed when the `Leader` is dropped, which stops its thread (cluster only).
    _stop: Option<mpsc::Sender<()>>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("role", &self.role)
            .field("leading", &self.is_leader())
            .finish()
    }
}

impl Leader {
    /// The leader of `role` on a node alone with its metadata (redb).
    pub fn always(role: &str) -> Leader {
        gauge(role, 1);
        Leader {
            role: role.to_string(),
            leading: Arc::new(AtomicBool::new(true)),
            _stop: None,
        }
    }

    /// Competes for `role` among the nodes on `target`'s database, trying every `retry`.
    /// Starts as a follower; the first attempt is made at once, on a thread of its own.
    pub fn elect(target: &Target, role: &str, retry: Duration) -> Leader {
        let leading = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel();
        let campaign = Campaign {
            target: target.clone(),
            role: role.to_string(),
            key: role_key(role),
            leading: leading.clone(),
            client: None,
        };
        let spawned = std::thread::Builder::new()
            .name("kura-leader".into())
            .spawn(move || campaign.run(retry, stopped));
        if let Err(e) = spawned {
            tracing::error!(role, error = %e, "cluster coordination: no thread to compete for a role; this node will not lead it");
        }
        Leader {
            role: role.to_string(),
            leading,
            _stop: Some(stop),
        }
    }

    /// True while this node leads the role, as of the last check (at most one `retry` old:
    /// a leader whose session broke may run one more time while another takes over).
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    pub fn role(&self) -> &str {
        &self.role
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // A cluster leader's thread gives the role up (and lowers the gauge) as it stops.
        if self._stop.is_none() {
            gauge(&self.role, -1);
        }
    }
}

/// The second key of `role`'s lock.
fn role_key(role: &str) -> i32 {
    let h = blake3::hash(role.as_bytes());
    i32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}

/// `kura_cluster_leader{role}`: how many of this process's claims to `role` lead (0 or 1 on
/// a node, which makes one claim per role).
fn gauge(role: &str, delta: i64) {
    crate::ops::metrics::add_cluster_leader(role, delta);
}

/// The thread of a cluster `Leader`.
struct Campaign {
    target: Target,
    role: String,
    key: i32,
    leading: Arc<AtomicBool>,
    client: Option<Client>,
}

impl Campaign {
    fn run(mut self, retry: Duration, stopped: mpsc::Receiver<()>) {
        loop {
            let was = self.leading.load(Ordering::Acquire);
            let now = self.check(was);
            if now != was {
                self.leading.store(now, Ordering::Release);
                gauge(&self.role, if now { 1 } else { -1 });
                if now {
                    tracing::info!(role = %self.role, db = %self.target.name(), "cluster: this node leads the role");
                } else {
                    tracing::warn!(role = %self.role, db = %self.target.name(), "cluster: this node lost the role");
                }
            }
            match stopped.recv_timeout(retry) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Stop leading before the lock goes, so no run starts here once another node leads.
        if self.leading.swap(false, Ordering::AcqRel) {
            gauge(&self.role, -1);
        }
        // Closing the session releases the lock.
        drop(self.client.take());
    }

    /// Whether this node leads after one check: a leader's session must still be alive; a
    /// follower tries the lock. Any error closes the connection (and so gives the role up).
    fn check(&mut self, leading: bool) -> bool {
        if self.client.is_none() {
            match self.target.connect(&format!("leader {}", self.role)) {
                Ok(c) => self.client = Some(c),
                Err(_) => return false,
            }
        }
        let c = self.client.as_mut().expect("connected");
        let outcome = if leading {
            c.batch_execute("SELECT 1").map(|_| true)
        } else {
            c.query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&ROLE_CLASS, &self.key],
            )
            .map(|row| row.get::<_, bool>(0))
        };
        match outcome {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(role = %self.role, error = %describe(&e), "cluster: lost the leadership connection");
                self.client = None;
                false
            }
        }
    }
}
