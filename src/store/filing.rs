//! The ack path's write: filing a request (group commit). What it reads first is
//! [`super::intake_facts`].
//!
//! Filing a request is the one write every `/access` waits on. Instead of a transaction of a
//! dozen statements per request, [`Store::file`] hands the request's rows to the filer, which
//! writes every filing waiting at that moment in **one** transaction: one multi-row insert
//! per table and one move of the audit chain's head, one commit (one fsync). On SQLite the
//! filer is a thread with a connection of its own ([`super::direct`]) that runs the
//! statements itself, in the writer's turn; on PostgreSQL it is a task that sends each batch
//! as one pipeline on a connection of its own ([`super::pg_direct`]), the next one sent while
//! the one before is being written ([`super::in_flight`]), or through the writer's connection
//! where it has none (and on SQLite in memory). Each caller is answered only after
//! that commit, so an acked request is as durable as before; a batch that fails is written
//! again one filing at a time, so one bad filing fails alone. With one filing waiting the batch
//! is that filing: nothing waits for company.
//!
//! A batch is written in two round trips: the chain's head and the requests, then the rest
//! with the commit. When the filer knows the head from its own last commit, it writes the batch
//! as all new in one round trip, and the database checks the guess: an event's `seq`
//! already taken (another writer appended) or a request not inserted (a duplicate key, so its
//! decision's foreign key fails; in PostgreSQL's one statement, its insert) fails the batch,
//! which is rolled back and written the long way.
//! With several replicas on PostgreSQL a replica's kept head is often stale: such a batch costs
//! one wasted round trip.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::approvals::{self, NewApproval};
use super::audit::{self, NewAuditEvent};
use super::batch::{Batch, BatchRow};
use super::decisions::{self, DecisionRecord};
use super::direct;
use super::jobs::{self, Job};
use super::pg_direct::PgOwn;
use super::requests::{self, RequestRow};
use super::rulings::{self, Ruled, Ruling};
use super::tickets;
use super::writer::WriteConn;
use super::{Backend, Store, StoreError};
use crate::domain::{AccessRequest, RequestId, RequestState};

/// At most this many filings share a transaction.
pub(super) const MAX_BATCH: usize = 128;

/// How long a caller waits for the filer before a warning says so (it goes on waiting: what it
/// handed over may yet be committed). A batch takes milliseconds; this long means the database
/// is waiting on a lock or the filer is stuck.
const SLOW_FILER: Duration = Duration::from_secs(10);

/// The filer's answer to a caller; past [`SLOW_FILER`], a warning first. `warned` is when this
/// filer's last such warning was logged (seconds since the epoch): one each [`SLOW_FILER`] at
/// most, however many callers wait.
async fn filer_answer<T>(
    mut answer: oneshot::Receiver<Result<T, StoreError>>,
    what: &'static str,
    warned: &AtomicU64,
) -> Result<T, StoreError> {
    let answered = match tokio::time::timeout(SLOW_FILER, &mut answer).await {
        Ok(answered) => answered,
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let last = warned.load(Ordering::Relaxed);
            if now >= last + SLOW_FILER.as_secs()
                && warned
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    waited_secs = SLOW_FILER.as_secs(),
                    what,
                    "the filer has not written this yet: the database may be waiting on a lock \
                     (another replica's, or a session's left open)"
                );
            }
            answer.await
        }
    };
    answered.map_err(|_| StoreError::Closed)?
}

/// An audit event of a filing (about the filed request, at its time).
#[derive(Debug, Clone, PartialEq)]
pub struct FilingEvent {
    pub actor: String,
    pub action: String,
    pub detail: Value,
}

/// An approver asked at step 0; each gets a `PostApprovalCard` job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilingApproval {
    pub email: String,
    pub name: String,
    pub chat_user_id: Option<String>,
    pub on_behalf_of: Option<String>,
}

