//! The store: requests, decisions, approvals, grants, jobs and the audit chain in one database.
//!
//! SQLite is the embedded default: one writer connection (SQLite has one writer anyway, and one
//! connection keeps the audit chain and compare-and-set moves strictly ordered, [`writer`]) and
//! read-only connections lent in turn ([`reader`]), in WAL mode. PostgreSQL is one pool; the statements that must differ (the job claim,
//! the sweep) are chosen by [`Backend`]. Both go through `sqlx::Any` with `$n` placeholders. Every change is made through a [`Tx`], whose modules (one per aggregate)
//! add their statements; a job enqueued in a `Tx` becomes visible exactly when the change commits.

pub mod approvals;
pub mod audit;
pub(crate) mod batch;
pub mod decisions;
pub mod delegations;
pub mod digest;
mod direct;
pub mod filing;
pub mod fulfilments;
pub mod grants;
mod in_flight;
pub mod intake_facts;
pub mod jobs;
pub mod ledger;
mod pg_direct;
mod pg_tls;
mod reader;
pub mod requests;
pub mod reviews;
pub mod rulings;
pub mod schedule;
mod shared_read;
pub mod teams;
pub mod tickets;
mod writer;

use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, ConnectOptions, Connection, Executor, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;
use tokio::sync::Notify;

use reader::{ReadConn, Reader};
use writer::{WriteConn, Writer};

/// sqlx's transaction moves (begin, commit, rollback) for whichever database is behind `Any`.
type Transactions = <Any as sqlx::Database>::TransactionManager;

pub use jobs::{Job, JobRecord};

/// A store failure. Callers log it; people are shown a generic "try again".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the filer's SQLite connection ([`direct`]): SQLite's code and message.
    #[error("database error: {0}")]
    Sqlite(String),
    /// From the filer's PostgreSQL connection ([`pg_direct`]): PostgreSQL's code and message.
    #[error("database error: {0}")]
    Postgres(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0} (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// A thread of the store's could not be started.
    #[error("cannot start {0}")]
    Start(String),
    #[error("the store is shutting down")]
    Closed,
}

/// Options for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    /// SQLite only: `full` or `normal`.
    pub synchronous: String,
    /// SQLite: readers beside the one writer. PostgreSQL: the pool's size.
    pub read_connections: u32,
}

/// Which database the store talks to; the few statements that differ are chosen by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    writer: Writer,
    reader: Reader,
    jobs_ready: Arc<Notify>,
    /// Writes new requests in shared transactions ([`filing`]); `None` inside the filer itself.
    filer: Option<filing::Filer>,
    /// Intake's questions waiting to be read together ([`intake_facts`]).
    facts: Arc<intake_facts::FactsQueue>,
    /// Clicks waiting to be read together on PostgreSQL ([`rulings`]).
    clicks: Arc<rulings::ClickQueue>,
    /// The audit chain's head as the filer's last commit left it ([`filing`]).
    filed_head: Arc<std::sync::Mutex<Option<(i64, String)>>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// The page size of a SQLite database grantry creates; one that exists keeps its own (SQLite
/// changes it only by a `VACUUM` outside WAL mode). A commit writes every page it touched whole
/// into the WAL, and a new request touches 17–20 (its rows and the last leaf of each index):
/// ~20 kB to flush with 1 KiB pages against ~75 kB with SQLite's 4 KiB (docs/benchmarks.md).
const SQLITE_PAGE_SIZE: u32 = 1024;

/// Whether the database's writes take this machine's cores: SQLite's always (its filer is a thread
/// of grantry's), PostgreSQL's when its every host is this one ([`pg_direct::url_on_this_host`]).
pub fn database_on_this_host(url: &str) -> bool {
    url.starts_with("sqlite:") || pg_direct::url_on_this_host(url)
}

