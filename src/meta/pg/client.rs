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

    /// Sends `sql` without waiting for its answer (see `send_only`): for statements whose
    /// failure would mean only that the connection is gone, such as releasing a lock.
    pub fn execute_unawaited(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), Error> {
        let st = prepared(&mut self.prepared, self.inner.prepare(sql), sql)?;
        send_only(self.inner.execute(st, params));
        Ok(())
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        block_on(self.inner.batch_execute(sql))
    }

    /// A transaction with options.
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        TransactionBuilder {
            client: self,
            isolation: None,
            read_only: false,
            first: None,
        }
    }
}

/// Sends the request `fut` makes without waiting for its answer: its first poll queues the
/// request on the connection (tokio-postgres sends a request when its future is first
/// polled, and discards the answers of one dropped meanwhile). A later request on the same
/// connection runs after it: PostgreSQL answers one connection's requests in order.
fn send_only<F: std::future::Future>(fut: F) {
    let _ = futures_util::FutureExt::now_or_never(fut);
}

/// `second`'s outcome, with `first` sent ahead of it in the same round trip (tokio-postgres
/// sends requests polled together in polling order); `first`'s error comes first.
async fn pipelined<A, B>(
    first: impl std::future::Future<Output = Result<A, Error>>,
    second: impl std::future::Future<Output = Result<B, Error>>,
) -> Result<B, Error> {
    let (a, b) = futures_util::future::join(first, second).await;
    a?;
    b
}

/// `stmt`, with `begin` sent in front of it when the transaction's BEGIN has not gone out.
async fn after_begin<T>(
    client: &tokio_postgres::Client,
    begin: Option<String>,
    stmt: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match begin {
        None => stmt.await,
        Some(begin) => pipelined(client.batch_execute(&begin), stmt).await,
    }
}

pub struct TransactionBuilder<'a> {
    client: &'a mut Client,
    isolation: Option<IsolationLevel>,
    read_only: bool,
    /// A statement to run just before the BEGIN, with its one key parameter.
    first: Option<(&'static str, i64)>,
}

impl<'a> TransactionBuilder<'a> {
    pub fn isolation_level(self, level: IsolationLevel) -> Self {
        TransactionBuilder {
            isolation: Some(level),
            ..self
        }
    }

    pub fn read_only(self, on: bool) -> Self {
        TransactionBuilder {
            read_only: on,
            ..self
        }
    }

    /// Runs `sql` with parameter `key` (taking a lock, say) just before the BEGIN, in the
    /// same round trip.
    pub fn after(self, sql: &'static str, key: i64) -> Self {
        TransactionBuilder {
            first: Some((sql, key)),
            ..self
        }
    }

    /// The BEGIN statement.
    fn begin_sql(&self) -> String {
        let mut sql = String::from("BEGIN");
        if let Some(level) = self.isolation {
            sql.push_str(match level {
                IsolationLevel::ReadUncommitted => " ISOLATION LEVEL READ UNCOMMITTED",
                IsolationLevel::ReadCommitted => " ISOLATION LEVEL READ COMMITTED",
                IsolationLevel::RepeatableRead => " ISOLATION LEVEL REPEATABLE READ",
                _ => " ISOLATION LEVEL SERIALIZABLE",
            });
        }
        if self.read_only {
            sql.push_str(" READ ONLY");
        }
        sql
    }

    /// Begins now (one round trip, with the statement of `after` if one was given).
    pub fn start(self) -> Result<Transaction<'a>, Error> {
        let begin = self.begin_sql();
        let c = &mut *self.client;
        match self.first {
            None => block_on(c.inner.batch_execute(&begin))?,
            Some((sql, key)) => {
                // Prepared beforehand, so its request goes out at its first poll, ahead of
                // the BEGIN.
                let st = prepared(&mut c.prepared, c.inner.prepare(sql), sql)?.clone();
                let params: [&(dyn ToSql + Sync); 1] = [&key];
                let first = c.inner.execute(&st, &params);
                block_on(pipelined(first, c.inner.batch_execute(&begin)))?
            }
        }
        Ok(Transaction::new(self.client, None))
    }

    /// Begins with the first statement: the BEGIN goes out in front of it, in the same round
    /// trip. Only for reads: should the BEGIN fail, that statement has run on its own.
    pub fn start_with_first_statement(self) -> Transaction<'a> {
        let begin = self.begin_sql();
        Transaction::new(self.client, Some(begin))
    }
}

/// An open transaction; rolled back when dropped without `commit` (the ROLLBACK is sent
/// without waiting: the connection's next request runs after it).
pub struct Transaction<'a> {
    inner: &'a tokio_postgres::Client,
    prepared: &'a mut HashMap<String, Statement>,
    /// The BEGIN, while it waits to go out with the first statement.
    begin: Option<String>,
    /// BEGIN sent and neither COMMIT nor ROLLBACK yet (never while `begin` waits).
    open: bool,
}

impl<'a> Transaction<'a> {
    fn new(client: &'a mut Client, begin: Option<String>) -> Transaction<'a> {
        Transaction {
            open: begin.is_none(),
            inner: &client.inner,
            prepared: &mut client.prepared,
            begin,
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        prepared(self.prepared, self.inner.prepare(sql), sql).cloned()
    }

    /// The BEGIN to send in front of the next statement, if it has not gone out yet.
    fn begin(&mut self) -> Option<String> {
        self.open = true;
        self.begin.take()
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let st = self.statement(sql)?;
        let begin = self.begin();
        block_on(after_begin(
            self.inner,
            begin,
            self.inner.execute(&st, params),
        ))
    }

    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let st = self.statement(sql)?;
        let begin = self.begin();
        block_on(after_begin(
            self.inner,
            begin,
            self.inner.query(&st, params),
        ))
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let st = self.statement(sql)?;
        let begin = self.begin();
        block_on(after_begin(
            self.inner,
            begin,
            self.inner.query_one(&st, params),
        ))
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let st = self.statement(sql)?;
        let begin = self.begin();
        block_on(after_begin(
            self.inner,
            begin,
            self.inner.query_opt(&st, params),
        ))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        let begin = self.begin();
        block_on(after_begin(
            self.inner,
            begin,
            self.inner.batch_execute(sql),
        ))
    }

    /// Commits and waits for PostgreSQL's answer (a transaction that never ran a statement
    /// was never begun: nothing to send).
    pub fn commit(mut self) -> Result<(), Error> {
        if !std::mem::replace(&mut self.open, false) {
            return Ok(());
        }
        block_on(self.inner.batch_execute("COMMIT"))
    }

    /// Ends a read-only transaction without waiting for the answer: it has nothing to make
    /// durable, and the connection's next request runs after the COMMIT.
    pub fn finish_read(mut self) {
        if std::mem::replace(&mut self.open, false) {
            send_only(self.inner.batch_execute("COMMIT"));
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            send_only(self.inner.batch_execute("ROLLBACK"));
        }
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
