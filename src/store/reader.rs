//! Where reads go. PostgreSQL: the pool. SQLite: its read-only connections, each lent to one
//! caller at a time and given back as is: sqlx's pool pings every connection given back to it (a
//! round trip to that connection's SQLite thread, from a task spawned for it), one more hand-off
//! after every read. A read-only SQLite connection has nothing to flush: no transaction is begun
//! on it, and its statements are reset when next used. Beside them, a read-only connection of
//! our own ([`super::direct`]) answers intake's short read on the caller's thread, with no
//! hand-off at all.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::batch::{Batch, BatchRow};
use super::direct;
use super::pg_direct::PgOwn;
use super::StoreError;

/// How long a read waits for a connection before it fails (as the pool's acquire timeout did).
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The readers of a store.
#[derive(Clone)]
pub(crate) enum Reader {
    /// SQLite's read-only connections.
    Own(Arc<Lender>),
    /// PostgreSQL's pool (the writers' too), and a connection of grantry's own for clicks' and
    /// intake's shared reads ([`Reader::run_pipelined`]) where the URL allows one.
    Pool(AnyPool, Option<Arc<PgOwn>>),
}

/// SQLite's read-only connections (each `None` once closed), with a permit per connection: a
/// caller holding a permit finds one of them free.
pub(crate) struct Lender {
    permits: Arc<Semaphore>,
    conns: Vec<Arc<Mutex<Option<AnyConnection>>>>,
    /// The connection read on the caller's thread, if the database is a file.
    inline: Option<direct::Shared>,
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
    /// SQLite's readers: these connections, and the one read on the caller's thread.
    pub(crate) fn own(conns: Vec<AnyConnection>, inline: Option<rusqlite::Connection>) -> Self {
        Reader::Own(Arc::new(Lender {
            inline: inline.map(direct::Shared::new),
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
            Reader::Pool(pool, _) => Ok(ReadConn::Pool(pool.acquire().await?)),
        }
    }

    /// Closes the connections (SQLite: each once it is given back) or the pool; later reads
    /// fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        match self {
            Reader::Own(lender) => {
                lender.permits.close();
                if let Some(inline) = &lender.inline {
                    inline.close();
                }
                for slot in &lender.conns {
                    let conn = slot.lock().await.take();
                    if let Some(conn) = conn {
                        let _ = conn.close().await;
                    }
                }
            }
            Reader::Pool(pool, own) => {
                if let Some(own) = own {
                    own.close();
                }
                pool.close().await
            }
        }
    }

    /// Runs a short read-only `batch` and returns its rows: on SQLite on the caller's thread
    /// (microseconds from SQLite's page cache, less than a hand-off to a connection's thread
    /// costs), unless there is no such connection or the database is busy; else on a
    /// connection taken in turn.
    pub(crate) async fn run(&self, batch: Batch) -> Result<Vec<BatchRow>, StoreError> {
        if let Reader::Own(lender) = self {
            if let Some(inline) = &lender.inline {
                if let Some(done) = inline.with(|c| Ok(direct::run_unless_busy(c, &batch)))? {
                    return done;
                }
            }
        }
        batch.fetch(&mut *self.take().await?).await
    }

    /// Runs a read-only `batch` on PostgreSQL's connection of grantry's own if there is one
    /// (tokio-postgres, its statement prepared once: [`super::pg_direct`]), else as
    /// [`Reader::run`]. For reads that run one at a time (clicks' and intake's,
    /// [`super::shared_read`]): the connection answers its statements in turn.
    pub(crate) async fn run_pipelined(&self, batch: Batch) -> Result<Vec<BatchRow>, StoreError> {
        match self {
            Reader::Pool(_, Some(own)) => own.run(batch).await,
            _ => self.run(batch).await,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sqlx::{AnyConnection, Connection};

    use super::super::batch::Batch;
    use super::super::{direct, Backend};
    use super::Reader;

    #[tokio::test]
    async fn a_busy_database_is_read_through_sqlx_which_waits_for_it() {
        super::super::install_drivers();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let setup = rusqlite::Connection::open(&path).unwrap();
        setup
            .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);")
            .unwrap();
        let url = format!("sqlite://{}?mode=ro", path.display());
        let mut sqlx_conn = AnyConnection::connect(&url).await.unwrap();
        sqlx::Executor::execute(&mut sqlx_conn, "PRAGMA busy_timeout = 10000;")
            .await
            .unwrap();
        let inline = direct::open_reader(path.to_str().unwrap()).unwrap();
        let reader = Reader::own(vec![sqlx_conn], Some(inline));
        let read = || {
            let mut b = Batch::new(Backend::Sqlite);
            b.push("SELECT x FROM t");
            b
        };
        assert_eq!(
            reader.run(read()).await.unwrap()[0].get::<i64>(0).unwrap(),
            7
        );

        // A writer's exclusive lock (in rollback-journal mode, where readers wait for writers;
        // in WAL a reader is busy only rarely, e.g. while the WAL is recovered): the inline read
        // gives way at once, sqlx's waits.
        setup
            .execute_batch("BEGIN EXCLUSIVE; UPDATE t SET x = 8;")
            .unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            setup.execute_batch("COMMIT").unwrap();
        });
        let started = Instant::now();
        let rows = reader.run(read()).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "it waited for the lock"
        );
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 8);
        holder.join().unwrap();
        reader.close().await;
    }
}
