//! A real PostgreSQL server for the metadata tests.
//!
//! `TestDb::new` creates a fresh database `kura_<uuid>` on the server named by
//! `KURA_TEST_PG_URL` (a superuser URL, `postgres://user@host:port/db`; `.ci/run` exports
//! it), or else on a private cluster this starts itself with `tests/tools/pg-up.sh` under
//! `target/pg-test` (reused while it runs; test processes serialise on a file lock; it runs
//! until `tests/tools/pg-up.sh stop target/pg-test`). The database is dropped, with any
//! connection still open to it, when the `TestDb` is.

use std::sync::OnceLock;

use kura::meta::pg::{MIGRATIONS, Migration, PgMeta};

/// The superuser URL of the test server (started on first use in this process if the
/// environment names none).
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        std::env::var("KURA_TEST_PG_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(start_own)
    })
}

/// Starts (or finds running) the cluster under `target/pg-test`.
fn start_own() -> String {
    let out = super::engines::start_shared(
        "pg-test",
        "pg-up.sh",
        "install PostgreSQL with `apt-get install postgresql` or set KURA_TEST_PG_URL",
    );
    super::engines::exported(&out, "KURA_TEST_PG_URL")
}

/// `url` (`postgres://...[/db][?options]`) naming database `db` instead.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .expect("KURA_TEST_PG_URL must be a postgres:// URL");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    // The authority ends at the first '/' after any userinfo (a password may hold a '/').
    let at = rest.rfind('@').map_or(0, |i| i + 1);
    let authority_end = rest[at..].find('/').map_or(rest.len(), |i| at + i);
    format!("{scheme}://{}/{db}{query}", &rest[..authority_end])
}

/// A superuser connection to the server's maintenance database.
pub fn admin() -> postgres::Client {
    postgres::Client::connect(server_url(), postgres::NoTls).expect("connect to the test server")
}

/// A fresh, empty database for one test; dropped with the guard.
pub struct TestDb {
    /// Its name, `kura_<uuid>`.
    pub name: String,
    /// A superuser URL of it.
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = format!("kura_{}", uuid::Uuid::new_v4().simple());
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        let url = with_database(server_url(), &name);
        TestDb { name, url }
    }

    /// A connection of its own to the database (to look behind kura's back).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // FORCE: connections a failed test left open (its pool) go too. Best effort.
        if let Ok(mut c) = postgres::Client::connect(server_url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The real steps plus one that counts its own runs in `stats` (a second run would add 1).
pub fn steps_with_counter() -> Vec<Migration> {
    let mut steps = MIGRATIONS.to_vec();
    steps.push(Migration {
        version: MIGRATIONS.last().unwrap().version + 1,
        name: "count_runs",
        sql: "INSERT INTO stats (name, value) VALUES ('migration_runs', 1)
              ON CONFLICT (name) DO UPDATE SET value = stats.value + 1",
    });
    steps
}

/// `schema_migrations` of `db`: (version, name, applied at), oldest first.
pub fn ledger(db: &TestDb) -> Vec<(i64, String, std::time::SystemTime)> {
    db.client()
        .query(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Counter `name` of the `stats` table, read through `meta`.
pub fn stat(meta: &PgMeta, name: &str) -> Option<i64> {
    meta.read(|tx| {
        Ok(tx
            .query_opt("SELECT value FROM stats WHERE name = $1", &[&name])?
            .map(|r| r.get(0)))
    })
    .unwrap()
}
