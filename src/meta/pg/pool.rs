//! Reaching the database: the parsed URL, how to name it in messages (never with its
//! password), the first connection and the pool.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::client::{Client, Manager};

use super::PgOpenError;
use crate::error::{Error, Result};

pub(super) type Pool = r2d2::Pool<Manager>;
pub(super) type Conn = r2d2::PooledConnection<Manager>;

/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a transaction waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed database URL and its name for messages (also the cluster coordination
/// connections' starting point, `crate::cluster::Target`).
pub struct Target {
    config: Config,
    /// `postgres://user@host:port/db`: what messages call the database.
    pub name: String,
}

impl Target {
    pub fn parse(url: &str) -> std::result::Result<Target, PgOpenError> {
        // The parser's messages name options, never their values (so no password).
        let mut config = Config::from_str(url).map_err(|e| PgOpenError::Url {
            reason: describe(&e),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // How kura's connections show in pg_stat_activity, unless the URL names them.
        if config.get_application_name().is_none() {
            config.application_name("kura");
        }
        let name = display_name(&config);
        Ok(Target { config, name })
    }

    /// The parsed URL, with kura's defaults.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One connection, outside the pool, for the migrations (named `<application> migrations`).
    pub fn connect(&self) -> std::result::Result<Client, PgOpenError> {
        let mut config = self.config.clone();
        let name = format!(
            "{} migrations",
            config.get_application_name().unwrap_or("kura")
        );
        config.application_name(&name);
        Client::connect(&config).map_err(|e| self.connect_error(&e))
    }

    /// The pool of at most `size` connections, opened as transactions need them.
    pub fn pool(&self, size: u32) -> std::result::Result<Pool, PgOpenError> {
        let manager = Manager {
            config: self.config.clone(),
        };
        r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // Each connection is checked before use (one round trip): after PostgreSQL
            // restarts, idle connections are dead before the client notices, and a request
            // must get a fresh one rather than a 500 (tests/cluster_faults.rs).
            .test_on_check_out(true)
            .build(manager)
            .map_err(|e| PgOpenError::Connect {
                target: self.name.clone(),
                reason: self.redact(e.to_string()),
            })
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> PgOpenError {
        PgOpenError::Connect {
            target: self.name.clone(),
            reason: self.redact(describe(e)),
        }
    }

    /// `text` with the password blanked out, should a server or library ever echo it.
    pub fn redact(&self, text: String) -> String {
        match self.config.get_password().map(String::from_utf8_lossy) {
            Some(p) if !p.is_empty() && text.contains(p.as_ref()) => {
                text.replace(p.as_ref(), "***")
            }
            _ => text,
        }
    }
}

/// A connection from `pool` for one transaction.
pub(super) fn checkout(pool: &Pool) -> Result<Conn> {
    pool.get()
        .map_err(|e| Error::internal("metadata database", format!("no connection: {e}")))
}

/// `postgres://user@host:port/db` for `config` (hosts joined by commas; no password).
fn display_name(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let ports = config.get_ports();
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    // PostgreSQL's default database is the user's name.
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// `e` with its causes: the crate's own text is only the kind ("db error", "error
/// connecting to server"); the server's message or the I/O error is the cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
