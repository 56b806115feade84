//! Read-only, parameterised pages of one SELECT over PostgreSQL, MySQL / MariaDB and
//! SQLite, for `dataService` backends (on `sqlx`, without its macros or TLS).
//!
//! The SQL text comes from compile (the user's SELECT with its `${name}` placeholders
//! turned into the driver's bind markers, and the page's `LIMIT` / `OFFSET` as two more
//! markers); request values only ever travel as bind values ([`Value`]).
//!
//! Each page runs in one read-only transaction (`BEGIN ... READ ONLY` on PostgreSQL,
//! `START TRANSACTION READ ONLY` on MySQL, a read-only connection with `query_only` on
//! SQLite) with a statement timeout from the request's remaining budget, enforced by the
//! server (`statement_timeout`, `max_statement_time` / `max_execution_time`, an SQLite
//! progress handler), so a timed-out query is cancelled where it runs. Connections come
//! from a bounded pool per backend; a request waits for one until its deadline, then gets
//! [`SqlError::PoolExhausted`].

mod decode;
#[cfg(feature = "test-server")]
pub mod testing;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Arguments, Connection, Row};

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The database kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    Mysql,
    Sqlite,
}

/// Where the database is.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// `postgres://` or `mysql://` URL (it may hold a password: never logged).
    Url(String),
    /// An SQLite database file, opened read-only.
    SqliteFile(PathBuf),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(_) => f.write_str("Url(<redacted>)"),
            Self::SqliteFile(path) => f.debug_tuple("SqliteFile").field(path).finish(),
        }
    }
}

/// One bound value, typed by the parameter's declaration.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    Timestamp(time::OffsetDateTime),
}

/// The compiled statements of one backend: the page (its last two markers are `LIMIT` and
/// `OFFSET`) and the count of all rows.
#[derive(Clone, Debug)]
pub struct Statements {
    pub page: String,
    pub count: String,
    /// `page` returns the count of all rows too, as its last column [`TOTAL_COLUMN`]: the
    /// count query runs only for a page with no row to carry it (past the end).
    pub page_counts: bool,
}

/// The column of a counting page query (compile's `switchyard_total`: on PostgreSQL the
/// count query as a scalar subquery, elsewhere `COUNT(*) OVER ()`).
pub const TOTAL_COLUMN: &str = "switchyard_total";

/// Whether the count query must run after a page: the page does not count, or it came
/// back empty past the first page (an empty first page counts 0).
fn needs_count(statements: &Statements, rows: usize, offset: i64) -> bool {
    !statements.page_counts || (rows == 0 && offset > 0)
}

/// What [`Database::page_into`] wrote: how many rows, and the count of all rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    pub rows: usize,
    pub total: i64,
}

/// One page: its rows as JSON text (an array of objects keyed by column name, without
/// [`TOTAL_COLUMN`]) and the count of all rows.
#[derive(Debug)]
pub struct Page {
    pub json: Vec<u8>,
    pub rows: usize,
    pub total: i64,
}

impl Page {
    /// The rows parsed back (tests and tools; the proxy sends [`Page::json`] as it is).
    pub fn values(&self) -> Vec<serde_json::Value> {
        serde_json::from_slice(&self.json).expect("the page's JSON is valid")
    }
}

/// Why a page could not be read. Messages never hold the URL, addresses or credentials.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("the connection URL is not usable: {0}")]
    BadUrl(String),
    /// Every connection was in use until the deadline.
    #[error("every connection of the pool stayed in use until the deadline")]
    PoolExhausted,
    /// The statement timeout fired (the server cancelled the query) or the deadline passed.
    #[error("the query did not finish within {timeout_ms} ms and was cancelled")]
    Timeout { timeout_ms: u64 },
    /// The database cannot be reached or dropped the connection (`detail` for the log).
    #[error("the database is unavailable")]
    Unavailable { detail: String },
    /// The database refused a bound value as data (SQLSTATE class 22: a NUL byte in text, a
    /// bad LIKE escape, a value out of range): the client's fault.
    #[error("the database refused a parameter value: {message}")]
    BadData { message: String },
    /// Anything else the database said (a read-only violation, a missing table, a type
    /// the gateway cannot render).
    #[error("the query failed: {message}")]
    Failed { message: String },
}

