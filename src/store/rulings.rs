//! An approver's click written by the filer (group commit), as a new request is.
//!
//! A click on a single-step request is checked on a read ([`Store::read_for_click`]: the
//! request and the clicker's pending slot, outside any transaction), then handed to the filer as
//! a [`Ruling`]: every ruling waiting at that moment is written in **one** transaction, one
//! commit. The checks made on the read hold at the commit because the filer's compare-and-set
//! moves the request only while it is still `pending_approval` **and** the clicker's slot is
//! still pending ([`requests::push_move_if_slot_pending`]); a ruling that loses it (another
//! click, a time-out, a cancel came first) writes nothing and is answered [`Ruled::Lost`], and
//! its caller decides the click the long way, in a transaction of its own, which refuses it and
//! audits why. Two rulings on one request in one batch: the first moves it, the second loses.
//!
//! A batch is two round trips (to the filer's own connection, [`super::filing`]): `BEGIN`, every
//! compare-and-set and the chain's head; then, for the rulings that won, their decisions,
//! slots, audit events (and the head's move) and jobs, with the `COMMIT`. On PostgreSQL, when
//! the filer knows the chain's head, it is one: every ruling written as won, the database
//! checking the guess ([`stage_all_won`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use super::approvals::{self, ApprovalRecord};
use super::audit::{self, NewAuditEvent};
use super::batch::{Batch, BatchRow};
use super::decisions::{self, DecisionRecord};
use super::filing::{FilingEvent, Target};
use super::jobs::{self, Job};
use super::reader::Reader;
use super::requests;
use super::shared_read::SharedRead;
use super::{Backend, Store, StoreError};
use crate::domain::{AccessDuration, AccessRequest, RequestId, RequestState};

/// An approver's decision on a request waiting at its last (or only) step: what it writes if
/// the request is still waiting and the approver's slot still pending.
#[derive(Debug, Clone)]
pub struct Ruling {
    pub request_id: RequestId,
    /// The clicker's slot: it gets `outcome`, the request's other pending slots are closed.
    pub approval_id: i64,
    /// `provisioning` (approved) or `rejected`.
    pub to: RequestState,
    /// The slot's outcome: `approved` or `rejected`.
    pub outcome: &'static str,
    /// Approved for less time than asked.
    pub shorter: Option<AccessDuration>,
    pub decision: DecisionRecord,
    /// About the request, at `at_ms`, in order.
    pub events: Vec<FilingEvent>,
    pub jobs: Vec<Job>,
    pub at_ms: i64,
    pub max_attempts: i64,
}

impl Ruling {
    /// Its events as the chain takes them.
    pub(crate) fn audit_events(&self) -> Vec<NewAuditEvent<'_>> {
        self.events
            .iter()
            .map(|e| NewAuditEvent {
                actor: &e.actor,
                action: &e.action,
                request_id: Some(self.request_id.as_str()),
                grant_id: None,
                detail: e.detail.clone(),
            })
            .collect()
    }
}

/// What became of a ruling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ruled {
    /// Written and committed.
    Written,
    /// The request was no longer waiting, or the slot no longer pending: nothing written.
    Lost,
}

