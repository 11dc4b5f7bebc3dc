//! The coordination connections: the metadata database's URL, with the connections named
//! in `pg_stat_activity` and kept alive in both directions, so that a node that vanished
//! without closing its connections loses its locks within a minute.

use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};
use crate::meta::pg::PgOpenError;

/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Parses `url` (the metadata URL); `name` is how messages call the database.
    pub fn parse(url: &str, name: &str) -> std::result::Result<Target, PgOpenError> {
        // The parser's messages name options, never their values (so no password).
        let mut config = Config::from_str(url).map_err(|e| PgOpenError::Url {
            reason: describe(&e),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {SERVER_KEEPALIVES}"),
            _ => SERVER_KEEPALIVES.to_string(),
        };
        config.options(&options);
        Ok(Target {
            config,
            name: name.to_string(),
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
        config.connect(NoTls).map_err(|e| {
            Error::internal(
                "cluster coordination",
                format!("cannot connect to {}: {}", self.name, describe(&e)),
            )
        })
    }
}

/// `e` with its causes (the crate's own text is only the kind of error).
pub(super) fn describe(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