/// A bounded pool per backend.
pub struct Database {
    pool: Pool,
    /// MariaDB (`max_statement_time`) or MySQL (`max_execution_time`), learned on first use.
    mariadb: OnceLock<bool>,
    max_connections: u32,
    /// Connections held by pages now ([`Held`]): below `max_connections`, a request that
    /// waits is waiting for the pool to open a connection, not for a busy one.
    held: AtomicU32,
}

/// A pooled connection held for one page; counted in [`Database::held`].
struct Held<'a, DB: sqlx::Database> {
    conn: sqlx::pool::PoolConnection<DB>,
    held: &'a AtomicU32,
}

impl<DB: sqlx::Database> std::ops::Deref for Held<'_, DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Held<'_, DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl<DB: sqlx::Database> Drop for Held<'_, DB> {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Connections are opened when first needed; a broken one is dropped and replaced.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The pool's own bound on a wait; each request waits only until its own deadline.
const POOL_ACQUIRE_LIMIT: Duration = Duration::from_secs(600);
/// How long a request waits for the pool to open a connection before it tries one itself
/// ([`Database::acquire`]); a connect on a healthy network takes far less.
const CONNECT_PROBE_AFTER: Duration = Duration::from_millis(100);
/// The least statement timeout set: a deadline already passed still gets a clean answer.
const MIN_STATEMENT_MS: u64 = 1;

