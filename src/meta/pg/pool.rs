//! Reaching the database: the parsed URL, how to name it in messages (never with its
//! password), the first connection and the pool.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::client::{Client, Manager};
use super::reach::{self, Reachability, Tracked};

use super::PgOpenError;
use crate::error::{Error, Result};

pub(super) type Conn = r2d2::PooledConnection<Tracked>;

/// How long a connection attempt may take when the URL sets no `connect_timeout`: a server
/// that answers takes milliseconds; past this, a request waiting on the attempt gets 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transaction waits for a free pooled connection while the database is reachable
/// (every connection busy with other transactions).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting checkout looks whether the database became unreachable meanwhile.
const CHECKOUT_POLL: Duration = Duration::from_millis(100);
/// r2d2's own timeout, which only sets its reconnect pause: while connects fail it tries
/// again after a pause doubling up to half of this (so at least once a second).
const RECONNECT_WINDOW: Duration = Duration::from_secs(2);

/// The pool of connections, and whether the database answered its last connection attempt.
pub(super) struct Pool {
    pool: r2d2::Pool<Tracked>,
    reach: Arc<Reachability>,
    /// The database, for messages (no password).
    target: String,
}

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
    pub(super) fn pool(&self, size: u32) -> std::result::Result<Pool, PgOpenError> {
        let reach = Arc::new(Reachability::default());
        let manager = Tracked {
            inner: Manager {
                config: self.config.clone(),
            },
            reach: reach.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            // Checkouts pass their own timeout (`checkout`); this one paces reconnecting.
            .connection_timeout(RECONNECT_WINDOW)
            // No round trip to test a connection at checkout: `checkout` passes over ones
            // known closed, and a transaction whose connection turns out lost runs again on
            // another (`PgMeta::read`, `retry::write`; tests/meta_pg_pool.rs).
            .test_on_check_out(false)
            .build(manager)
            .map_err(|e| PgOpenError::Connect {
                target: self.name.clone(),
                reason: self.redact(e.to_string()),
            })?;
        Ok(Pool {
            pool,
            reach,
            target: self.name.clone(),
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
        redact(&self.config, text)
    }
}

/// `text` with `config`'s password blanked out.
pub(super) fn redact(config: &Config, text: String) -> String {
    match config.get_password().map(String::from_utf8_lossy) {
        Some(p) if !p.is_empty() && text.contains(p.as_ref()) => text.replace(p.as_ref(), "***"),
        _ => text,
    }
}

/// A connection from `pool` for one transaction: an idle one, else the next one opened or
/// returned, waiting up to `CHECKOUT_TIMEOUT` while the database is reachable and the pool
/// busy. While the pool's connection attempts fail (the database is down or unreachable),
/// a checkout that finds no connection fails at once with 503 `UNAVAILABLE`.
pub(super) fn checkout(pool: &Pool) -> Result<Conn> {
    let deadline = Instant::now() + CHECKOUT_TIMEOUT;
    loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(CHECKOUT_POLL);
        let err = match pool.pool.get_timeout(slice) {
            // Closed while idle (PostgreSQL restarted): dropped, as broken, on its return.
            Ok(conn) if conn.is_closed() => continue,
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        if let Some(why) = pool.reach.unreachable() {
            return Err(reach::unavailable(&pool.target, &why));
        }
        if Instant::now() >= deadline {
            return Err(Error::internal(
                "metadata database",
                format!(
                    "no free connection to {} within {CHECKOUT_TIMEOUT:?} (pool busy): {err}",
                    pool.target
                ),
            ));
        }
    }
}

impl Pool {
    /// The most connections the pool keeps.
    pub(super) fn max_size(&self) -> u32 {
        self.pool.max_size()
    }
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
