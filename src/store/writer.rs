//! Where writes go. PostgreSQL: the pool. SQLite: its one writer connection, taken in turn
//! through a tokio mutex (first come, first served) rather than through a pool of one: a pool
//! pings every connection given back to it (a round trip to sqlx's SQLite thread, from a task
//! spawned for it) before the next caller may have it, which put a ping on the single writer's
//! path after every write.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use super::StoreError;

/// How long a write waits for the writer before it fails (as the pool's acquire timeout did).
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The writers of a store.
#[derive(Clone)]
pub(crate) enum Writer {
    /// SQLite's one connection; `None` once closed.
    Single(Arc<Mutex<Option<AnyConnection>>>),
    /// PostgreSQL's pool.
    Pool(AnyPool),
}

/// A writer connection held by one caller until dropped.
pub(crate) enum WriteConn {
    Single(OwnedMappedMutexGuard<Option<AnyConnection>, AnyConnection>),
    Pool(PoolConnection<Any>),
}

impl Writer {
    /// SQLite's writer: one connection.
    pub(crate) fn single(conn: AnyConnection) -> Self {
        Writer::Single(Arc::new(Mutex::new(Some(conn))))
    }

    /// Waits for a connection to write with (SQLite: the one, in turn).
    pub(crate) async fn take(&self) -> Result<WriteConn, StoreError> {
        match self {
            Writer::Single(slot) => {
                let guard = tokio::time::timeout(TAKE_TIMEOUT, slot.clone().lock_owned())
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
                OwnedMutexGuard::try_map(guard, Option::as_mut)
                    .map(WriteConn::Single)
                    .map_err(|_| StoreError::Closed)
            }
            Writer::Pool(pool) => Ok(WriteConn::Pool(pool.acquire().await?)),
        }
    }

    /// Closes the connection (SQLite) or the pool; later writes fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        match self {
            Writer::Single(slot) => {
                let conn = slot.lock().await.take();
                if let Some(conn) = conn {
                    let _ = conn.close().await;
                }
            }
            Writer::Pool(pool) => pool.close().await,
        }
    }
}

impl Deref for WriteConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConn::Single(c) => c,
            WriteConn::Pool(c) => c,
        }
    }
}

impl DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Single(c) => c,
            WriteConn::Pool(c) => c,
        }
    }
}