/// `sqlite://x.db` with `mode=rwc` (create) or `mode=ro` (read-only) added.
fn sqlite_url(url: &str, mode: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    if url.contains("mode=") {
        url.to_string()
    } else {
        format!("{url}{sep}mode={mode}")
    }
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(opts: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::connect(opts).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without migrating it.
    pub async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        install_drivers();
        let backend = if opts.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(&opts.url)));
        };
        let (writer, reader, filer_conn) = match backend {
            Backend::Sqlite => {
                let sync = match opts.synchronous.to_ascii_lowercase().as_str() {
                    "normal" => "NORMAL",
                    "off" => "OFF",
                    _ => "FULL",
                };
                let pragmas = format!(
                    "PRAGMA page_size = {SQLITE_PAGE_SIZE}; \
                     PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
                );
                // One writer: SQLite has one anyway, and one connection orders every write.
                let mut conn = AnyConnection::connect(&sqlite_url(&opts.url, "rwc")).await?;
                conn.execute(sqlx::AssertSqlSafe(pragmas.clone())).await?;
                // The filer's own connection and intake's inline reader (direct.rs), on the file
                // sqlx opened (SQLite names it; a database in memory has neither: sqlx serves).
                let file: String =
                    sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                        .fetch_one(&mut conn)
                        .await?;
                let (filer_conn, inline_reader) = match file.as_str() {
                    "" => (None, None),
                    path => (
                        Some(filing::OwnConnection::Sqlite(direct::open(path, &pragmas)?)),
                        Some(direct::open_reader(path)?),
                    ),
                };
                let writer = Writer::single(conn);
                // Readers lent in turn, not pooled: a pool pings each connection given back.
                let mut readers = Vec::new();
                for _ in 0..opts.read_connections.max(1) {
                    let mut conn = AnyConnection::connect(&sqlite_url(&opts.url, "ro")).await?;
                    conn.execute("PRAGMA busy_timeout = 10000;").await?;
                    readers.push(conn);
                }
                let reader = Reader::own(readers, inline_reader);
                (writer, reader, filer_conn)
            }
            Backend::Postgres => {
                // A batch's values are written into its query (batch.rs): sqlx's statement logs
                // (debug, and warn when slow) would carry people's reasons and names, so none.
                let options = AnyConnectOptions::from_str(&opts.url)?
                    .log_statements(log::LevelFilter::Off)
                    .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1));
                let pool = AnyPoolOptions::new()
                    .max_connections(opts.read_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    // No ping before each use: a round trip per acquire on the ack path. A
                    // connection the server dropped fails its next query and is discarded.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                // The filer's pipelined connection where it may have one; one that cannot
                // connect leaves the filer on the pool.
                let own = pg_direct::PgOwn::open(
                    &opts.url,
                    "grantry-filer",
                    "filings go through the pool",
                )
                .await
                .map(|own| filing::OwnConnection::Postgres(Box::new(own)));
                // Clicks' and intake's reads likewise (one at a time, shared: store/shared_read.rs).
                let own_reader = pg_direct::PgOwn::open(
                    &opts.url,
                    "grantry-reader",
                    "clicks and intake are read through the pool",
                )
                .await
                .map(Arc::new);
                (
                    Writer::Pool(pool.clone()),
                    Reader::Pool(pool, own_reader),
                    own,
                )
            }
        };
        let mut store = Self {
            backend,
            writer,
            reader,
            jobs_ready: Arc::new(Notify::new()),
            filer: None,
            facts: Arc::new(intake_facts::queue()),
            clicks: Arc::new(rulings::click_queue()),
            filed_head: Arc::default(),
        };
        store.filer = Some(filing::Filer::start(store.clone(), filer_conn)?);
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.take().await?;
        self.migrator().run(&mut *conn).await?;
        Ok(())
    }

    /// Whether the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<bool, StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&mut *self.read_conn().await?)
                .await?;
        Ok(applied as usize >= self.migrator().iter().count())
    }

    /// Starts a write transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock at once).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let mut conn = self.writer.take().await?;
        let statement = match self.backend {
            Backend::Sqlite => Some("BEGIN IMMEDIATE".into_sql_str()),
            Backend::Postgres => None,
        };
        // Cancelled midway, sqlx rolls back a begin it could not report.
        Transactions::begin(&mut conn, statement).await?;
        Ok(Tx {
            conn,
            open: true,
            backend: self.backend,
            enqueued: false,
            jobs_ready: self.jobs_ready.clone(),
        })
    }

    /// A connection to write with outside a transaction (SQLite: the writer, in turn).
    pub(crate) async fn write_conn(&self) -> Result<WriteConn, StoreError> {
        self.writer.take().await
    }

    /// A connection to read with (SQLite: one of the read-only ones, lent in turn).
    pub(crate) async fn read_conn(&self) -> Result<ReadConn, StoreError> {
        self.reader.take().await
    }

    /// Signalled after a commit that enqueued a job.
    pub fn jobs_ready(&self) -> &Arc<Notify> {
        &self.jobs_ready
    }

    /// Closes every connection: sqlx's, and SQLite's own (the filer's, intake's reader).
    pub async fn close(&self) {
        self.writer.close().await;
        if let Some(filer) = &self.filer {
            filer.close();
        }
        self.reader.close().await;
    }
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    conn: WriteConn,
    /// Begun and not committed: dropped so, it is rolled back.
    open: bool,
    backend: Backend,
    enqueued: bool,
    jobs_ready: Arc<Notify>,
}