/// Everything a new request writes: the request, its policy decision, its audit events, its
/// approvers (and their cards) and its other jobs, all at `request.created_at_ms`.
#[derive(Debug, Clone)]
pub struct Filing {
    pub request: AccessRequest,
    /// A retried delivery of the same submission finds the first request by this key.
    pub idempotency_key: Option<String>,
    pub reply_channel: Option<String>,
    pub decision: DecisionRecord,
    pub events: Vec<FilingEvent>,
    pub approvals: Vec<FilingApproval>,
    /// Enqueued after the approvers' cards, in this order.
    pub jobs: Vec<Job>,
    pub max_attempts: i64,
    /// The service-desk ticket this request was filed from.
    pub ticket: Option<TicketLink>,
}

/// A ticket in a service desk that a request was filed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketLink {
    /// The `[service_desks.<name>]` it came through.
    pub desk: String,
    pub key: String,
    pub url: Option<String>,
}

/// What filing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    Created,
    /// The idempotency key was already used: nothing was written.
    Duplicate {
        id: RequestId,
        state: RequestState,
    },
}

/// Where a caller waits for its answer.
pub(super) type Reply<A> = oneshot::Sender<Result<A, StoreError>>;

/// What the filer writes: a new request, or an approver's ruling ([`super::rulings`]). Moved
/// once, into the filer's queue: boxing the larger would cost an allocation per filing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Work {
    File(Filing, Reply<Filed>),
    Rule(Ruling, Reply<Ruled>),
}

/// A connection of the filer's own, to open it with.
pub(crate) enum OwnConnection {
    /// SQLite's, on which it runs the statements itself ([`direct`]).
    Sqlite(rusqlite::Connection),
    /// PostgreSQL's, on which it sends a batch as one pipeline ([`super::pg_direct`]).
    Postgres(Box<PgOwn>),
}

/// The filer's connection of its own, shared with the handle that closes it.
#[derive(Clone)]
pub(super) enum Own {
    Sqlite(Arc<direct::Shared>),
    Postgres(Arc<PgOwn>),
}

/// The handle [`Store`] keeps to its filer.
#[derive(Clone)]
pub(crate) struct Filer {
    to_filer: mpsc::UnboundedSender<Work>,
    own: Option<Own>,
    /// When a caller last warned that this filer is slow ([`filer_answer`]).
    slow_warned: Arc<AtomicU64>,
}

impl Filer {
    /// Starts the filer, writing in `store`'s turn (a store without a filer of its own). Given
    /// SQLite's own connection for it ([`direct`]), the filer is a thread of its own that
    /// runs the statements itself; otherwise a task on the current runtime that runs them
    /// on PostgreSQL's own connection, if given, or through the writer's connection.
    pub(crate) fn start(store: Store, own: Option<OwnConnection>) -> Result<Self, StoreError> {
        let (to_filer, rx) = mpsc::unbounded_channel();
        let own = own.map(|own| match own {
            OwnConnection::Sqlite(conn) => Own::Sqlite(Arc::new(direct::Shared::new(conn))),
            OwnConnection::Postgres(pg) => Own::Postgres(Arc::from(pg)),
        });
        match own.clone() {
            None => {
                tokio::spawn(run(store, rx, None));
            }
            Some(Own::Postgres(pg)) => {
                tokio::spawn(super::in_flight::run(store, rx, pg));
            }
            Some(own @ Own::Sqlite(_)) => {
                let cannot = |e: std::io::Error| StoreError::Start(format!("the filer: {e}"));
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(cannot)?;
                std::thread::Builder::new()
                    .name("grantry-filer".into())
                    .spawn(move || runtime.block_on(run(store, rx, Some(own))))
                    .map_err(cannot)?;
            }
        }
        Ok(Filer {
            to_filer,
            own,
            slow_warned: Arc::default(),
        })
    }

    /// Has the filer write `ruling` with its next batch; returns after the commit. Fails with
    /// [`StoreError::Closed`], nothing written, if the filer is gone (its runtime ended).
    pub(crate) async fn rule(&self, ruling: Ruling) -> Result<Ruled, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.to_filer
            .send(Work::Rule(ruling, reply))
            .map_err(|_| StoreError::Closed)?;
        filer_answer(answer, "an approver's decision", &self.slow_warned).await
    }

    /// Closes SQLite's own connection (after the writer's, so no batch is using it); later
    /// filings fail with [`StoreError::Closed`]. PostgreSQL's likewise.
    pub(crate) fn close(&self) {
        match &self.own {
            Some(Own::Sqlite(own)) => own.close(),
            Some(Own::Postgres(own)) => own.close(),
            None => {}
        }
    }
}

