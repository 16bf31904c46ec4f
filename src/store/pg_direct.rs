//! PostgreSQL's filer connection (tokio-postgres), on which a filing [`Batch`] is sent as one
//! pipeline of prepared statements ([`super::filing`]); clicks' and intake's shared reads have
//! one too ([`super::reader::Reader::run_pipelined`]).
//!
//! Through sqlx a batch goes as one simple query with its values written in as literals
//! ([`super::batch`]), so PostgreSQL parses and plans each of its statements every time: about
//! a third of its time for a one-filing batch (docs/benchmarks.md). Here each statement is
//! prepared once per connection (its text has typed parameters, `$1::text`, so other values
//! and `NULL`s reuse it) and a batch's executions go out together, `BEGIN` to `COMMIT` (or the
//! one statement a batch guessed right is), in one round trip. tokio-postgres logs a
//! statement's parameters at debug level; the binary sets `tokio_postgres=info` after
//! `RUST_LOG`'s directives (`main.rs`).
//!
//! The connection is opened at start and again, at the next batch, after it has ended (the
//! server restarted, the network dropped it), until the store closes it. It takes the URL's
//! `sslmode` as sqlx's pool does for `disable`, `prefer` and `require` ([`super::pg_tls`]); a
//! URL tokio-postgres cannot read (`verify-full`, `sslrootcert`, sqlx's own parameters) leaves
//! the filer writing through the pool.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{join_all, maybe_done, MaybeDone};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Statement};

use super::batch::{Batch, BatchRow, PgParam};
use super::pg_tls::MakeRustls;
use super::StoreError;

/// Prepared statements kept per connection (a filing's dozen, times the multi-row inserts'
/// sizes in use); past it they are all dropped and prepared again as used.
const STATEMENT_CACHE: usize = 1024;

/// How long opening the connection may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch's answers to come ([`PgOwn::send`]): its rows in order, or its first error. They are
/// read off the connection by a task of their own as they arrive, whether or not this is polled.
pub(crate) struct Sent(oneshot::Receiver<Result<Vec<BatchRow>, StoreError>>);

type BoxedAnswers = Pin<Box<dyn Future<Output = Result<Vec<BatchRow>, StoreError>> + Send>>;

