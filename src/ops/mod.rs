//! Operating the server: logging, access log, metrics, health, read-only mode, notifications.

pub mod access_log;
pub mod client_ip;
pub mod gc_history;
pub mod health;
pub mod in_flight;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod read_only;
pub mod reload;