/// Adds what rulings (on distinct requests, each past its compare-and-set) write to `b`, but
/// their audit events: shorter durations, each decided slot with its outcome and its request's
/// other pending slots closed (SQLite: one statement a ruling, found by its request;
/// PostgreSQL: one for all, each request's slots looked up by its id,
/// [`approvals::push_close_approvals_of`]), then the decisions and the jobs, one statement each
/// for all of them.
pub(crate) fn push_writes(b: &mut Batch, rulings: &[&Ruling]) -> Result<(), StoreError> {
    for v in rulings {
        if let Some(d) = v.shorter {
            requests::push_set_request_duration(b, &v.request_id, d, v.at_ms)?;
        }
        if b.backend() == Backend::Sqlite {
            approvals::push_close_approvals(b, &v.request_id, v.approval_id, v.outcome, v.at_ms)?;
        }
    }
    if b.backend() == Backend::Postgres && !rulings.is_empty() {
        let slots: Vec<approvals::SlotRuling<'_>> = rulings
            .iter()
            .map(|v| approvals::SlotRuling {
                request_id: v.request_id.as_str(),
                decided_id: v.approval_id,
                outcome: v.outcome,
                at_ms: v.at_ms,
            })
            .collect();
        approvals::push_close_approvals_of(b, &slots)?;
    }
    let decisions: Vec<&DecisionRecord> = rulings.iter().map(|v| &v.decision).collect();
    decisions::push_insert_decisions(b, &decisions)?;
    let rows: Vec<(&Job, i64, i64)> = rulings
        .iter()
        .flat_map(|v| v.jobs.iter().map(|j| (j, v.at_ms, v.max_attempts)))
        .collect();
    jobs::push_enqueue_rows(b, &rows)
}

/// What a click's read found: the request and the clicker's pending slot on it, if any;
/// `None` when there is no such request.
pub type ClickRead = Option<(AccessRequest, Option<ApprovalRecord>)>;

/// At most this many clicks share a read.
const MAX_CLICK_READS: usize = 64;

/// One click's question: its request and who clicked, where.
#[derive(Debug)]
pub(crate) struct ClickQuestion {
    id: String,
    platform: String,
    chat_user_id: String,
}

/// Clicks waiting to be read together (PostgreSQL).
pub(crate) type ClickQueue = SharedRead<ClickQuestion, ClickRead>;

/// A queue for clicks' reads.
pub(crate) fn click_queue() -> ClickQueue {
    SharedRead::new(MAX_CLICK_READS)
}

/// `table`'s `cols` (a comma-separated list), each prefixed with `alias.`.
fn prefixed(alias: &str, cols: &str) -> String {
    cols.split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads one click, on SQLite's connection on the caller's thread.
async fn read_one_click(
    reader: &Reader,
    id: &RequestId,
    platform: &str,
    chat_user_id: &str,
) -> Result<ClickRead, StoreError> {
    static READ: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {}, {} FROM requests r LEFT JOIN approvals a ON a.request_id = r.id \
             AND a.platform = ? AND a.chat_user_id = ? AND a.state = 'pending' \
             WHERE r.id = ? ORDER BY a.step LIMIT 1",
            prefixed("r", requests::COLUMNS),
            prefixed("a", approvals::COLUMNS),
        )
    });
    let mut b = Batch::new(Backend::Sqlite);
    b.push(&READ);
    b.bind(platform)?;
    b.bind(chat_user_id)?;
    b.bind(id.as_str())?;
    let rows = reader.run(b).await?;
    rows.first().map(|row| click_from_row(row, 0)).transpose()
}

/// The request and the slot of a click's read, from column `at` of `row` on.
fn click_from_row(
    row: &BatchRow,
    at: usize,
) -> Result<(AccessRequest, Option<ApprovalRecord>), StoreError> {
    let request = requests::from_batch_row(row, at)?;
    let slot_at = at + requests::COLUMN_COUNT;
    let slot = match row.get::<Option<i64>>(slot_at)? {
        Some(_) => Some(approvals::from_batch_row(row, slot_at)?),
        None => None,
    };
    Ok((request, slot))
}