impl Future for Sent {
    type Output = Result<Vec<BatchRow>, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(answers)) => Poll::Ready(answers),
            // The runtime is shutting down: its tasks are being dropped.
            Poll::Ready(Err(_)) => Poll::Ready(Err(StoreError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The filer's connection: opened when needed, with the statements prepared on it.
pub(crate) struct PgOwn {
    config: Config,
    /// `None` where no TLS is asked for (`sslmode=disable`) or possible (a Unix socket).
    tls: Option<MakeRustls>,
    open: Mutex<Option<Open>>,
    /// A transaction was begun by hand and not yet known to be over.
    in_doubt: AtomicBool,
    /// The store closed it: later batches fail with [`StoreError::Closed`].
    closed: AtomicBool,
}

struct Open {
    client: Arc<Client>,
    statements: HashMap<String, Statement>,
}

/// Whether `url`'s every host is this machine: a Unix socket, `localhost` or a loopback address
/// (no host is libpq's default, the socket). `false` for a URL tokio-postgres does not read,
/// left to the connection to refuse.
pub(crate) fn url_on_this_host(url: &str) -> bool {
    let Ok(config) = Config::from_str(url) else {
        return false;
    };
    config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

impl PgOwn {
    /// For `url`, if tokio-postgres can read it; `None` otherwise (sqlx's own parameters,
    /// `verify-full`), so the filer writes (and clicks are read) through sqlx. `name` is its
    /// `application_name` unless the URL gives one.
    pub(crate) fn for_url(url: &str, name: &str) -> Option<Self> {
        let mut config = match Config::from_str(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(
                    reason = %e,
                    "PostgreSQL: filings go through the pool (the URL is not one the pipelined connection reads)"
                );
                return None;
            }
        };
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, Host::Unix(_)));
        let tls = if config.get_ssl_mode() == SslMode::Disable || unix_only {
            None
        } else {
            match MakeRustls::unverified() {
                Ok(tls) => Some(tls),
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL: filings go through the pool (no TLS for the pipelined connection)");
                    return None;
                }
            }
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(name);
        }
        // Its statements are planned as loops of key lookups (store/rulings.rs), after any
        // options the URL gives.
        let options = match config.get_options() {
            Some(given) => format!("{given} {}", super::rulings::key_lookup_options()),
            None => super::rulings::key_lookup_options(),
        };
        config.options(&options);
        Some(PgOwn {
            config,
            tls,
            open: Mutex::new(None),
            in_doubt: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// [`PgOwn::for_url`], connected; `None` when the URL allows none or it cannot connect (a
    /// warning then says what is done `instead`: the same work through the pool).
    pub(crate) async fn open(url: &str, name: &str, instead: &str) -> Option<Self> {
        let own = Self::for_url(url, name)?;
        match own.connect().await {
            Ok(()) => Some(own),
            Err(e) => {
                tracing::warn!(error = %e, connection = name, "PostgreSQL: a connection of grantry's own could not open; {instead}");
                None
            }
        }
    }

    /// Opens the connection now (at start, so a URL that cannot connect is known early).
    pub(crate) async fn connect(&self) -> Result<(), StoreError> {
        self.client().await.map(drop)
    }

    /// Closes the connection for good: later batches fail with [`StoreError::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        drop(self.lock().take());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open client, opening it if there is none or it has closed.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        if let Some(open) = self.lock().as_ref().filter(|o| !o.client.is_closed()) {
            return Ok(open.client.clone());
        }
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(pg_error)?;
                drive(connection);
                client
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(pg_error)?;
                drive(connection);
                client
            }
        };
        let client = Arc::new(client);
        *self.lock() = Some(Open {
            client: client.clone(),
            statements: HashMap::new(),
        });
        self.in_doubt.store(false, Ordering::Relaxed);
        Ok(client)
    }

    /// Marks a transaction about to be begun by hand; one left open by an earlier batch whose
    /// rollback failed is rolled back first.
    pub(crate) async fn begin_in_doubt(&self) -> Result<(), StoreError> {
        if self.in_doubt.swap(true, Ordering::Relaxed) {
            self.execute("ROLLBACK").await?;
        }
        Ok(())
    }

    /// The transaction ended (committed or rolled back).
    pub(crate) fn settled(&self) {
        self.in_doubt.store(false, Ordering::Relaxed);
    }

    /// Runs one statement with no values (`ROLLBACK`, `COMMIT`).
    pub(crate) async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.batch_execute(sql).await.map_err(pg_error)
    }

    /// Runs `batch`'s statements as one pipeline; returns the rows they return, in order. A
    /// statement that fails fails the batch with its error (those after it fail too, in the
    /// aborted transaction, and a `COMMIT` among them rolls it back).
    pub(crate) async fn run(&self, batch: Batch) -> Result<Vec<BatchRow>, StoreError> {
        self.start(batch).await?.await
    }

    /// Sends `batch`'s statements as one pipeline and returns at once, with what answers them
    /// to come ([`Sent`]): a batch sent after it, on this connection, runs after it. Nothing
    /// is sent unless every statement can be (its values of the types it was prepared with), so
    /// a `COMMIT` never follows a statement left out.
    ///
    /// Its answers are read by a task of its own. tokio-postgres stops reading the socket while
    /// an answer waits to be taken (a few messages per statement), and with it every statement
    /// queued behind: a batch whose answers nobody read while its sender waited for a later
    /// one on this connection (a statement being prepared, a batch written the long way) would
    /// wait forever.
    pub(crate) async fn send(&self, batch: Batch) -> Result<Sent, StoreError> {
        let answers = self.start(batch).await?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(answers.await);
        });
        Ok(Sent(rx))
    }

    /// Sends `batch`'s statements (as [`PgOwn::send`]) and returns the future of their
    /// answers, polled once: every execution is queued to the connection in order.
    async fn start(&self, batch: Batch) -> Result<BoxedAnswers, StoreError> {
        let client = self.client().await?;
        let statements = batch.into_pg_statements()?;
        let texts: Vec<String> = statements.iter().map(|s| s.prepared_sql()).collect();
        let prepared = self.prepare(&client, &texts).await?;
        let params: Vec<Vec<PgParam>> = statements.into_iter().map(|s| s.into_params()).collect();
        let fits = prepared.iter().zip(&params).all(|(statement, values)| {
            statement.params().len() == values.len()
                && statement
                    .params()
                    .iter()
                    .zip(values)
                    .all(|(ty, v)| v.type_name() == ty.name())
        });
        if !fits {
            return Err(StoreError::Corrupt(
                "a statement's values are not of the types it was prepared with".into(),
            ));
        }
        let answers = async move {
            let params: Vec<Vec<&(dyn ToSql + Sync)>> = params
                .iter()
                .map(|values| values.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
                .collect();
            // Each execution is queued to the connection at its first poll, so they are polled
            // in order: all are written out before any answer is read, and in the batch's order.
            let answers = in_order(
                prepared
                    .iter()
                    .zip(&params)
                    .map(|(statement, params)| client.query(statement, params)),
            )
            .await;
            if answers.len() != prepared.len() {
                return Err(StoreError::Corrupt(
                    "a statement of a batch went unanswered".into(),
                ));
            }
            let mut rows = Vec::new();
            for answer in answers {
                rows.extend(answer.map_err(pg_error)?.into_iter().map(BatchRow::Pg));
            }
            Ok(rows)
        };
        // Polled once here, so that every execution is queued before this returns.
        let mut answers: BoxedAnswers = Box::pin(answers);
        let first = poll_fn(|cx| Poll::Ready(answers.as_mut().poll(cx))).await;
        Ok(match first {
            Poll::Ready(done) => Box::pin(std::future::ready(done)),
            Poll::Pending => answers,
        })
    }

    /// Each of `texts` prepared on `client`: from the cache, the rest prepared together.
    async fn prepare(
        &self,
        client: &Arc<Client>,
        texts: &[String],
    ) -> Result<Vec<Statement>, StoreError> {
        let missing: Vec<&String> = {
            let mut open = self.lock();
            let cached = open
                .as_mut()
                .filter(|o| Arc::ptr_eq(&o.client, client))
                .map(|o| {
                    if o.statements.len() > STATEMENT_CACHE {
                        o.statements.clear();
                    }
                    &o.statements
                });
            let mut missing: Vec<&String> = texts
                .iter()
                .filter(|t| cached.is_none_or(|c| !c.contains_key(*t)))
                .collect();
            missing.sort();
            missing.dedup();
            missing
        };
        let new = join_all(missing.iter().map(|t| client.prepare(t))).await;
        let mut open = self.lock();
        let Some(open) = open.as_mut().filter(|o| Arc::ptr_eq(&o.client, client)) else {
            return Err(StoreError::Closed);
        };
        for (text, statement) in missing.into_iter().zip(new) {
            open.statements
                .insert(text.clone(), statement.map_err(pg_error)?);
        }
        texts
            .iter()
            .map(|t| {
                open.statements
                    .get(t)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("a statement prepared was not kept".into()))
            })
            .collect()
    }
}

