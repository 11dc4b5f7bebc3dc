//! The coordination connections: the metadata database's URL (parsed as the metadata pool
//! parses it, `meta::pg::Target`), with the connections named in `pg_stat_activity` and kept
//! alive in both directions, so that a node that vanished without closing its connections
//! loses its locks within a minute. They are the metadata store's client
//! (`meta::pg::Client`): callable from any thread, async workers included.

use std::time::Duration;

use tokio_postgres::Config;

use crate::error::{Error, Result};
use crate::meta::pg::{Client, PgOpenError};

pub use crate::meta::pg::describe;

/// Client side: a silent server is noticed after this much idle time (then probes).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Server side (session settings any user may make): the server drops the session of a node
/// that stopped answering after about 10 + 5 × 3 = 25 s, releasing its locks.
const SERVER_KEEPALIVES: &str =
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3";

/// The cluster's database, as the coordination connections reach it. Cheap to clone.
#[derive(Clone)]
pub struct Target {
    config: Config,
    /// `postgres://user@host:port/db` (no password), for messages.
    name: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Target {
    /// Parses `url` (the metadata URL).
    pub fn parse(url: &str) -> std::result::Result<Target, PgOpenError> {
        let db = crate::meta::pg::Target::parse(url)?;
        let mut config = db.config().clone();
        config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {SERVER_KEEPALIVES}"),
            _ => SERVER_KEEPALIVES.to_string(),
        };
        config.options(&options);
        Ok(Target {
            config,
            name: db.name,
        })
    }

    /// The database, as `postgres://user@host:port/db`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection, named `<application> <purpose>` in `pg_stat_activity` (`kura locks`,
    /// `kura leader gc`).
    pub fn connect(&self, purpose: &str) -> Result<Client> {
        let mut config = self.config.clone();
        let app = format!(
            "{} {purpose}",
            config.get_application_name().unwrap_or("kura")
        );
        config.application_name(&app);
        Client::connect(&config).map_err(|e| {
            Error::internal(
                "cluster coordination",
                format!("cannot connect to {}: {}", self.name, describe(&e)),
            )
        })
    }
}