/// The query reading `clicks` (request id, platform, clicker) on PostgreSQL, padded to a power
/// of two; its rows lead with the click's place in `clicks`.
fn click_read_batch<'a>(
    clicks: impl ExactSizeIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Batch, StoreError> {
    static READS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let size = |k: u32| 1usize << k;
        (0..=MAX_CLICK_READS.trailing_zeros())
            .map(|k| {
                let rows = vec!["(?, ?, ?, ?)"; size(k)].join(", ");
                format!(
                    "SELECT q.n, {}, {} FROM (VALUES {rows}) AS q (n, id, platform, chat_user_id) \
                     CROSS JOIN LATERAL (SELECT {} FROM requests rr WHERE rr.id = q.id LIMIT 1) r \
                     LEFT JOIN LATERAL (SELECT {} FROM approvals aa WHERE aa.request_id = q.id \
                     AND aa.platform = q.platform AND aa.chat_user_id = q.chat_user_id \
                     AND aa.state = 'pending' ORDER BY aa.step LIMIT 1) a ON true",
                    prefixed("r", requests::COLUMNS),
                    prefixed("a", approvals::COLUMNS),
                    prefixed("rr", requests::COLUMNS),
                    prefixed("aa", approvals::COLUMNS),
                )
            })
            .collect()
    });
    let n = clicks.len();
    let size = super::padded_rows(n);
    let sql = READS
        .get(size.trailing_zeros() as usize)
        .ok_or_else(|| StoreError::Corrupt(format!("{size} clicks read at once")))?;
    let mut b = Batch::new(Backend::Postgres);
    b.push(sql);
    for (k, (id, platform, chat_user_id)) in clicks.enumerate() {
        b.bind(k as i64)?;
        b.bind(id)?;
        b.bind(platform)?;
        b.bind(chat_user_id)?;
    }
    // Padding: no request has the empty id.
    for _ in n..size {
        b.bind(-1i64)?;
        b.bind("")?;
        b.bind("")?;
        b.bind("")?;
    }
    Ok(b)
}

/// Reads `questions` with one PostgreSQL query, padded to a power of two (a few statement
/// texts, each prepared once per connection). Each click's request and slot are found by
/// lateral subqueries, so the plan is an index lookup per click whatever the tables' sizes
/// when it was made (a join with the table was planned as a scan while the table was empty).
async fn read_clicks(
    reader: &Reader,
    questions: Vec<Arc<ClickQuestion>>,
) -> Result<Vec<ClickRead>, StoreError> {
    let b = click_read_batch(
        questions
            .iter()
            .map(|q| (q.id.as_str(), q.platform.as_str(), q.chat_user_id.as_str())),
    )?;
    let mut answers: Vec<ClickRead> = questions.iter().map(|_| None).collect();
    for row in reader.run_pipelined(b).await? {
        let n = row.get::<i64>(0)?;
        let answer = usize::try_from(n)
            .ok()
            .and_then(|n| answers.get_mut(n))
            .ok_or_else(|| StoreError::Corrupt(format!("click read {n} was not asked")))?;
        *answer = Some(click_from_row(&row, 1)?);
    }
    Ok(answers)
}

impl Store {
    /// A click's read, committed state only: the request and the clicker's pending slot on it
    /// (the lowest step's), if any. `None` when there is no such request. SQLite: one query on
    /// the caller's thread. PostgreSQL: the clicks waiting at that moment are read with one
    /// query ([`super::shared_read`]).
    pub async fn read_for_click(
        &self,
        id: &RequestId,
        platform: &str,
        chat_user_id: &str,
    ) -> Result<ClickRead, StoreError> {
        match self.backend {
            Backend::Sqlite => read_one_click(&self.reader, id, platform, chat_user_id).await,
            Backend::Postgres => {
                let question = ClickQuestion {
                    id: id.as_str().to_string(),
                    platform: platform.to_string(),
                    chat_user_id: chat_user_id.to_string(),
                };
                self.clicks
                    .ask(question, |qs| read_clicks(&self.reader, qs))
                    .await
            }
        }
    }

    /// Writes a ruling if its request is still waiting and its slot still pending; returns
    /// after the commit. Concurrent callers share one transaction (see the module's doc).
    pub async fn file_ruling(&self, ruling: Ruling) -> Result<Ruled, StoreError> {
        match &self.filer {
            Some(filer) => filer.rule(ruling).await,
            None => {
                let mut ruled = self.write_rulings(&[&ruling], None).await?;
                Ok(ruled.pop().unwrap_or(Ruled::Lost))
            }
        }
    }
}

