//! SQLite connections of grantry's own (rusqlite) for the ack path, on which a [`Batch`] runs
//! where its caller is, with no hand-off: the filer's (a second read-write connection, owned
//! by the filer's thread, [`super::filing`]) and intake's read-only one ([`super::reader`]).
//!
//! Through sqlx, each batch went to sqlx's SQLite worker thread and its results came back one
//! message per statement (about a dozen per filing, each a wake-up of the waiting task), and the
//! filer task was a hand-off of its own from the request's task: at concurrency 1 those
//! exchanges cost more than the statements (docs/benchmarks.md). Here the statements run back to
//! back with their prepared statements cached. The filer writes on it only while it holds the
//! store's writer ([`super::writer`]), so it and sqlx's writer connection never write at once.
//! The reader does not wait for a busy database: its caller is a tokio worker, which then reads
//! through sqlx instead (whose connection waits on a thread of its own).

use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::batch::{Batch, BatchRow};
use super::StoreError;

/// Prepared statements kept (a filing's dozen, times the multi-row inserts' sizes in use).
const STATEMENT_CACHE: usize = 256;

/// How long a statement waits for a lock another connection holds (as the sqlx connections).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One of these connections, shared under a lock taken only inside a synchronous call (never
/// across an `await`); `None` once the store is closed.
pub(crate) struct Shared(std::sync::Mutex<Option<Connection>>);

impl Shared {
    pub(crate) fn new(conn: Connection) -> Self {
        Shared(std::sync::Mutex::new(Some(conn)))
    }

    /// `f` on the connection; [`StoreError::Closed`] once it is closed.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(conn) => f(conn),
            None => Err(StoreError::Closed),
        }
    }

    /// Closes the connection (once no call is using it).
    pub(crate) fn close(&self) {
        drop(self.0.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// Opens the database file `path` (which exists: sqlx's writer opened it) read-write, with
/// `pragmas` (the writer's `synchronous` and the rest).
pub(crate) fn open(path: &str, pragmas: &str) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
    conn.execute_batch(pragmas).map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Opens the database file `path` read-only, not waiting when it is busy.
pub(crate) fn open_reader(path: &str) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
    conn.busy_timeout(Duration::ZERO).map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Runs `batch`'s statements in order; returns the rows they return, in order. A statement
/// that fails stops the batch there (what ran before it stays, as in its transaction).
pub(crate) fn run(conn: &Connection, batch: &Batch) -> Result<Vec<BatchRow>, StoreError> {
    try_run(conn, batch).map_err(sqlite_error)
}

/// [`run`], or `None` if the database was busy (nothing was read).
pub(crate) fn run_unless_busy(
    conn: &Connection,
    batch: &Batch,
) -> Option<Result<Vec<BatchRow>, StoreError>> {
    match try_run(conn, batch) {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            None
        }
        done => Some(done.map_err(sqlite_error)),
    }
}

fn try_run(conn: &Connection, batch: &Batch) -> Result<Vec<BatchRow>, rusqlite::Error> {
    let mut rows = Vec::new();
    for s in batch.statements() {
        let mut prepared = conn.prepare_cached(&s.sql)?;
        let columns = prepared.column_count();
        let mut got = prepared.query(rusqlite::params_from_iter(s.values.iter()))?;
        while let Some(row) = got.next()? {
            let values = (0..columns)
                .map(|i| row.get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(BatchRow::Sqlite(values));
        }
    }
    Ok(rows)
}

/// Runs one statement with no values (`COMMIT`, `ROLLBACK`).
pub(crate) fn execute(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.execute_batch(sql).map_err(sqlite_error)
}

/// SQLite's error as the store's: its code and message (never a bound value).
fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{execute, open, run};
    use crate::store::batch::{Batch, BatchRow};
    use crate::store::Backend;

    #[test]
    fn a_batch_runs_in_order_and_returns_its_rows_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        rusqlite::Connection::open(&path).unwrap();
        let c = open(path.to_str().unwrap(), "PRAGMA journal_mode = WAL;").unwrap();

        let mut b = Batch::new(Backend::Sqlite);
        b.push("BEGIN IMMEDIATE");
        b.push("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, note TEXT)");
        b.push("INSERT INTO t (id, name, note) VALUES (?, ?, ?), (?, ?, ?) RETURNING id");
        for (id, name) in [(1_i64, "a"), (2, "b")] {
            b.bind(id).unwrap();
            b.bind(name).unwrap();
            b.bind(None::<&str>).unwrap();
        }
        b.push("SELECT name, note FROM t WHERE id = ?");
        b.bind(2_i64).unwrap();
        b.push("COMMIT");
        let rows = run(&c, &b).unwrap();
        assert_eq!(rows.len(), 3, "two ids returned, then the selected row");
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 1);
        assert_eq!(rows[1].get::<i64>(0).unwrap(), 2);
        assert_eq!(rows[2].get::<String>(0).unwrap(), "b");
        assert_eq!(rows[2].get::<Option<String>>(1).unwrap(), None);
        assert!(
            rows[2].get::<i64>(0).is_err(),
            "text is not read as a number"
        );
        assert!(rows[2].get::<String>(2).is_err(), "no third column");

        // A failing statement stops the batch there; the caller rolls back what ran before it.
        let mut b = Batch::new(Backend::Sqlite);
        b.push("BEGIN IMMEDIATE");
        b.push("INSERT INTO t (id, name) VALUES (3, 'c')");
        b.push("INSERT INTO t (id, name) VALUES (1, 'dup')");
        b.push("INSERT INTO t (id, name) VALUES (4, 'd')");
        let Err(e) = run(&c, &b) else {
            panic!("a duplicate key went in")
        };
        assert!(e.to_string().contains("UNIQUE"), "{e}");
        assert!(!c.is_autocommit(), "left open for the caller");
        execute(&c, "ROLLBACK").unwrap();
        drop(c);

        let other = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        let mut b = Batch::new(Backend::Sqlite);
        b.push("SELECT COUNT(*) FROM t");
        let rows = run(&other, &b).unwrap();
        assert!(
            matches!(&rows[0], BatchRow::Sqlite(v) if v[0] == rusqlite::types::Value::Integer(2))
        );
    }
}
