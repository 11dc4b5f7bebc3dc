//! Coordination of the nodes of a cluster that share one PostgreSQL database (issue 13): the
//! per-digest locks ordering blob publication against the collector (`locks.rs`, used by
//! `registry::DigestLocks`), and the leadership of the roles one node at a time runs: the
//! periodic collector, each webhook dispatcher and each replication queue (`leader.rs`), and the
//! turns of requests on one upload session sent to different nodes (`turns.rs`).
//!
//! All are PostgreSQL session advisory locks, held on connections of their own (`conn.rs`),
//! never on the metadata pool's: a writer holds a digest lock while it runs a metadata write,
//! so one shared pool could run dry with every connection waiting for a lock. A lock lives as
//! long as its session, so a node that dies (or loses its connection) releases everything it
//! held. Taking a digest lock may wait for another node: call it from a blocking thread.

mod conn;
mod leader;
mod locks;
mod turns;

pub use conn::Target;
pub use leader::{LEADER_POLL, LEADER_RETRY, Leader};
pub use locks::{ClusterGuard, LockPool, digest_key};
pub use turns::{SessionTurns, session_key};
