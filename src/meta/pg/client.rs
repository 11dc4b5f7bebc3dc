//! A synchronous PostgreSQL client that may be called from any thread, async workers
//! included: `tokio-postgres` connections are driven on one small runtime of their own, and a
//! caller waits for each statement with a plain executor (`futures_executor::block_on`), which
//! needs no runtime of the caller's. (The `postgres` crate's client starts a runtime per call,
//! which panics on a thread already running one: kura's handlers read metadata inline, as they
//! do from redb.)

use std::collections::HashMap;
use std::sync::OnceLock;

use futures_executor::block_on;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Error, IsolationLevel, NoTls, Row, Statement};

/// The runtime driving every connection's socket (two threads: they only move bytes).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kura-postgres")
            .enable_all()
            .build()
            .expect("cannot start the PostgreSQL connection runtime")
    })
}

/// One connection.
pub struct Client {
    inner: tokio_postgres::Client,
    /// Statements prepared on this connection, by their text: kura runs a few dozen distinct
    /// statements, so each is parsed once per connection and later runs save a round trip.
    prepared: HashMap<String, Statement>,
}

/// The statement `sql`, prepared once per connection.
fn prepared<'c>(
    cache: &'c mut HashMap<String, Statement>,
    prepare: impl std::future::Future<Output = Result<Statement, Error>>,
    sql: &str,
) -> Result<&'c Statement, Error> {
    if !cache.contains_key(sql) {
        let st = block_on(prepare)?;
        cache.insert(sql.to_string(), st);
    }
    Ok(cache.get(sql).expect("just inserted"))
}

impl Client {
    /// Connects as `config` says (on the connection runtime, which owns the socket).
    pub fn connect(config: &Config) -> Result<Client, Error> {
        let config = config.clone();
        let connecting = runtime().spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(err = %e, "metadata database connection closed");
                }
            });
            Ok::<_, Error>(client)
        });
        match block_on(connecting) {
            Ok(client) => Ok(Client {
                inner: client?,
                prepared: HashMap::new(),
            }),
            // The task panicked or the runtime is shutting down (process exit).
            Err(e) => panic!("PostgreSQL connection runtime: {e}"),
        }
    }

    /// True once the connection is gone (the pool then drops it).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let st = prepared(&mut self.prepared, self.inner.prepare(sql), sql)?;
        block_on(self.inner.execute(st, params))
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let st = prepared(&mut self.prepared, self.inner.prepare(sql), sql)?;
        block_on(self.inner.query_one(st, params))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        block_on(self.inner.batch_execute(sql))
    }

    /// A transaction with options.
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        TransactionBuilder {
            inner: self.inner.build_transaction(),
            prepared: &mut self.prepared,
        }
    }
}

pub struct TransactionBuilder<'a> {
    inner: tokio_postgres::TransactionBuilder<'a>,
    prepared: &'a mut HashMap<String, Statement>,
}

impl<'a> TransactionBuilder<'a> {
    pub fn isolation_level(self, level: IsolationLevel) -> Self {
        TransactionBuilder {
            inner: self.inner.isolation_level(level),
            prepared: self.prepared,
        }
    }

    pub fn read_only(self, on: bool) -> Self {
        TransactionBuilder {
            inner: self.inner.read_only(on),
            prepared: self.prepared,
        }
    }

    pub fn start(self) -> Result<Transaction<'a>, Error> {
        Ok(Transaction {
            inner: block_on(self.inner.start())?,
            prepared: self.prepared,
        })
    }
}

/// An open transaction; rolled back when dropped without `commit`.
pub struct Transaction<'a> {
    inner: tokio_postgres::Transaction<'a>,
    prepared: &'a mut HashMap<String, Statement>,
}

impl Transaction<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        prepared(self.prepared, self.inner.prepare(sql), sql).cloned()
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let st = self.statement(sql)?;
        block_on(self.inner.execute(&st, params))
    }

    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let st = self.statement(sql)?;
        block_on(self.inner.query(&st, params))
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let st = self.statement(sql)?;
        block_on(self.inner.query_one(&st, params))
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let st = self.statement(sql)?;
        block_on(self.inner.query_opt(&st, params))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        block_on(self.inner.batch_execute(sql))
    }

    pub fn commit(self) -> Result<(), Error> {
        block_on(self.inner.commit())
    }
}

/// Opens pooled connections (`r2d2`).
pub struct Manager {
    pub config: Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Client;
    type Error = Error;

    fn connect(&self) -> Result<Client, Error> {
        Client::connect(&self.config)
    }

    fn is_valid(&self, conn: &mut Client) -> Result<(), Error> {
        conn.batch_execute("")
    }

    fn has_broken(&self, conn: &mut Client) -> bool {
        conn.is_closed()
    }
}