/// The planner's settings, each turned off, under which every join is a loop of key lookups
/// (see [`stage`]).
const KEY_LOOKUP_SETTINGS: [&str; 3] = ["enable_seqscan", "enable_hashjoin", "enable_mergejoin"];

/// [`KEY_LOOKUP_SETTINGS`] for the rest of a PostgreSQL transaction; one statement, one row.
/// The filer's own connection has them from its start ([`key_lookup_options`]) and needs none.
static PLAN_KEY_LOOKUPS: LazyLock<String> = LazyLock::new(|| {
    let each: Vec<String> = KEY_LOOKUP_SETTINGS
        .iter()
        .map(|s| format!("set_config('{s}', 'off', true)"))
        .collect();
    format!("SELECT {}", each.join(", "))
});

/// [`KEY_LOOKUP_SETTINGS`] as a connection's startup options (`-c name=off …`), for the filer's
/// own connection ([`super::pg_direct`]): the statements it runs (filings' inserts, rulings)
/// all look rows up by key, and a statement fewer a batch is a round trip's work less.
pub(super) fn key_lookup_options() -> String {
    KEY_LOOKUP_SETTINGS
        .iter()
        .map(|s| format!("-c {s}=off"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A statement's text, its number of parameters, and whether it is planned under
/// [`PLAN_KEY_LOOKUPS`].
#[doc(hidden)]
pub type PlanChecked = (String, usize, bool);

/// PostgreSQL's statements that must look rows up by key whatever the tables' sizes when they
/// were planned, as prepared for `n` clicks read at once and `n` rulings written at once: each
/// with its number of parameters and whether it is planned under [`PLAN_KEY_LOOKUPS`] (returned
/// first). For a test that plans them on empty tables (tests/filing.rs).
#[doc(hidden)]
pub fn key_lookup_statements(n: usize) -> Result<(&'static str, Vec<PlanChecked>), StoreError> {
    let ids: Vec<String> = (0..n).map(|k| format!("R-{k}")).collect();
    let mut out = Vec::new();
    let read = click_read_batch(ids.iter().map(|id| (id.as_str(), "slack", "U1")))?;
    let mut rulings = Batch::new(Backend::Postgres);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    requests::push_lock_requests(&mut rulings, &refs)?;
    let moves: Vec<requests::SlotMove<'_>> = refs
        .iter()
        .map(|id| requests::SlotMove {
            id,
            approval_id: 1,
            to: RequestState::Provisioning,
            at_ms: 0,
        })
        .collect();
    requests::push_moves_if_slots_pending(&mut rulings, &moves)?;
    requests::push_moves_all_or_fail(&mut rulings, &moves)?;
    let slots: Vec<approvals::SlotRuling<'_>> = refs
        .iter()
        .map(|id| approvals::SlotRuling {
            request_id: id,
            decided_id: 1,
            outcome: "approved",
            at_ms: 0,
        })
        .collect();
    approvals::push_close_approvals_of(&mut rulings, &slots)?;
    for (batch, settings) in [(&read, false), (&rulings, true)] {
        for s in batch.pg_statements()? {
            out.push((s.prepared_sql(), s.params().len(), settings));
        }
    }
    Ok((&PLAN_KEY_LOOKUPS, out))
}

/// Writes `rulings` on `conn` in one transaction (`ends`: `BEGIN …`, `COMMIT`); one answer per
/// ruling, in order, whether a job was enqueued, and the chain's head after them.
pub(super) async fn stage(
    conn: &mut Target<'_>,
    backend: Backend,
    rulings: &[&Ruling],
    (begin, commit): (&'static str, &'static str),
) -> Result<(Vec<Ruled>, bool, (i64, String)), StoreError> {
    let mut first = Batch::new(backend);
    first.push(begin);
    // PostgreSQL: the requests' rows locked first, in the order of their ids, then the chain's
    // head, as a click decided the long way locks its request and then the head: no two writers
    // wait for each other. The compare-and-set follows the lock, so it reads what was committed
    // before it (one that waited for a row itself would re-check the request's new row but read
    // the slots as they were when it began). One statement each for the whole batch; SQLite,
    // which has one writer, a compare-and-set a ruling.
    let leading = match backend {
        Backend::Postgres => {
            // The batch's statements join a list of values with tables by their keys: planned
            // without statistics (a table never analysed, or analysed while small), a join by
            // hash or merge reads a whole table, and a prepared statement keeps that plan. Until
            // the commit, only a loop of key lookups is planned.
            let mut leading = 1;
            if !matches!(conn, Target::Postgres(_)) {
                first.push(&PLAN_KEY_LOOKUPS);
                leading += 1;
            }
            requests::push_lock_requests(&mut first, &lock_order(rulings))?;
            requests::push_moves_if_slots_pending(&mut first, &slot_moves(rulings))?;
            leading
        }
        Backend::Sqlite => {
            for v in rulings {
                requests::push_move_if_slot_pending(
                    &mut first,
                    &v.request_id,
                    v.approval_id,
                    v.to,
                    v.at_ms,
                )?;
            }
            0
        }
    };
    audit::push_read_head(&mut first);
    let got = conn.run(first).await?;
    // PostgreSQL: the settings' row (none on the filer's own connection) and the lock's; then
    // one row per request moved (with the slot that moved it), then the head.
    let head = audit::read_head(got.last())?;
    // By the slot (an approval's id is its own), the request it moved.
    let moved: HashMap<i64, String> = got[leading.min(got.len())..got.len().saturating_sub(1)]
        .iter()
        .map(|r| Ok((r.get::<i64>(1)?, r.get::<String>(0)?)))
        .collect::<Result<_, StoreError>>()?;
    // A request moves once, by the first ruling of its slot in the batch; any other lost.
    let mut taken = HashSet::new();
    let ruled: Vec<Ruled> = rulings
        .iter()
        .map(|v| {
            let id = v.request_id.as_str();
            if moved.get(&v.approval_id).is_some_and(|r| r == id) && taken.insert(id) {
                Ruled::Written
            } else {
                Ruled::Lost
            }
        })
        .collect();

    let mut rest = Batch::new(backend);
    let won: Vec<&Ruling> = rulings
        .iter()
        .zip(&ruled)
        .filter(|(_, r)| **r == Ruled::Written)
        .map(|(v, _)| *v)
        .collect();
    let head = push_won(&mut rest, &won, head)?;
    rest.fuse_writes(0);
    rest.push(commit);
    let enqueued = rest.enqueues();
    conn.run(rest).await?;
    Ok((ruled, enqueued, head))
}

/// Adds what the rulings that won write ([`push_writes`]) and their audit events after `head`
/// to `b`; returns the chain's new head.
fn push_won(
    b: &mut Batch,
    won: &[&Ruling],
    head: (i64, String),
) -> Result<(i64, String), StoreError> {
    push_writes(b, won)?;
    let events: Vec<(i64, Vec<NewAuditEvent<'_>>)> =
        won.iter().map(|v| (v.at_ms, v.audit_events())).collect();
    let timed: Vec<(i64, &NewAuditEvent<'_>)> = events
        .iter()
        .flat_map(|(at, es)| es.iter().map(move |e| (*at, e)))
        .collect();
    audit::push_append(b, head, &timed)
}

/// PostgreSQL, on the filer's own connection: [`all_won_batch`] as **one** statement, which is
/// its own transaction ([`Batch::fuse_as_one`]): the compare-and-sets first, in the order of the
/// requests' ids (they lock the rows in that order), then the chain's head, locked and checked
/// against `head`, with the check that every compare-and-set moved its request (else a division
/// by zero fails the statement), then every write after them. One execution and one answer where
/// the transaction's five statements were each one (docs/benchmarks.md). Returns the batch and
/// the chain's head after it.
pub(super) fn one_statement_batch(
    rulings: &[&Ruling],
    head: (i64, String),
) -> Result<(Batch, (i64, String)), StoreError> {
    const MOVED: &str = "moved";
    let mut b = Batch::new(Backend::Postgres);
    let mut moves = slot_moves(rulings);
    moves.sort_by_key(|m| m.id);
    requests::push_moves_if_slots_pending(&mut b, &moves)?;
    // Read in its condition, the compare-and-sets run before the head's row is locked.
    audit::push_lock_head_expecting_and(
        &mut b,
        &head,
        &format!(" AND 1 / ((SELECT COUNT(*) FROM {MOVED}) / ?) = 1"),
    )?;
    b.bind(moves.len().max(1) as i64)?;
    let head = push_won(&mut b, rulings, head)?;
    b.fuse_as_one(MOVED)?;
    Ok((b, head))
}

/// The requests of `rulings`, each once, in the order their rows are locked (their ids').
fn lock_order<'a>(rulings: &[&'a Ruling]) -> Vec<&'a str> {
    let ids: std::collections::BTreeSet<&str> =
        rulings.iter().map(|v| v.request_id.as_str()).collect();
    ids.into_iter().collect()
}

/// Each ruling's compare-and-set, in order.
fn slot_moves<'a>(rulings: &[&'a Ruling]) -> Vec<requests::SlotMove<'a>> {
    rulings
        .iter()
        .map(|v| requests::SlotMove {
            id: v.request_id.as_str(),
            approval_id: v.approval_id,
            to: v.to,
            at_ms: v.at_ms,
        })
        .collect()
}