/// Every future's output, in order, each first polled in order (what `join_all` does too, but
/// as a detail of how it is written: past 30 futures it takes another way).
async fn in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<MaybeDone<F>>>> = futures
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    poll_fn(|cx| {
        let mut done = true;
        for f in &mut futures {
            done &= f.as_mut().poll(cx).is_ready();
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    futures
        .iter_mut()
        .filter_map(|f| f.as_mut().take_output())
        .collect()
}

/// Runs `connection` (it reads and writes the socket for its client) until it ends. The
/// server's notices are logged (code and message) but one: a `ROLLBACK` after a batch whose
/// pipeline failed, and whose `COMMIT` then ended the transaction, is told there is none (25P01),
/// which is expected.
fn drive<S, T>(mut connection: Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let ended = poll_fn(|cx| loop {
            match connection.poll_message(cx) {
                Poll::Ready(Some(Ok(AsyncMessage::Notice(notice)))) => {
                    if notice.code() != &SqlState::NO_ACTIVE_SQL_TRANSACTION {
                        tracing::info!(
                            code = notice.code().code(),
                            "PostgreSQL: {}: {}",
                            notice.severity(),
                            notice.message()
                        );
                    }
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        if let Err(e) = ended {
            tracing::warn!(error = %pg_error(e), "PostgreSQL: the filer's connection ended");
        }
    });
}

/// PostgreSQL's error as the store's: its code and message, never a bound value (the detail
/// that can quote a key is left out).
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Postgres(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Postgres(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::super::batch::Batch;
    use super::super::Backend;
    use super::{in_order, PgOwn};

    #[test]
    fn the_filers_connection_plans_key_lookups_after_the_urls_own_options() {
        let own = PgOwn::for_url(
            "postgres://u@127.0.0.1:5432/db?sslmode=disable&options=-c%20statement_timeout%3D5000",
            "grantry-filer",
        )
        .expect("a URL tokio-postgres reads");
        assert_eq!(
            own.config.get_options(),
            Some(
                "-c statement_timeout=5000 -c enable_seqscan=off -c enable_hashjoin=off \
                 -c enable_mergejoin=off"
            )
        );
        let own =
            PgOwn::for_url("postgres://u@127.0.0.1:5432/db", "grantry-reader").expect("a URL");
        assert_eq!(own.config.get_application_name(), Some("grantry-reader"));
        assert_eq!(
            own.config.get_options(),
            Some("-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off")
        );
    }

    /// A batch whose answers nobody reads yet does not hold up the batch behind it. Runs on
    /// the server `GRANTRY_TEST_POSTGRES` names (scripts/test's PostgreSQL pass).
    #[tokio::test]
    async fn answers_nobody_reads_yet_do_not_hold_up_the_batch_behind() {
        let Some(url) = std::env::var("GRANTRY_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty() && u != "skip")
        else {
            return;
        };
        let own = PgOwn::for_url(&url, "grantry-test").expect("a URL tokio-postgres reads");
        own.connect().await.unwrap();
        // 100 kB of rows: far more than tokio-postgres holds for a statement nobody reads.
        let mut big = Batch::new(Backend::Postgres);
        big.push("SELECT repeat('x', 100) FROM generate_series(1, 1000)");
        let unread = own.send(big).await.unwrap();
        let mut next = Batch::new(Backend::Postgres);
        next.push("SELECT 7::int8");
        let rows = tokio::time::timeout(Duration::from_secs(10), own.run(next))
            .await
            .expect("the batch behind was answered")
            .unwrap();
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 7);
        assert_eq!(unread.await.unwrap().len(), 1000);
        own.close();
    }

    #[tokio::test]
    async fn in_order_first_polls_each_in_order_and_answers_in_order() {
        // More than join_all's 30, finishing in reverse order.
        let first_polled = Arc::new(Mutex::new(Vec::new()));
        let futures = (0..40_u64).map(|i| {
            let first_polled = first_polled.clone();
            async move {
                first_polled.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(40 - i)).await;
                i
            }
        });
        let all: Vec<u64> = (0..40).collect();
        assert_eq!(in_order(futures).await, all);
        assert_eq!(*first_polled.lock().unwrap(), all);
    }
}
