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
//! slots, audit events (and the head's move) and jobs, with the `COMMIT`.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::approvals::{self, ApprovalRecord};
use super::audit::{self, NewAuditEvent};
use super::batch::Batch;
use super::decisions::{self, DecisionRecord};
use super::filing::{FilingEvent, Target};
use super::jobs::{self, Job};
use super::requests;
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
/// other pending slots closed (one statement a ruling, found by its request: a statement for
/// all of them, `request_id IN (…)`, got a sequential scan for a plan on PostgreSQL once
/// prepared), then the decisions and the jobs, one statement each for all of them.
pub(crate) fn push_writes(b: &mut Batch, rulings: &[&Ruling]) -> Result<(), StoreError> {
    for v in rulings {
        if let Some(d) = v.shorter {
            requests::push_set_request_duration(b, &v.request_id, d, v.at_ms)?;
        }
        approvals::push_close_approvals(b, &v.request_id, v.approval_id, v.outcome, v.at_ms)?;
    }
    let decisions: Vec<&DecisionRecord> = rulings.iter().map(|v| &v.decision).collect();
    decisions::push_insert_decisions(b, &decisions)?;
    let rows: Vec<(&Job, i64, i64)> = rulings
        .iter()
        .flat_map(|v| v.jobs.iter().map(|j| (j, v.at_ms, v.max_attempts)))
        .collect();
    jobs::push_enqueue_rows(b, &rows)
}

impl Store {
    /// A click's read, committed state only: the request and the clicker's pending slot on it
    /// (the lowest step's), if any. `None` when there is no such request.
    pub async fn read_for_click(
        &self,
        id: &RequestId,
        platform: &str,
        chat_user_id: &str,
    ) -> Result<Option<(AccessRequest, Option<ApprovalRecord>)>, StoreError> {
        static READ: LazyLock<String> = LazyLock::new(|| {
            let columns = |table: &str, cols: &str| {
                cols.split(',')
                    .map(|c| format!("{table}.{}", c.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "SELECT {}, {} FROM requests r LEFT JOIN approvals a ON a.request_id = r.id \
                 AND a.platform = ? AND a.chat_user_id = ? AND a.state = 'pending' \
                 WHERE r.id = ? ORDER BY a.step LIMIT 1",
                columns("r", requests::COLUMNS),
                columns("a", approvals::COLUMNS),
            )
        });
        let mut b = Batch::new(self.backend);
        b.push(&READ);
        b.bind(platform)?;
        b.bind(chat_user_id)?;
        b.bind(id.as_str())?;
        let rows = self.reader.run(b).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let request = requests::from_batch_row(row, 0)?;
        let slot = match row.get::<Option<i64>>(14)? {
            Some(_) => Some(approvals::from_batch_row(row, 14)?),
            None => None,
        };
        Ok(Some((request, slot)))
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
    // PostgreSQL: the requests' rows locked first, each by a statement of its own, in the order
    // of their ids, then the chain's head, as a click decided the long way locks its request and
    // then the head: no two writers wait for each other. A compare-and-set that follows its lock
    // reads what was committed before it (one that waited for the row itself would re-check the
    // request's new row but read the slots as they were when it began).
    let locks = match backend {
        Backend::Postgres => {
            let ids: std::collections::BTreeSet<&str> =
                rulings.iter().map(|v| v.request_id.as_str()).collect();
            for id in &ids {
                requests::push_lock_request(&mut first, id)?;
            }
            ids.len()
        }
        Backend::Sqlite => 0,
    };
    for v in rulings {
        requests::push_move_if_slot_pending(
            &mut first,
            &v.request_id,
            v.approval_id,
            v.to,
            v.at_ms,
        )?;
    }
    audit::push_read_head(&mut first);
    let got = conn.run(first).await?;
    // One row per lock, one per request moved (with the slot that moved it), then the head.
    let head = audit::read_head(got.last())?;
    // By the slot (an approval's id is its own), the request it moved.
    let moved: HashMap<i64, String> = got[locks.min(got.len())..got.len().saturating_sub(1)]
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
    push_writes(&mut rest, &won)?;
    let events: Vec<(i64, Vec<NewAuditEvent<'_>>)> =
        won.iter().map(|v| (v.at_ms, v.audit_events())).collect();
    let timed: Vec<(i64, &NewAuditEvent<'_>)> = events
        .iter()
        .flat_map(|(at, es)| es.iter().map(move |e| (*at, e)))
        .collect();
    let head = audit::push_append(&mut rest, head, &timed)?;
    rest.push(commit);
    let enqueued = rest.enqueues();
    conn.run(rest).await?;
    Ok((ruled, enqueued, head))
}