/// The filer: every filing waiting, in one transaction, then every ruling waiting, in
/// another; ends when every sender is gone.
async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Work>, own: Option<Own>) {
    let own = own.as_ref();
    while let Some(first) = rx.recv().await {
        let (mut filings, mut rulings) = waiting(first, &mut rx);
        answer_all(&store, own, &mut filings).await;
        answer_all(&store, own, &mut rulings).await;
    }
}

/// Filings, then rulings, to write together.
pub(super) type Waiting = (Vec<(Filing, Reply<Filed>)>, Vec<(Ruling, Reply<Ruled>)>);

/// `first` and the work waiting after it, [`MAX_BATCH`] at most: its filings and its rulings.
pub(super) fn waiting(first: Work, rx: &mut mpsc::UnboundedReceiver<Work>) -> Waiting {
    let mut waiting = (Vec::new(), Vec::new());
    let mut next = Some(first);
    while let Some(work) = next.take() {
        hold(work, &mut waiting);
        if waiting.0.len() + waiting.1.len() < MAX_BATCH {
            next = rx.try_recv().ok();
        }
    }
    waiting
}

/// Adds `work` to what is `waiting`.
pub(super) fn hold(work: Work, (filings, rulings): &mut Waiting) {
    match work {
        Work::File(f, reply) => filings.push((f, reply)),
        Work::Rule(v, reply) => rulings.push((v, reply)),
    }
}

/// Writes `batch` together and answers each; if that fails, writes each alone (one of them is
/// at fault, or the database hiccuped), each its own answer.
pub(super) async fn answer_all<W: Written>(
    store: &Store,
    own: Option<&Own>,
    batch: &mut Vec<(W, Reply<W::Answer>)>,
) {
    if batch.is_empty() {
        return;
    }
    let items: Vec<&W> = batch.iter().map(|(w, _)| w).collect();
    let together = W::write(store, &items, own).await;
    match together {
        Ok(answers) => {
            for ((_, reply), a) in batch.drain(..).zip(answers) {
                let _ = reply.send(Ok(a));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some((_, reply)) = batch.pop() {
                let _ = reply.send(Err(e));
            }
        }
        Err(_) => {
            for (w, reply) in batch.drain(..) {
                let alone = W::write(store, &[&w], own).await.and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| StoreError::Corrupt("a write went unanswered".into()))
                });
                let _ = reply.send(alone);
            }
        }
    }
}

/// What the filer writes in batches.
pub(super) trait Written: Sized {
    /// What a caller is answered.
    type Answer;

    /// PostgreSQL: `items` as one batch written after `head` in one round trip, one statement
    /// that is its own transaction ([`Batch::fuse_as_one`]), and the chain's head after it;
    /// `None` where some could not be written so (two filings with one idempotency key, two
    /// rulings on one request).
    fn in_one(items: &[&Self], head: Head) -> Result<InOne, StoreError>;

    /// The answers to a batch of [`Written::in_one`] that committed, from its rows.
    fn answers(rows: &[BatchRow], items: usize) -> Result<Vec<Self::Answer>, StoreError>;

    /// Writes `items` in one transaction; one answer each, in order.
    fn write<'a>(
        store: &'a Store,
        items: &'a [&'a Self],
        own: Option<&'a Own>,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Answer>, StoreError>> + Send + 'a;
}

impl Written for Filing {
    type Answer = Filed;

    fn in_one(items: &[&Self], head: Head) -> Result<InOne, StoreError> {
        if !keys_distinct(items) {
            return Ok(None);
        }
        one_statement_batch(items, head).map(Some)
    }

    fn answers(rows: &[BatchRow], items: usize) -> Result<Vec<Filed>, StoreError> {
        one_statement_answers(rows, items)
    }

