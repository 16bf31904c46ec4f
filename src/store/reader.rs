//! Where reads go. PostgreSQL: the pool. SQLite: its read-only connections, each lent to one
//! caller at a time and given back as is: sqlx's pool pings every connection given back to it (a
//! round trip to that connection's SQLite thread, from a task spawned for it), one more hand-off
//! after every read. A read-only SQLite connection has nothing to flush: no transaction is begun
//! on it, and its statements are reset when next used.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::StoreError;

/// How long a read waits for a connection before it fails (as the pool's acquire timeout did).
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The readers of a store.
#[derive(Clone)]
pub(crate) enum Reader {
    /// SQLite's read-only connections.
    Own(Arc<Lender>),
    /// PostgreSQL's pool (the writers' too).
    Pool(AnyPool),
}

/// SQLite's read-only connections (each `None` once closed), with a permit per connection: a
/// caller holding a permit finds one of them free.
pub(crate) struct Lender {
    permits: Arc<Semaphore>,
    conns: Vec<Arc<Mutex<Option<AnyConnection>>>>,
}

/// A reader connection lent to one caller until dropped.
pub(crate) enum ReadConn {
    /// The connection, then its permit: fields drop in order, so the connection is free again
    /// before the permit lets the next caller look for it.
    Own {
        conn: OwnedMappedMutexGuard<Option<AnyConnection>, AnyConnection>,
        _permit: OwnedSemaphorePermit,
    },
    Pool(PoolConnection<Any>),
}

impl Reader {
    /// SQLite's readers: these connections.
    pub(crate) fn own(conns: Vec<AnyConnection>) -> Self {
        Reader::Own(Arc::new(Lender {
            permits: Arc::new(Semaphore::new(conns.len())),
            conns: conns
                .into_iter()
                .map(|c| Arc::new(Mutex::new(Some(c))))
                .collect(),
        }))
    }

    /// Waits for a connection to read with.
    pub(crate) async fn take(&self) -> Result<ReadConn, StoreError> {
        match self {
            Reader::Own(lender) => {
                let permit =
                    tokio::time::timeout(TAKE_TIMEOUT, lender.permits.clone().acquire_owned())
                        .await
                        .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?
                        .map_err(|_| StoreError::Closed)?;
                for slot in &lender.conns {
                    if let Ok(guard) = slot.clone().try_lock_owned() {
                        let conn = OwnedMutexGuard::try_map(guard, Option::as_mut)
                            .map_err(|_| StoreError::Closed)?;
                        return Ok(ReadConn::Own {
                            conn,
                            _permit: permit,
                        });
                    }
                }
                // A permit is only free once its connection is.
                Err(StoreError::Corrupt(
                    "no reader free under a free permit".into(),
                ))
            }
            Reader::Pool(pool) => Ok(ReadConn::Pool(pool.acquire().await?)),
        }
    }

    /// Closes the connections (SQLite: each once it is given back) or the pool; later reads
    /// fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        match self {
            Reader::Own(lender) => {
                lender.permits.close();
                for slot in &lender.conns {
                    let conn = slot.lock().await.take();
                    if let Some(conn) = conn {
                        let _ = conn.close().await;
                    }
                }
            }
            Reader::Pool(pool) => pool.close().await,
        }
    }
}

impl Deref for ReadConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            ReadConn::Own { conn, .. } => conn,
            ReadConn::Pool(c) => c,
        }
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            ReadConn::Own { conn, .. } => conn,
            ReadConn::Pool(c) => c,
        }
    }
}