impl Database {
    /// A pool that connects lazily (building it does no I/O; needs a Tokio runtime).
    pub fn connect_lazy(driver: Driver, target: &Target, max_connections: u32) -> Result<Self, SqlError> {
        let max_connections = max_connections.max(1);
        let bad = |e: sqlx::Error| SqlError::BadUrl(redact_error(&e));
        let pool = match (driver, target) {
            (Driver::Postgres, Target::Url(url)) => {
                let options = PgConnectOptions::from_str(url).map_err(bad)?.application_name("switchyard");
                Pool::Postgres(pool_options::<sqlx::Postgres>(max_connections).connect_lazy_with(options))
            }
            (Driver::Mysql, Target::Url(url)) => {
                let options = MySqlConnectOptions::from_str(url).map_err(bad)?;
                Pool::Mysql(pool_options::<sqlx::MySql>(max_connections).connect_lazy_with(options))
            }
            (Driver::Sqlite, Target::SqliteFile(path)) => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .create_if_missing(false)
                    .pragma("query_only", "ON")
                    .busy_timeout(Duration::from_secs(5));
                Pool::Sqlite(pool_options::<sqlx::Sqlite>(max_connections).connect_lazy_with(options))
            }
            (driver, _) => return Err(SqlError::BadUrl(format!("{driver:?} needs a matching connection"))),
        };
        Ok(Self { pool, mariadb: OnceLock::new(), max_connections, held: AtomicU32::new(0) })
    }

    pub fn driver(&self) -> Driver {
        match self.pool {
            Pool::Postgres(_) => Driver::Postgres,
            Pool::Mysql(_) => Driver::Mysql,
            Pool::Sqlite(_) => Driver::Sqlite,
        }
    }

    /// Connections open now (in use or idle).
    pub fn connections(&self) -> u32 {
        match &self.pool {
            Pool::Postgres(p) => p.size(),
            Pool::Mysql(p) => p.size(),
            Pool::Sqlite(p) => p.size(),
        }
    }

    /// [`Database::page_into`] into a buffer of its own.
    pub async fn page(
        &self,
        statements: &Statements,
        binds: &[Value],
        limit: i64,
        offset: i64,
        deadline: Instant,
    ) -> Result<Page, SqlError> {
        let mut json = Vec::new();
        let PageInfo { rows, total } = self.page_into(statements, binds, limit, offset, deadline, &mut json).await?;
        Ok(Page { json, rows, total })
    }

    /// Reads one page and appends its rows to `out` as a JSON array: `binds` are the
    /// query's values (in marker order), then `limit` and `offset` are bound for the page;
    /// the count query gets `binds` alone. Both run in one read-only transaction that must
    /// finish by `deadline`. On an error `out` may hold part of a page.
    pub async fn page_into(
        &self,
        statements: &Statements,
        binds: &[Value],
        limit: i64,
        offset: i64,
        deadline: Instant,
        out: &mut Vec<u8>,
    ) -> Result<PageInfo, SqlError> {
        let budget_ms = |now: Instant| deadline.saturating_duration_since(now).as_millis() as u64;
        let timeout_ms = budget_ms(Instant::now());
        // Boxed as `Send` here, where the lifetimes are concrete: sqlx's executor futures
        // are otherwise not provably `Send` to callers that spawn them (rust#102211).
        let work: BoxFuture<'_, Result<PageInfo, SqlError>> = match &self.pool {
            Pool::Postgres(pool) => Box::pin(self.page_postgres(pool, statements, binds, (limit, offset), deadline, out)),
            Pool::Mysql(pool) => Box::pin(self.page_mysql(pool, statements, binds, (limit, offset), deadline, out)),
            Pool::Sqlite(pool) => Box::pin(self.page_sqlite(pool, statements, binds, (limit, offset), deadline, out)),
        };
        // The server's timeout fires first; this bound is for a server that does not answer.
        match tokio::time::timeout_at((deadline + Duration::from_millis(250)).into(), work).await {
            Ok(result) => result,
            Err(_) => Err(SqlError::Timeout { timeout_ms }),
        }
    }

    /// `SELECT 1` on a pooled connection, for reachability.
    pub async fn ping(&self, timeout: Duration) -> Result<(), SqlError> {
        let deadline = Instant::now() + timeout;
        let work = async {
            match &self.pool {
                Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
                Pool::Mysql(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
                Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(e, self.driver(), timeout.as_millis() as u64)),
            Err(_) => Err(SqlError::Unavailable { detail: format!("no answer within {} ms", timeout.as_millis()) }),
        }
    }

    /// Closes every connection (a snapshot that drops the backend).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }

    /// A connection for one page, held until the returned guard drops. Waits for the pool
    /// until `deadline`, except that a database which refuses connections is reported at
    /// once: the pool retries a refused connect until the deadline (it takes it for a
    /// server starting up), which would hold every request of a database that is down for
    /// its whole timeout. So once a request has waited [`CONNECT_PROBE_AFTER`] while not
    /// every connection is held by a page (the pool is opening one, not exhausted), it
    /// connects once itself; a refusal there is the answer.
    async fn acquire<DB: sqlx::Database>(&self, pool: &sqlx::Pool<DB>, deadline: Instant) -> Result<Held<'_, DB>, SqlError> {
        let acquiring = tokio::time::timeout_at(deadline.into(), pool.acquire());
        tokio::pin!(acquiring);
        let probe_at = (Instant::now() + CONNECT_PROBE_AFTER).min(deadline);
        let waited = tokio::select! {
            biased;
            waited = &mut acquiring => waited,
            () = tokio::time::sleep_until(probe_at.into()) => {
                if self.held.load(Ordering::Relaxed) < self.max_connections && self.driver() != Driver::Sqlite {
                    // The pool goes on trying meanwhile: whichever answers first.
                    let probe = self.probe_connect(pool, deadline);
                    tokio::pin!(probe);
                    tokio::select! {
                        biased;
                        waited = &mut acquiring => waited,
                        refused = &mut probe => match refused {
                            Some(refused) => return Err(refused),
                            None => acquiring.await,
                        },
                    }
                } else {
                    acquiring.await
                }
            }
        };
        match waited {
            Ok(Ok(conn)) => {
                self.held.fetch_add(1, Ordering::Relaxed);
                Ok(Held { conn, held: &self.held })
            }
            Ok(Err(e)) => Err(classify(e, self.driver(), 0)),
            // Every connection busy: exhausted. Otherwise the pool was still trying to open
            // one (the database does not answer).
            Err(_) if pool.size() >= self.max_connections && pool.num_idle() == 0 => Err(SqlError::PoolExhausted),
            Err(_) => Err(SqlError::Unavailable { detail: "no connection could be opened before the deadline".into() }),
        }
    }

    /// One connect attempt outside the pool (closed again at once): the error if the
    /// database cannot be reached at all (refused, reset, unreachable). Other refusals are
    /// the pool's to judge: it waits out the transient ones (too many connections, starting
    /// up) and reports the rest (a bad password) at once itself.
    async fn probe_connect<DB: sqlx::Database>(&self, pool: &sqlx::Pool<DB>, deadline: Instant) -> Option<SqlError> {
        use sqlx::ConnectOptions;
        let options = pool.connect_options();
        match tokio::time::timeout_at(deadline.into(), options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                None
            }
            Ok(Err(e @ sqlx::Error::Io(_))) => Some(classify(e, self.driver(), 0)),
            Ok(Err(_)) => None,
            // No answer to the probe either: the pool's own wait ends at the same deadline.
            Err(_) => None,
        }
    }

    async fn page_postgres(
        &self,
        pool: &PgPool,
        statements: &Statements,
        binds: &[Value],
        (limit, offset): (i64, i64),
        deadline: Instant,
        out: &mut Vec<u8>,
    ) -> Result<PageInfo, SqlError> {
        let mut conn = self.acquire(pool, deadline).await?;
        let timeout_ms = statement_ms(deadline);
        let fail = |e| classify(e, Driver::Postgres, timeout_ms);
        // The timeout is set inside the transaction (SET LOCAL): it ends with it.
        let begin = format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {timeout_ms}");
        let mut tx = conn.begin_with(begin).await.map_err(fail)?;
        let mut arguments = pg_arguments(binds).map_err(fail)?;
        arguments.add(limit).map_err(|e| fail(sqlx::Error::Encode(e)))?;
        arguments.add(offset).map_err(|e| fail(sqlx::Error::Encode(e)))?;
        let rows = sqlx::query_with(&statements.page, arguments).fetch_all(&mut *tx).await.map_err(fail)?;
        let count = if needs_count(statements, rows.len(), offset) {
            let count = sqlx::query_with(&statements.count, pg_arguments(binds).map_err(fail)?).fetch_one(&mut *tx).await;
            Some(count.and_then(|row| row.try_get::<i64, _>(0)).map_err(fail)?)
        } else {
            None
        };
        // No COMMIT round trip: the transaction only read. Dropping it queues a ROLLBACK,
        // which the pool's test of the returned connection sends (off the request's path).
        drop(tx);
        let carried = decode::postgres_rows(&rows, statements.page_counts, out)?;
        Ok(page_info(statements, rows.len(), carried, count))
    }

    async fn page_mysql(
        &self,
        pool: &MySqlPool,
        statements: &Statements,
        binds: &[Value],
        (limit, offset): (i64, i64),
        deadline: Instant,
        out: &mut Vec<u8>,
    ) -> Result<PageInfo, SqlError> {
        let mut conn = self.acquire(pool, deadline).await?;
        let fail_at = |ms| move |e| classify(e, Driver::Mysql, ms);
        let mariadb = match self.mariadb.get() {
            Some(known) => *known,
            None => {
                let row = sqlx::query("SELECT VERSION()").fetch_one(&mut *conn).await.map_err(fail_at(0))?;
                let version: String = row.try_get(0).map_err(fail_at(0))?;
                *self.mariadb.get_or_init(|| version.to_ascii_lowercase().contains("mariadb"))
            }
        };
        let timeout_ms = statement_ms(deadline);
        let fail = fail_at(timeout_ms);
        // Session-wide, set before every page (a connection is used by one request at a time),
        // in the same round trip as the transaction's start (a multi-statement text query).
        let begin = if mariadb {
            format!("SET SESSION max_statement_time = {}.{:03}; START TRANSACTION READ ONLY", timeout_ms / 1000, timeout_ms % 1000)
        } else {
            format!("SET SESSION max_execution_time = {timeout_ms}; START TRANSACTION READ ONLY")
        };
        let mut tx = conn.begin_with(begin).await.map_err(fail)?;
        let mut arguments = mysql_arguments(binds).map_err(fail)?;
        arguments.add(limit).map_err(|e| fail(sqlx::Error::Encode(e)))?;
        arguments.add(offset).map_err(|e| fail(sqlx::Error::Encode(e)))?;
        let rows = sqlx::query_with(&statements.page, arguments).fetch_all(&mut *tx).await.map_err(fail)?;
        let count = if needs_count(statements, rows.len(), offset) {
            let count = sqlx::query_with(&statements.count, mysql_arguments(binds).map_err(fail)?).fetch_one(&mut *tx).await;
            Some(count.and_then(|row| row.try_get::<i64, _>(0)).map_err(fail)?)
        } else {
            None
        };
        // As for PostgreSQL: the ROLLBACK of the read-only transaction goes with the pool's
        // test of the returned connection.
        drop(tx);
        let carried = decode::mysql_rows(&rows, statements.page_counts, out)?;
        Ok(page_info(statements, rows.len(), carried, count))
    }

    async fn page_sqlite(
        &self,
        pool: &SqlitePool,
        statements: &Statements,
        binds: &[Value],
        (limit, offset): (i64, i64),
        deadline: Instant,
        out: &mut Vec<u8>,
    ) -> Result<PageInfo, SqlError> {
        let mut conn = self.acquire(pool, deadline).await?;
        let timeout_ms = statement_ms(deadline);
        let fail = |e| classify(e, Driver::Sqlite, timeout_ms);
        // SQLite has no statement timeout: the progress handler interrupts the statement
        // once the deadline passes (every 1000 virtual machine steps it looks at the clock).
        conn.lock_handle().await.map_err(fail)?.set_progress_handler(1000, move || Instant::now() < deadline);
        let mut tx = conn.begin().await.map_err(fail)?;
        let mut arguments = sqlite_arguments(binds).map_err(fail)?;
        arguments.add(limit).map_err(|e| fail(sqlx::Error::Encode(e)))?;
        arguments.add(offset).map_err(|e| fail(sqlx::Error::Encode(e)))?;
        let result = async {
            let rows = sqlx::query_with(&statements.page, arguments).fetch_all(&mut *tx).await?;
            let count = if needs_count(statements, rows.len(), offset) {
                Some(sqlx::query_with(&statements.count, sqlite_arguments(binds)?).fetch_one(&mut *tx).await?.try_get::<i64, _>(0)?)
            } else {
                None
            };
            Ok::<_, sqlx::Error>((rows, count))
        }
        .await;
        let (rows, count) = match result {
            Ok(ok) => ok,
            Err(e) if Instant::now() >= deadline => {
                tracing::debug!(error = %e, "sqlite statement interrupted at the deadline");
                return Err(SqlError::Timeout { timeout_ms });
            }
            Err(e) => return Err(fail(e)),
        };
        tx.commit().await.map_err(fail)?;
        let carried = decode::sqlite_rows(&rows, statements.page_counts, out)?;
        Ok(page_info(statements, rows.len(), carried, count))
    }
}