    fn write<'a>(
        store: &'a Store,
        items: &'a [&'a Self],
        own: Option<&'a Own>,
    ) -> impl std::future::Future<Output = Result<Vec<Filed>, StoreError>> + Send + 'a {
        store.write_filings(items, own)
    }
}

impl Written for Ruling {
    type Answer = Ruled;

    fn in_one(items: &[&Self], head: Head) -> Result<InOne, StoreError> {
        if !rulings::requests_distinct(items) {
            return Ok(None);
        }
        rulings::one_statement_batch(items, head).map(Some)
    }

    fn answers(_: &[BatchRow], items: usize) -> Result<Vec<Ruled>, StoreError> {
        Ok(vec![Ruled::Written; items])
    }

    fn write<'a>(
        store: &'a Store,
        items: &'a [&'a Self],
        own: Option<&'a Own>,
    ) -> impl std::future::Future<Output = Result<Vec<Ruled>, StoreError>> + Send + 'a {
        store.write_rulings(items, own)
    }
}

impl Store {
    /// Files a new request with everything it writes; returns after the commit. Concurrent
    /// callers share one transaction (see the module's doc).
    pub async fn file(&self, filing: Filing) -> Result<Filed, StoreError> {
        let Some(filer) = &self.filer else {
            return self.file_alone(filing).await;
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(Work::File(filing, _))) =
            filer.to_filer.send(Work::File(filing, reply))
        {
            // The filer is gone (its runtime ended): nothing was written, write it here.
            return self.file_alone(filing).await;
        }
        filer_answer(answer, "a new request", &filer.slow_warned).await
    }

    async fn file_alone(&self, filing: Filing) -> Result<Filed, StoreError> {
        let mut v = self.write_filings(&[&filing], None).await?;
        Ok(v.pop().unwrap_or(Filed::Created))
    }

    /// Writes filings in one transaction ([`Store::in_transaction`]); one answer per filing, in
    /// order. The transaction's `BEGIN` goes in the first batch and its `COMMIT` in the last,
    /// so filing a batch is two round trips in all (to sqlx's SQLite thread or to PostgreSQL;
    /// through sqlx's own begin and commit it was four), and usually one ([`stage_all_new`]).
    async fn write_filings(
        &self,
        filings: &[&Filing],
        own: Option<&Own>,
    ) -> Result<Vec<Filed>, StoreError> {
        let (backend, ends) = (self.backend, self.ends());
        // Taken, not read: it is put back only after a commit that leaves the head known.
        let head = self.take_filed_head().filter(|_| keys_distinct(filings));
        self.in_transaction(own, async |conn| {
            let guessed = match head {
                Some(head) => match stage_all_new(conn, backend, filings, head, ends).await {
                    // A count that does not add up came after the commit: not written again.
                    Err(e @ StoreError::Corrupt(_)) => Some(Err(e)),
                    // The head moved (another writer appended) or a request was a duplicate:
                    // undone, then written the long way. A rollback that fails ends here.
                    Err(e) => conn.run_sql("ROLLBACK").await.err().map(|_| Err(e)),
                    done => Some(done),
                },
                None => None,
            };
            match guessed {
                Some(done) => done,
                None => stage_filings(conn, backend, filings, ends).await,
            }
        })
        .await
    }

    /// Writes rulings in one transaction ([`rulings`]), as [`Store::write_filings`] does.
    pub(super) async fn write_rulings(
        &self,
        rulings: &[&Ruling],
        own: Option<&Own>,
    ) -> Result<Vec<Ruled>, StoreError> {
        let (backend, ends) = (self.backend, self.ends());
        // Taken, not read: the head moves, and the one kept is wrong from now on until the
        // commit says what it is. Known, on PostgreSQL, it lets the batch go in one round trip.
        let head = self.take_filed_head().filter(|_| {
            backend == Backend::Postgres && own.is_some() && rulings::requests_distinct(rulings)
        });
        self.in_transaction(own, async |conn| {
            if let Some(head) = head {
                match rulings::stage_all_won(conn, rulings, head, ends).await {
                    // A ruling lost or the head moved: undone, then written the long way. A
                    // rollback that fails ends here.
                    Err(e) if !matches!(e, StoreError::Corrupt(_)) => {
                        if conn.run_sql("ROLLBACK").await.is_err() {
                            return Err(e);
                        }
                    }
                    done => return done,
                }
            }
            rulings::stage(conn, backend, rulings, ends).await
        })
        .await
    }

