//! The store: requests, decisions, approvals, grants, jobs and the audit chain in one database.
//!
//! SQLite is the embedded default: one writer connection (SQLite has one writer anyway, and one
//! connection keeps the audit chain and compare-and-set moves strictly ordered) and a pool of
//! readers in WAL mode. Every change is made through a [`Tx`], whose modules (one per aggregate)
//! add their statements; a job enqueued in a `Tx` becomes visible exactly when the change commits.

pub mod approvals;
pub mod audit;
pub mod decisions;
pub mod grants;
pub mod jobs;
pub mod requests;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Sqlite;
use tokio::sync::Notify;

pub use jobs::{Job, JobRecord};

/// A store failure. Callers log it; people are shown a generic "try again".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (expected sqlite://…): {0}")]
    UnsupportedUrl(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

/// Options for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// `full` or `normal`.
    pub synchronous: String,
    pub read_connections: u32,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    jobs_ready: Arc<Notify>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(opts: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::connect(opts).await?;
        MIGRATOR.run(&store.writer).await?;
        Ok(store)
    }

    /// Opens the database without migrating it.
    pub async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        if !opts.url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(redact_url(&opts.url)));
        }
        let sync = match opts.synchronous.to_ascii_lowercase().as_str() {
            "normal" => SqliteSynchronous::Normal,
            "off" => SqliteSynchronous::Off,
            _ => SqliteSynchronous::Full,
        };
        let base = SqliteConnectOptions::from_str(&opts.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(opts.read_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            jobs_ready: Arc::new(Notify::new()),
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    /// Whether the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<bool, StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await?;
        Ok(applied as usize >= MIGRATOR.iter().count())
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: takes the write lock at once).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.writer.begin_with("BEGIN IMMEDIATE").await?,
            enqueued: false,
            jobs_ready: self.jobs_ready.clone(),
        })
    }

    /// The pool for reads.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Signalled after a commit that enqueued a job.
    pub fn jobs_ready(&self) -> &Arc<Notify> {
        &self.jobs_ready
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    tx: sqlx::Transaction<'static, Sqlite>,
    enqueued: bool,
    jobs_ready: Arc<Notify>,
}

impl Tx {
    /// Commits, then wakes the workers if a job was enqueued.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        if self.enqueued {
            self.jobs_ready.notify_waiters();
        }
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
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
    fn urls_lose_their_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:pw@host/db"),
            "postgres://[redacted]@host/db"
        );
    }
}