/// The count of all rows: the count query's when it ran, else the one the page carried.
fn page_info(statements: &Statements, rows: usize, carried: Option<i64>, count: Option<i64>) -> PageInfo {
    let total = if statements.page_counts { count.or(carried) } else { count };
    PageInfo { rows, total: total.unwrap_or(0) }
}

fn pool_options<DB: sqlx::Database>(max_connections: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(POOL_ACQUIRE_LIMIT)
        .idle_timeout(IDLE_TIMEOUT)
        .test_before_acquire(false)
}

/// The statement timeout for what is left of the budget.
fn statement_ms(deadline: Instant) -> u64 {
    (deadline.saturating_duration_since(Instant::now()).as_millis() as u64).max(MIN_STATEMENT_MS)
}

fn pg_arguments(binds: &[Value]) -> Result<sqlx::postgres::PgArguments, sqlx::Error> {
    let mut a = sqlx::postgres::PgArguments::default();
    for value in binds {
        match value {
            Value::Null => a.add(None::<String>),
            Value::Text(s) => a.add(s.as_str()),
            Value::Integer(i) => a.add(*i),
            Value::Number(n) => a.add(*n),
            Value::Boolean(b) => a.add(*b),
            Value::Timestamp(t) => a.add(*t),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(a)
}

fn mysql_arguments(binds: &[Value]) -> Result<sqlx::mysql::MySqlArguments, sqlx::Error> {
    let mut a = sqlx::mysql::MySqlArguments::default();
    for value in binds {
        match value {
            Value::Null => a.add(None::<String>),
            Value::Text(s) => a.add(s.as_str()),
            Value::Integer(i) => a.add(*i),
            Value::Number(n) => a.add(*n),
            Value::Boolean(b) => a.add(*b),
            // MySQL DATETIME / TIMESTAMP compare as UTC wall-clock time.
            Value::Timestamp(t) => {
                let utc = t.to_offset(time::UtcOffset::UTC);
                a.add(time::PrimitiveDateTime::new(utc.date(), utc.time()))
            }
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(a)
}

fn sqlite_arguments(binds: &[Value]) -> Result<sqlx::sqlite::SqliteArguments<'static>, sqlx::Error> {
    let mut a = sqlx::sqlite::SqliteArguments::default();
    for value in binds {
        match value {
            Value::Null => a.add(None::<String>),
            Value::Text(s) => a.add(s.clone()),
            Value::Integer(i) => a.add(*i),
            Value::Number(n) => a.add(*n),
            Value::Boolean(b) => a.add(*b),
            // SQLite keeps timestamps as text: RFC 3339 in UTC sorts and compares as text.
            Value::Timestamp(t) => a.add(decode::rfc3339(*t)),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(a)
}

/// The driver error in words that hold no URL or address.
fn redact_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "it is not a valid connection URL".into(),
        other => other.to_string(),
    }
}

/// Sorts a driver error into the answer the client gets.
fn classify(e: sqlx::Error, driver: Driver, timeout_ms: u64) -> SqlError {
    match e {
        sqlx::Error::PoolTimedOut => SqlError::PoolExhausted,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            SqlError::Unavailable { detail: e.to_string() }
        }
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            match driver {
                // 57014 query_canceled (statement_timeout); 22xxx data exceptions; 08xxx
                // connection; 57P01-57P03 shutting down or starting up.
                Driver::Postgres if code == "57014" => SqlError::Timeout { timeout_ms },
                Driver::Postgres if code.starts_with("22") => SqlError::BadData { message },
                Driver::Postgres if code.starts_with("08") || code.starts_with("57P") => SqlError::Unavailable { detail: message },
                // MariaDB 1969 (70100) max_statement_time; MySQL 3024 max_execution_time;
                // 1317 (70100) query interrupted.
                Driver::Mysql
                    if code == "70100"
                        || message.contains("max_statement_time")
                        || message.contains("maximum statement execution time") =>
                {
                    SqlError::Timeout { timeout_ms }
                }
                Driver::Mysql if code.starts_with("22") => SqlError::BadData { message },
                Driver::Mysql if code.starts_with("08") => SqlError::Unavailable { detail: message },
                // SQLITE_INTERRUPT (9): the progress handler stopped it at the deadline.
                Driver::Sqlite if code == "9" => SqlError::Timeout { timeout_ms },
                _ => SqlError::Failed { message },
            }
        }
        sqlx::Error::Encode(e) => SqlError::BadData { message: e.to_string() },
        sqlx::Error::ColumnDecode { index, source } => SqlError::Failed { message: format!("column {index} cannot be read: {source}") },
        other => SqlError::Failed { message: other.to_string() },
    }
}
pub use time;