    /// A transaction's `BEGIN` and `COMMIT`.
    fn ends(&self) -> (&'static str, &'static str) {
        match self.backend {
            Backend::Sqlite => ("BEGIN IMMEDIATE", "COMMIT"),
            Backend::Postgres => POSTGRES_ENDS,
        }
    }

    /// Runs `stage` (which begins the transaction and commits it) on `own` (the filer's
    /// connection) if given, else on the writer's connection through sqlx; on SQLite in the
    /// writer's turn (PostgreSQL's own connection needs none: its row locks order the writers,
    /// as on the pool's connections). After the commit the writer's turn ends, the chain's head
    /// `stage` returns is kept for the next batch, and the workers are woken if a job was
    /// enqueued; then the answers are returned. If `stage` fails (or its caller is cancelled)
    /// midway, the transaction is rolled back here (or by the writer's next holder; on
    /// PostgreSQL by closing the connection; on `own`, by the filer's next batch).
    async fn in_transaction<A>(
        &self,
        own: Option<&Own>,
        stage: impl AsyncFnOnce(&mut Target<'_>) -> Result<(Vec<A>, bool, (i64, String)), StoreError>,
    ) -> Result<Vec<A>, StoreError> {
        // The writer's turn, held until the commit (none on PostgreSQL's own connection).
        let mut writer = None;
        let mut conn = match own {
            Some(Own::Postgres(own)) => Target::Postgres(own),
            Some(Own::Sqlite(own)) => {
                writer = Some(self.write_conn().await?);
                Target::Own(own)
            }
            None => Target::Writer(writer.insert(self.write_conn().await?)),
        };
        conn.begin_in_doubt().await?;
        match stage(&mut conn).await {
            Ok((answers, enqueued, head)) => {
                conn.settled();
                // The writer's turn ends before the waiting callers are answered.
                drop(writer);
                self.put_filed_head(head);
                if enqueued {
                    self.jobs_ready.notify_waiters();
                }
                Ok(answers)
            }
            Err(e) => {
                if conn.run_sql("ROLLBACK").await.is_ok() {
                    conn.settled();
                }
                Err(e)
            }
        }
    }

    pub(super) fn take_filed_head(&self) -> Option<(i64, String)> {
        self.filed_head
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn put_filed_head(&self, head: (i64, String)) {
        *self.filed_head.lock().unwrap_or_else(|e| e.into_inner()) = Some(head);
    }
}

/// The audit chain's head: its last `seq` and hash.
pub(super) type Head = (i64, String);

/// A batch written in one round trip and the chain's head after it ([`Written::in_one`]).
pub(super) type InOne = Option<(Batch, Head)>;

/// PostgreSQL's `BEGIN` and `COMMIT`.
const POSTGRES_ENDS: (&str, &str) = ("BEGIN", "COMMIT");

/// Where a filing's statements run, in the writer's turn.
pub(super) enum Target<'a> {
    /// The filer's own SQLite connection ([`direct`]): run where the filer is.
    Own(&'a direct::Shared),
    /// The filer's own PostgreSQL connection ([`super::pg_direct`]): one pipeline a batch.
    Postgres(&'a PgOwn),
    /// The writer's connection, through sqlx (PostgreSQL where the filer has no connection of
    /// its own; SQLite in memory; a filing written without the filer).
    Writer(&'a mut WriteConn),
}

impl Target<'_> {
    /// Marks a transaction about to be begun by hand ([`WriteConn::set_in_doubt`]). On the
    /// filer's own connection there is no next holder to roll back one left open: an earlier
    /// batch whose rollback failed is rolled back now.
    async fn begin_in_doubt(&mut self) -> Result<(), StoreError> {
        match self {
            Target::Own(own) => own.with(|conn| {
                if conn.is_autocommit() {
                    Ok(())
                } else {
                    direct::execute(conn, "ROLLBACK")
                }
            })?,
            Target::Postgres(own) => own.begin_in_doubt().await?,
            Target::Writer(w) => w.set_in_doubt(true),
        }
        Ok(())
    }

    /// The transaction ended (committed or rolled back).
    fn settled(&mut self) {
        match self {
            Target::Writer(w) => w.set_in_doubt(false),
            Target::Postgres(own) => own.settled(),
            Target::Own(_) => {}
        }
    }

    /// Runs `batch`; returns its rows.
    pub(super) async fn run(&mut self, batch: Batch) -> Result<Vec<BatchRow>, StoreError> {
        match self {
            Target::Own(own) => own.with(|conn| direct::run(conn, &batch)),
            Target::Postgres(own) => own.run(batch).await,
            Target::Writer(w) => batch.fetch(w).await,
        }
    }

    /// Runs one statement with no values.
    async fn run_sql(&mut self, sql: &'static str) -> Result<(), StoreError> {
        match self {
            Target::Own(own) => own.with(|conn| direct::execute(conn, sql)),
            Target::Postgres(own) => own.execute(sql).await,
            Target::Writer(w) => {
                sqlx::Executor::execute(&mut ***w, sql).await?;
                Ok(())
            }
        }
    }
}

/// Whether no two filings share an idempotency key (else the second is a duplicate).
fn keys_distinct(filings: &[&Filing]) -> bool {
    let mut keys = HashSet::new();
    filings
        .iter()
        .filter_map(|f| f.idempotency_key.as_deref())
        .all(|k| keys.insert(k))
}

/// When the chain's head is known from the filer's last commit: every filing written as new, in
/// one batch (one round trip, `BEGIN` to `COMMIT`), with no read first. The guesses are checked
/// by the database: if the head is not the one known (another writer appended since; on
/// PostgreSQL, a batch before it on the filer's connection rolled back), the head's lock fails
/// on PostgreSQL ([`audit::push_read_head_expecting`]) and the first event's `seq` (the primary
/// key) is taken on SQLite; if a request's idempotency key was taken, its row is not inserted and
/// its decision's foreign key fails. Either error fails the batch, whose caller then rolls it
/// back and writes it the long way ([`stage_filings`]). Returns what [`stage_filings`] returns.
async fn stage_all_new(
    conn: &mut Target<'_>,
    backend: Backend,
    filings: &[&Filing],
    head: (i64, String),
    ends: (&'static str, &'static str),
) -> Result<(Vec<Filed>, bool, (i64, String)), StoreError> {
    let (batch, head) = all_new_batch(backend, filings, head, ends)?;
    let enqueued = batch.enqueues();
    let rows = conn.run(batch).await?;
    Ok((all_new_answers(&rows, filings.len())?, enqueued, head))
}

/// The batch of [`stage_all_new`], and the chain's head after it.
fn all_new_batch(
    backend: Backend,
    filings: &[&Filing],
    head: (i64, String),
    (begin, commit): (&'static str, &'static str),
) -> Result<(Batch, (i64, String)), StoreError> {
    let mut batch = Batch::new(backend);
    batch.push(begin);
    // Locked, as every appender locks it first (PostgreSQL: `FOR UPDATE`): with the row locks
    // taken in the same order, two replicas' batches cannot deadlock on each other's new
    // idempotency keys.
    audit::push_read_head_expecting(&mut batch, &head)?;
    requests::push_insert_requests(&mut batch, &request_rows(filings))?;
    let writes = batch.len();
    let head = push_created(&mut batch, filings, head)?;
    batch.fuse_writes(writes);
    batch.push(commit);
    Ok((batch, head))
}

/// PostgreSQL, on the filer's own connection: [`all_new_batch`] as **one** statement, which is
/// its own transaction ([`Batch::fuse_as_one`]): the chain's head locked and checked against
/// `head` first, then the requests inserted (each failing on an idempotency key taken), then
/// everything else the filings write. One execution, one answer and no `BEGIN` or `COMMIT`
/// where the transaction's five statements were each one, with an answer and a flush each
/// (docs/benchmarks.md). A guess that fails fails the statement, which is rolled back as a
/// whole. Returns the batch and the chain's head after it.
fn one_statement_batch(filings: &[&Filing], head: Head) -> Result<(Batch, Head), StoreError> {
    let mut batch = Batch::new(Backend::Postgres);
    audit::push_read_head_expecting(&mut batch, &head)?;
    requests::push_insert_new_requests_after(&mut batch, &request_rows(filings), "head")?;
    let head = push_created(&mut batch, filings, head)?;
    batch.fuse_as_one("head")?;
    Ok((batch, head))
}

/// The answers of [`one_statement_batch`]'s filings, committed, from its rows: one per request
/// created, which is every one (a key taken fails the statement).
fn one_statement_answers(rows: &[BatchRow], filings: usize) -> Result<Vec<Filed>, StoreError> {
    all_created(rows.len(), filings)
}

/// The answers of [`all_new_batch`]'s filings, committed, from its rows: the head's row, then
/// one per request created.
fn all_new_answers(rows: &[BatchRow], filings: usize) -> Result<Vec<Filed>, StoreError> {
    all_created(rows.len().saturating_sub(1), filings)
}

/// `filings` answers [`Filed::Created`] if `created` requests were, which a batch written as
/// all new must have done.
fn all_created(created: usize, filings: usize) -> Result<Vec<Filed>, StoreError> {
    if created != filings {
        // Cannot happen with the writer's foreign keys on; committed, so said, not hidden.
        return Err(StoreError::Corrupt(format!(
            "{created} of {filings} filings created in a batch written as all new"
        )));
    }
    Ok(vec![Filed::Created; filings])
}

fn request_rows<'a>(filings: &[&'a Filing]) -> Vec<RequestRow<'a>> {
    filings
        .iter()
        .map(|f| RequestRow {
            request: &f.request,
            idempotency_key: f.idempotency_key.as_deref(),
            reply_channel: f.reply_channel.as_deref(),
        })
        .collect()
}