impl Tx {
    /// Commits, then wakes the workers if a job was enqueued.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        Transactions::commit(&mut self.conn).await?;
        self.open = false;
        if self.enqueued {
            self.jobs_ready.notify_waiters();
        }
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Notes that a job was enqueued (the workers are woken after the commit).
    pub(crate) fn mark_enqueued(&mut self) {
        self.enqueued = true;
    }

    /// An empty batch for this transaction's database: writes added to it (the modules'
    /// `push_*`) go in one round trip ([`Tx::run_with_audit`]).
    pub(crate) fn batch(&self) -> batch::Batch {
        batch::Batch::new(self.backend)
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            // Queues the rollback before the connection's next use, as sqlx's own transactions do.
            Transactions::start_rollback(&mut self.conn);
        }
    }
}

/// `head` followed by `rows` groups of `cols` placeholders, then `tail`. PostgreSQL gets numbered
/// ones (`($1,$2),($3,$4)`); SQLite plain `?`s, bound in order: its numbered parameters are
/// named, and finding each by name costs a scan of all names, which made a 1,000-parameter insert
/// spend more time binding than writing.
/// How many rows a statement over `n` given rows lists: `n` padded to a power of two, so that a
/// few statement texts serve every batch (each is prepared once per connection).
pub(crate) fn padded_rows(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

pub(crate) fn values_sql(
    backend: Backend,
    head: &str,
    rows: usize,
    cols: usize,
    tail: &str,
) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 5);
    sql.push_str(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${}", r * cols + c + 1);
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// A URL with any password replaced, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://[redacted]@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_lists_number_their_placeholders() {
        use super::Backend::*;
        assert_eq!(
            super::values_sql(
                Postgres,
                "INSERT INTO t (a, b) VALUES ",
                2,
                2,
                " RETURNING a"
            ),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4) RETURNING a"
        );
        assert_eq!(
            super::values_sql(Sqlite, "INSERT INTO t (a, b) VALUES ", 2, 2, ""),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?)"
        );
    }

    #[tokio::test]
    async fn a_closed_store_leaves_no_connection_on_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = super::Store::open(&super::StoreOptions {
            url: format!("sqlite://{}", path.display()),
            synchronous: "full".into(),
            read_connections: 2,
        })
        .await
        .unwrap();
        assert!(store.ready().await.unwrap());
        store.close().await;
        // An exclusive lock on a WAL database is had only with every other connection gone.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        other
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
            .unwrap();
    }

    #[tokio::test]
    async fn a_new_sqlite_database_has_small_pages_and_one_that_exists_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |path: &std::path::Path| -> u32 {
            rusqlite::Connection::open(path)
                .unwrap()
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .unwrap()
        };
        let options = |path: &std::path::Path| super::StoreOptions {
            url: format!("sqlite://{}", path.display()),
            synchronous: "full".into(),
            read_connections: 1,
        };
        let new = dir.path().join("new.db");
        super::Store::open(&options(&new))
            .await
            .unwrap()
            .close()
            .await;
        assert_eq!(page_size(&new), super::SQLITE_PAGE_SIZE);

        let old = dir.path().join("old.db");
        rusqlite::Connection::open(&old)
            .unwrap()
            .execute_batch(
                "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (a);",
            )
            .unwrap();
        let store = super::Store::open(&options(&old)).await.unwrap();
        assert!(store.ready().await.unwrap());
        store.close().await;
        assert_eq!(page_size(&old), 4096);
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:pw@host/db"),
            "postgres://[redacted]@host/db"
        );
    }
}
