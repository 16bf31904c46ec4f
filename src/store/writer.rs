//! Where writes go. PostgreSQL: the pool. SQLite: its one writer connection, taken in turn
//! through a tokio mutex (first come, first served) rather than through a pool of one: a pool
//! pings every connection given back to it (a round trip to sqlx's SQLite thread, from a task
//! spawned for it) before the next caller may have it, which put a ping on the single writer's
//! path after every write.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use super::StoreError;

/// How long a write waits for the writer before it fails (as the pool's acquire timeout did).
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The writers of a store.
#[derive(Clone)]
pub(crate) enum Writer {
    /// SQLite's one connection (`None` once closed), and whether a transaction begun by hand
    /// may have been left open on it ([`WriteConn::set_in_doubt`]).
    Single(Arc<Mutex<Option<AnyConnection>>>, Arc<AtomicBool>),
    /// PostgreSQL's pool.
    Pool(AnyPool),
}

/// A writer connection held by one caller until dropped.
pub(crate) enum WriteConn {
    Single(
        OwnedMappedMutexGuard<Option<AnyConnection>, AnyConnection>,
        Arc<AtomicBool>,
    ),
    /// A pool's connection, and whether a transaction begun by hand may be open on it: then it
    /// is closed when dropped instead of going back to the pool (PostgreSQL rolls back what a
    /// closed connection left open).
    Pool(PoolConnection<Any>, bool),
}

impl Writer {
    /// SQLite's writer: one connection.
    pub(crate) fn single(conn: AnyConnection) -> Self {
        Writer::Single(Arc::new(Mutex::new(Some(conn))), Arc::default())
    }

    /// Waits for a connection to write with (SQLite: the one, in turn).
    pub(crate) async fn take(&self) -> Result<WriteConn, StoreError> {
        match self {
            Writer::Single(slot, in_doubt) => {
                let guard = tokio::time::timeout(TAKE_TIMEOUT, slot.clone().lock_owned())
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
                let mut conn = OwnedMutexGuard::try_map(guard, Option::as_mut)
                    .map_err(|_| StoreError::Closed)?;
                if in_doubt.load(Ordering::Acquire) {
                    // Its holder was cancelled or failed before ending it: roll it back. An error
                    // here ("no transaction is active") means it had ended after all.
                    let _ = conn.execute("ROLLBACK").await;
                    in_doubt.store(false, Ordering::Release);
                }
                Ok(WriteConn::Single(conn, in_doubt.clone()))
            }
            Writer::Pool(pool) => Ok(WriteConn::Pool(pool.acquire().await?, false)),
        }
    }

    /// Closes the connection (SQLite) or the pool; later writes fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        match self {
            Writer::Single(slot, _) => {
                let conn = slot.lock().await.take();
                if let Some(conn) = conn {
                    let _ = conn.close().await;
                }
            }
            Writer::Pool(pool) => pool.close().await,
        }
    }
}

impl WriteConn {
    /// Marks (`true`) a transaction begun by hand with `BEGIN` in a statement, not through sqlx,
    /// until it is committed or rolled back (`false`): if its holder is cancelled or fails in
    /// between, the next holder rolls it back first (a pool's connection is closed instead).
    pub(crate) fn set_in_doubt(&mut self, open: bool) {
        match self {
            WriteConn::Single(_, in_doubt) => in_doubt.store(open, Ordering::Release),
            WriteConn::Pool(_, in_doubt) => *in_doubt = open,
        }
    }
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        if let WriteConn::Pool(conn, true) = self {
            conn.close_on_drop();
        }
    }
}

impl Deref for WriteConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConn::Single(c, _) => c,
            WriteConn::Pool(c, _) => c,
        }
    }
}

impl DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Single(c, _) => c,
            WriteConn::Pool(c, _) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{AnyConnection, Connection, Executor};

    use super::Writer;

    async fn count(w: &Writer) -> i64 {
        let mut conn = w.take().await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_transaction_left_open_by_hand_is_rolled_back_by_the_next_holder() {
        super::super::install_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db?mode=rwc", dir.path().display());
        let mut c = AnyConnection::connect(&url).await.unwrap();
        c.execute("CREATE TABLE t (x INTEGER)").await.unwrap();
        let w = Writer::single(c);

        // Begun by hand and dropped unfinished, as by a caller cancelled midway.
        let mut conn = w.take().await.unwrap();
        conn.set_in_doubt(true);
        conn.execute("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        drop(conn);
        assert_eq!(count(&w).await, 0, "the unfinished insert was rolled back");

        // Committed, but its holder was cancelled before it could say so: nothing is undone.
        let mut conn = w.take().await.unwrap();
        conn.set_in_doubt(true);
        conn.execute("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT")
            .await
            .unwrap();
        drop(conn);
        assert_eq!(count(&w).await, 1);

        // And the writer is usable for transactions again.
        let mut conn = w.take().await.unwrap();
        conn.execute("BEGIN IMMEDIATE; INSERT INTO t VALUES (3); COMMIT")
            .await
            .unwrap();
        drop(conn);
        assert_eq!(count(&w).await, 2);
        w.close().await;
        assert!(matches!(w.take().await, Err(super::StoreError::Closed)));
    }
}