/// Writes `filings`' rows on `conn`; one answer per filing, in order, and whether a job was
/// enqueued, and the chain's head after them. In its own transaction, `ends` (`BEGIN …`,
/// `COMMIT`): begun in the first batch and
/// committed at the end of the second (after it, when duplicates' first requests must be read
/// back before every answer is known).
///
/// Two batches ([`Batch`]: one round trip each): first the chain's head and
/// the requests (each unless its idempotency key is taken), then, for the requests created, their
/// decisions, audit events (and the head's move), approvers, the approvers' cards and the other
/// jobs, with the first requests of any duplicates read back.
async fn stage_filings(
    conn: &mut Target<'_>,
    backend: Backend,
    filings: &[&Filing],
    (begin, commit): (&'static str, &'static str),
) -> Result<(Vec<Filed>, bool, (i64, String)), StoreError> {
    let rows = request_rows(filings);
    let mut first = Batch::new(backend);
    first.push(begin);
    audit::push_read_head(&mut first);
    requests::push_insert_requests(&mut first, &rows)?;
    let got = conn.run(first).await?;
    let head = audit::read_head(got.first())?;
    let created: HashSet<String> = got
        .iter()
        .skip(1)
        .map(|r| r.get::<String>(0))
        .collect::<Result<_, _>>()?;
    let (new, dup): (Vec<&Filing>, Vec<&Filing>) = filings
        .iter()
        .partition(|f| created.contains(f.request.id.as_str()));

    let mut rest = Batch::new(backend);
    let head = push_created(&mut rest, &new, head)?;

    // Another delivery got there first (earlier, or earlier in this batch).
    let keys: Vec<&str> = dup
        .iter()
        .filter_map(|f| f.idempotency_key.as_deref())
        .collect();
    if !keys.is_empty() {
        rest.push_values(
            "SELECT idempotency_key, id, state FROM requests WHERE idempotency_key IN ",
            1,
            keys.len(),
            "",
        );
        for k in &keys {
            rest.bind(*k)?;
        }
    }
    // Every answer is known now unless there are duplicates: then the commit waits for them.
    let enqueued = rest.enqueues();
    if keys.is_empty() {
        rest.push(commit);
    }
    let mut firsts: HashMap<String, (String, String)> = HashMap::new();
    if !rest.is_empty() {
        for r in conn.run(rest).await? {
            firsts.insert(r.get(0)?, (r.get(1)?, r.get(2)?));
        }
    }
    let answers = filings
        .iter()
        .map(|f| {
            if created.contains(f.request.id.as_str()) {
                return Ok(Filed::Created);
            }
            let key = f.idempotency_key.as_deref().unwrap_or_default();
            let (id, state) = firsts.get(key).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "request {} neither created nor found",
                    f.request.id
                ))
            })?;
            Ok(Filed::Duplicate {
                id: RequestId::from_stored(id.clone()),
                state: RequestState::parse(state).unwrap_or(RequestState::Submitted),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    if !keys.is_empty() {
        conn.run_sql(commit).await?;
    }
    Ok((answers, enqueued, head))
}

/// Adds what `new` filings (their requests created) write besides their requests to `b`: their
/// decisions, audit events after `head` (and the head's move), approvers, the approvers' cards
/// and the other jobs. Returns the chain's head after them.
fn push_created(
    b: &mut Batch,
    new: &[&Filing],
    head: (i64, String),
) -> Result<(i64, String), StoreError> {
    if new.is_empty() {
        return Ok(head);
    }
    let decisions: Vec<&DecisionRecord> = new.iter().map(|f| &f.decision).collect();
    decisions::push_insert_decisions(b, &decisions)?;

    let events: Vec<NewAuditEvent<'_>> = new
        .iter()
        .flat_map(|f| {
            f.events.iter().map(|e| NewAuditEvent {
                actor: &e.actor,
                action: &e.action,
                request_id: Some(f.request.id.as_str()),
                grant_id: None,
                detail: e.detail.clone(),
            })
        })
        .collect();
    let times = new
        .iter()
        .flat_map(|f| f.events.iter().map(|_| f.request.created_at_ms));
    let timed: Vec<(i64, &NewAuditEvent<'_>)> = times.zip(&events).collect();
    let head = audit::push_append(b, head, &timed)?;

    let asked: Vec<NewApproval<'_>> = new
        .iter()
        .flat_map(|f| {
            f.approvals.iter().map(move |a| NewApproval {
                request_id: &f.request.id,
                step: 0,
                email: &a.email,
                name: &a.name,
                platform: &f.request.platform,
                chat_user_id: a.chat_user_id.as_deref(),
                on_behalf_of: a.on_behalf_of.as_deref(),
            })
        })
        .collect();
    // The approvers, their cards (ids from the rows just inserted), then the filings' own jobs.
    let carded: Vec<(&str, i64, i64)> = new
        .iter()
        .filter(|f| !f.approvals.is_empty())
        .map(|f| {
            (
                f.request.id.as_str(),
                f.request.created_at_ms,
                f.max_attempts,
            )
        })
        .collect();
    match b.backend() {
        // One statement, its parameters well under PostgreSQL's 65,535.
        Backend::Postgres if !asked.is_empty() && asked.len() <= 1_000 && carded.len() <= 1_000 => {
            jobs::push_insert_approvals_with_cards(b, &asked, &carded)?;
        }
        _ => {
            approvals::push_insert_approvals(b, &asked, "")?;
            jobs::push_enqueue_first_cards(b, &carded)?;
        }
    }
    let own: Vec<(&Job, i64, i64)> = new
        .iter()
        .flat_map(|f| {
            f.jobs
                .iter()
                .map(|j| (j, f.request.created_at_ms, f.max_attempts))
        })
        .collect();
    jobs::push_enqueue_rows(b, &own)?;

    for f in new {
        if let Some(t) = &f.ticket {
            tickets::push_link_inbound_ticket(
                b,
                f.request.id.as_str(),
                &t.desk,
                &t.key,
                t.url.as_deref(),
                f.request.created_at_ms,
            )?;
        }
    }
    Ok(head)
}