/// Whether `rulings` are on distinct requests (so that each can be expected to win).
pub(super) fn requests_distinct(rulings: &[&Ruling]) -> bool {
    let mut ids = HashSet::new();
    rulings.iter().all(|v| ids.insert(v.request_id.as_str()))
}

/// PostgreSQL's own connection, when the chain's head is known from the filer's last commit and
/// the rulings are on distinct requests: every ruling written as won, in one batch (one round
/// trip, `BEGIN` to `COMMIT`), with no read first. The guesses are checked by the database: a
/// compare-and-set that does not move its request fails the batch
/// ([`requests::push_moves_all_or_fail`]), and so does a head that is not the one known
/// ([`audit::push_read_head_expecting`]: another writer appended since, or a batch before it on
/// the filer's connection rolled back). Either error fails the batch, whose caller then rolls it
/// back and writes it the two-round-trip way ([`stage`]), where a ruling that lost writes
/// nothing. Returns what [`stage`] returns.
///
/// The compare-and-sets come first, in the order of the requests' ids: they lock the rows in
/// that order (a loop over the list, the connection's settings, [`key_lookup_options`]), then
/// the head is locked, as [`stage`]'s lock and a click decided the long way do. A request
/// changed by another writer meanwhile is not moved (its row's address changed), so the batch
/// fails rather than wait on what it read.
pub(super) async fn stage_all_won(
    conn: &mut Target<'_>,
    rulings: &[&Ruling],
    head: (i64, String),
    ends: (&'static str, &'static str),
) -> Result<(Vec<Ruled>, bool, (i64, String)), StoreError> {
    let (b, head) = all_won_batch(rulings, head, ends)?;
    let enqueued = b.enqueues();
    conn.run(b).await?;
    Ok((vec![Ruled::Written; rulings.len()], enqueued, head))
}

/// The batch of [`stage_all_won`], and the chain's head after it.
pub(super) fn all_won_batch(
    rulings: &[&Ruling],
    head: (i64, String),
    (begin, commit): (&'static str, &'static str),
) -> Result<(Batch, (i64, String)), StoreError> {
    let mut b = Batch::new(Backend::Postgres);
    b.push(begin);
    let mut moves = slot_moves(rulings);
    moves.sort_by_key(|m| m.id);
    requests::push_moves_all_or_fail(&mut b, &moves)?;
    audit::push_read_head_expecting(&mut b, &head)?;
    let writes = b.len();
    let head = push_won(&mut b, rulings, head)?;
    b.fuse_writes(writes);
    b.push(commit);
    Ok((b, head))
}
