//! Requests: insert (idempotent), read, and compare-and-set state moves.

use sqlx::any::AnyRow;
use sqlx::FromRow;

use std::collections::HashSet;

use super::batch::{Batch, BatchRow};
use super::{Backend, Store, StoreError, Tx};
use crate::domain::{AccessDuration, AccessRequest, RequestId, RequestState};

#[derive(FromRow)]
pub(super) struct Row {
    id: String,
    platform: String,
    requester_chat_id: String,
    requester_email: String,
    subject_email: String,
    app: String,
    entitlement: String,
    duration_minutes: Option<i64>,
    reason: String,
    ticket: Option<String>,
    extends_grant: Option<String>,
    state: String,
    created_at: i64,
    updated_at: i64,
}

pub(super) const COLUMNS: &str =
    "id, platform, requester_chat_id, requester_email, subject_email, app, \
     entitlement, duration_minutes, reason, ticket, extends_grant, state, created_at, updated_at";

// The reads that find requests by state. Each also names `under_way` (true in the states
// `RequestState::is_under_way` names): on PostgreSQL no index holds the state (so that a move
// between two states under way is a HOT update), and these reads go through the partial indexes
// over `under_way`; SQLite, where the column is computed when read, uses its indexes on the state.

fn open_requests_of_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM requests WHERE requester_email = $1 AND under_way \
         AND state IN ('submitted', 'pending_approval', 'approved', 'provisioning') \
         ORDER BY created_at DESC, id LIMIT $2"
    )
}

fn pending_requests_sql() -> String {
    format!(
        "SELECT {COLUMNS}, reminded_at, escalated_at FROM requests \
         WHERE under_way AND state = 'pending_approval' ORDER BY created_at LIMIT $1"
    )
}

fn pending_requests_for_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM requests WHERE (subject_email = $1 OR requester_email = $1) \
         AND under_way AND state = 'pending_approval' ORDER BY created_at"
    )
}

const OPEN_REQUEST_COUNT_FOR_SQL: &str = "SELECT COUNT(*) FROM requests WHERE subject_email = $1 \
     AND under_way AND state IN ('submitted', 'pending_approval', 'approved', 'provisioning')";

const EXPIRE_EXTENSIONS_SQL: &str = "UPDATE requests SET state = 'expired', updated_at = $1 \
     WHERE extends_grant = $2 AND state = 'active'";

/// Every statement that finds requests by state or by the grant they extend, with its number of
/// parameters: for the tests that check each is read through an index (on PostgreSQL, a partial
/// one).
pub fn reads_by_state() -> Vec<(String, usize)> {
    vec![
        (open_requests_of_sql(), 2),
        (pending_requests_sql(), 1),
        (pending_requests_for_sql(), 1),
        (OPEN_REQUEST_COUNT_FOR_SQL.to_string(), 1),
        (EXPIRE_EXTENSIONS_SQL.to_string(), 2),
        (super::digest::WAITING_REQUESTS_SQL.to_string(), 1),
        (super::digest::WAITING_FAILURES_SQL.to_string(), 1),
    ]
}

impl TryFrom<Row> for AccessRequest {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let state = RequestState::parse(&r.state).ok_or_else(|| {
            StoreError::Corrupt(format!("request {} has state {}", r.id, r.state))
        })?;
        let duration = match r.duration_minutes {
            None => None,
            Some(m) => Some(
                AccessDuration::from_minutes(m as u64)
                    .map_err(|e| StoreError::Corrupt(format!("request {}: {e}", r.id)))?,
            ),
        };
        Ok(AccessRequest {
            id: RequestId::from_stored(r.id),
            platform: r.platform,
            requester_chat_id: r.requester_chat_id,
            requester_email: r.requester_email,
            subject_email: r.subject_email,
            app: r.app,
            entitlement: r.entitlement,
            duration,
            reason: r.reason,
            ticket: r.ticket,
            extends_grant: r.extends_grant,
            state,
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
        })
    }
}

/// Whether an insert created the request or found one with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Created,
    /// Another delivery of the same submission already created this request.
    Duplicate(RequestId),
}

/// A request to insert, with the two columns only the row keeps.
#[derive(Debug, Clone, Copy)]
pub struct RequestRow<'a> {
    pub request: &'a AccessRequest,
    /// The delivery's key: a second insert with the same key creates nothing.
    pub idempotency_key: Option<&'a str>,
    /// Where the requester asked (for answers in the same place).
    pub reply_channel: Option<&'a str>,
}

impl Tx {
    /// Inserts a request unless one with the same idempotency key exists.
    pub async fn insert_request(
        &mut self,
        r: &AccessRequest,
        idempotency_key: Option<&str>,
        reply_channel: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let row = RequestRow {
            request: r,
            idempotency_key,
            reply_channel,
        };
        if self.insert_requests(&[row]).await?.contains(r.id.as_str()) {
            return Ok(Inserted::Created);
        }
        let existing: String =
            sqlx::query_scalar("SELECT id FROM requests WHERE idempotency_key = $1")
                .bind(idempotency_key)
                .fetch_one(self.conn())
                .await?;
        Ok(Inserted::Duplicate(RequestId::from_stored(existing)))
    }

    /// Inserts requests in one statement per 1,000, skipping each whose idempotency key is
    /// already taken (before, or by an earlier row here); returns the ids it created.
    pub async fn insert_requests(
        &mut self,
        rows: &[RequestRow<'_>],
    ) -> Result<HashSet<String>, StoreError> {
        let mut b = Batch::new(self.backend);
        push_insert_requests(&mut b, rows)?;
        b.fetch(self.conn())
            .await?
            .iter()
            .map(|r| r.get::<String>(0))
            .collect()
    }

    /// Moves a request `from → to` if it is still in `from`. Returns whether it moved.
    /// This is the one place request state changes: a double click or a retry moves it once.
    pub async fn move_request(
        &mut self,
        id: &RequestId,
        from: RequestState,
        to: RequestState,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        debug_assert!(from.can_move_to(to), "{from:?} -> {to:?}");
        let done = sqlx::query(
            "UPDATE requests SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(now_ms)
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Holds the request's row until commit (PostgreSQL), so concurrent clicks on one request
    /// take turns; SQLite's single writer already serialises them.
    pub async fn lock_request(&mut self, id: &RequestId) -> Result<(), StoreError> {
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT id FROM requests WHERE id = $1 FOR UPDATE")
                .bind(id.as_str())
                .fetch_optional(self.conn())
                .await?;
        }
        Ok(())
    }

    /// Records that a person left (idempotent).
    pub async fn mark_offboarded(
        &mut self,
        email: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO offboarded (email, at, by_who) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
            .bind(email)
            .bind(now_ms)
            .bind(by)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Marks a pending request reminded, once. Returns whether this call did it.
    pub async fn mark_reminded(&mut self, id: &RequestId, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE requests SET reminded_at = $1 WHERE id = $2 AND state = 'pending_approval' AND reminded_at IS NULL",
        )
        .bind(now_ms)
        .bind(id.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a pending request escalated, once. Returns whether this call did it.
    pub async fn mark_escalated(
        &mut self,
        id: &RequestId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE requests SET escalated_at = $1 WHERE id = $2 AND state = 'pending_approval' AND escalated_at IS NULL",
        )
        .bind(now_ms)
        .bind(id.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Shortens a request's duration (an approver approved it for less time).
    pub async fn set_request_duration(
        &mut self,
        id: &RequestId,
        duration: AccessDuration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut b = self.batch();
        push_set_request_duration(&mut b, id, duration, now_ms)?;
        b.execute(self.conn()).await
    }

    /// Ends the extension requests of a grant that was revoked (active → expired).
    pub async fn expire_extensions(
        &mut self,
        grant_id: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(EXPIRE_EXTENSIONS_SQL)
            .bind(now_ms)
            .bind(grant_id)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    /// Reads a request inside the transaction.
    pub async fn request(&mut self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM requests WHERE id = $1");
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .map(AccessRequest::try_from)
            .transpose()
    }
}

impl Store {
    /// Reads a request.
    pub async fn request(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM requests WHERE id = $1");
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&mut *self.read_conn().await?)
            .await?
            .map(AccessRequest::try_from)
            .transpose()
    }

    /// The channel the requester asked from, if any.
    pub async fn reply_channel(&self, id: &RequestId) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT reply_channel FROM requests WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *self.read_conn().await?)
                .await?
                .flatten(),
        )
    }

    /// Requests, newest first (at most `limit`).
    pub async fn recent_requests(&self, limit: i64) -> Result<Vec<AccessRequest>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM requests ORDER BY created_at DESC, id LIMIT $1");
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?
            .into_iter()
            .map(AccessRequest::try_from)
            .collect()
    }

    /// A requester's requests that are still under way (not yet active or ended), newest first.
    pub async fn open_requests_of(
        &self,
        requester_email: &str,
        limit: i64,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(open_requests_of_sql()))
            .bind(requester_email)
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?
            .into_iter()
            .map(AccessRequest::try_from)
            .collect()
    }

    /// Requests waiting for approval, oldest first, with when they were reminded and escalated.
    pub async fn pending_requests(
        &self,
        limit: i64,
    ) -> Result<Vec<(AccessRequest, Option<i64>, Option<i64>)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(pending_requests_sql()))
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            use sqlx::Row as _;
            let reminded: Option<i64> = row.try_get("reminded_at")?;
            let escalated: Option<i64> = row.try_get("escalated_at")?;
            out.push((
                AccessRequest::try_from(<Row as FromRow<AnyRow>>::from_row(&row)?)?,
                reminded,
                escalated,
            ));
        }
        Ok(out)
    }

    /// Requests for this person still waiting for approval.
    pub async fn pending_requests_for(
        &self,
        subject_email: &str,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(pending_requests_for_sql()))
            .bind(subject_email)
            .fetch_all(&mut *self.read_conn().await?)
            .await?
            .into_iter()
            .map(AccessRequest::try_from)
            .collect()
    }

    /// Whether this person was offboarded.
    pub async fn is_offboarded(&self, email: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offboarded WHERE email = $1")
            .bind(email)
            .fetch_one(&mut *self.read_conn().await?)
            .await?;
        Ok(n > 0)
    }

    /// How many requests for this person are still open (waiting or being provisioned).
    pub async fn open_request_count_for(&self, subject_email: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(OPEN_REQUEST_COUNT_FOR_SQL)
            .bind(subject_email)
            .fetch_one(&mut *self.read_conn().await?)
            .await?)
    }

    /// How many requests are in each state.
    pub async fn count_requests_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT state, COUNT(*) FROM requests GROUP BY state ORDER BY state")
                .fetch_all(&mut *self.read_conn().await?)
                .await?,
        )
    }
}

/// Adds the inserts of `rows` to `b` (one statement per 1,000), each skipped if its idempotency
/// key is taken; each returns the ids it created.
pub(crate) fn push_insert_requests(
    b: &mut Batch,
    rows: &[RequestRow<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(1_000) {
        b.push_values(
            "INSERT INTO requests (id, idempotency_key, platform, requester_chat_id, requester_email, \
             subject_email, app, entitlement, duration_minutes, reason, ticket, state, reply_channel, \
             created_at, updated_at, extends_grant) VALUES ",
            chunk.len(),
            16,
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        );
        bind_request_rows(b, chunk)?;
    }
    Ok(())
}

/// PostgreSQL: adds one insert of `rows` (at most the filer's batch, so one statement) that
/// reads the `WITH` item `after` first ([`Batch::fuse_as_one`]: the chain's head, locked), so
/// no idempotency key is taken before that lock is. It fails on a key taken instead of skipping
/// its row: it is for a batch guessed all new, which then goes the long way. A plain insert
/// finds the duplicate as it adds the key's index entry, where `ON CONFLICT` would look the key
/// up first, then insert the row as speculative and confirm it. Returns the ids it created.
pub(crate) fn push_insert_new_requests_after(
    b: &mut Batch,
    rows: &[RequestRow<'_>],
    after: &str,
) -> Result<(), StoreError> {
    b.push_values(
        "INSERT INTO requests (id, idempotency_key, platform, requester_chat_id, requester_email, \
         subject_email, app, entitlement, duration_minutes, reason, ticket, state, reply_channel, \
         created_at, updated_at, extends_grant) SELECT * FROM (VALUES ",
        rows.len(),
        16,
        &format!(") AS v WHERE EXISTS (SELECT FROM {after}) RETURNING id"),
    );
    bind_request_rows(b, rows)
}

/// Binds each of `rows`' values, in the inserts' column order.
fn bind_request_rows(b: &mut Batch, rows: &[RequestRow<'_>]) -> Result<(), StoreError> {
    for row in rows {
        let r = row.request;
        b.bind(r.id.as_str())?;
        b.bind(row.idempotency_key)?;
        b.bind(r.platform.as_str())?;
        b.bind(r.requester_chat_id.as_str())?;
        b.bind(r.requester_email.as_str())?;
        b.bind(r.subject_email.as_str())?;
        b.bind(r.app.as_str())?;
        b.bind(r.entitlement.as_str())?;
        b.bind(r.duration.map(|d| d.minutes() as i64))?;
        b.bind(r.reason.as_str())?;
        b.bind(r.ticket.as_deref())?;
        b.bind(r.state.as_str())?;
        b.bind(row.reply_channel)?;
        b.bind(r.created_at_ms)?;
        b.bind(r.updated_at_ms)?;
        b.bind(r.extends_grant.as_deref())?;
    }
    Ok(())
}

/// Adds [`Tx::set_request_duration`]'s update to `b`.
pub(crate) fn push_set_request_duration(
    b: &mut Batch,
    id: &RequestId,
    duration: AccessDuration,
    now_ms: i64,
) -> Result<(), StoreError> {
    b.push("UPDATE requests SET duration_minutes = ?, updated_at = ? WHERE id = ?");
    b.bind(duration.minutes() as i64)?;
    b.bind(now_ms)?;
    b.bind(id.as_str())
}

/// How many columns [`COLUMNS`] names.
pub(super) const COLUMN_COUNT: usize = 14;

/// A request read from `row`'s columns `at..at + COLUMN_COUNT`, in [`COLUMNS`]' order.
pub(super) fn from_batch_row(row: &BatchRow, at: usize) -> Result<AccessRequest, StoreError> {
    Row {
        id: row.get(at)?,
        platform: row.get(at + 1)?,
        requester_chat_id: row.get(at + 2)?,
        requester_email: row.get(at + 3)?,
        subject_email: row.get(at + 4)?,
        app: row.get(at + 5)?,
        entitlement: row.get(at + 6)?,
        duration_minutes: row.get(at + 7)?,
        reason: row.get(at + 8)?,
        ticket: row.get(at + 9)?,
        extends_grant: row.get(at + 10)?,
        state: row.get(at + 11)?,
        created_at: row.get(at + 12)?,
        updated_at: row.get(at + 13)?,
    }
    .try_into()
}

/// Adds [`Tx::move_request`]'s compare-and-set from `pending_approval` to `to` to `b`, holding
/// only while approval `approval_id` of the request is still pending too; the request's id and
/// `approval_id` are returned when it moved.
pub(crate) fn push_move_if_slot_pending(
    b: &mut Batch,
    id: &RequestId,
    approval_id: i64,
    to: RequestState,
    now_ms: i64,
) -> Result<(), StoreError> {
    debug_assert!(RequestState::PendingApproval.can_move_to(to), "{to:?}");
    b.push(
        "UPDATE requests SET state = ?, updated_at = ? WHERE id = ? AND state = ? \
         AND EXISTS (SELECT 1 FROM approvals WHERE id = ? AND request_id = ? AND state = 'pending') \
         RETURNING id, ?",
    );
    b.bind(to.as_str())?;
    b.bind(now_ms)?;
    b.bind(id.as_str())?;
    b.bind(RequestState::PendingApproval.as_str())?;
    b.bind(approval_id)?;
    b.bind(id.as_str())?;
    b.bind(approval_id)
}

/// Adds a lock of the rows of requests `ids` (PostgreSQL), taken in the order given, until the
/// commit to `b`: one statement, one row. Each id is looked up by its key in a subquery of its
/// own, so the plan is a key lookup per id, whatever the table's size when it was made (a
/// generic plan for `id IN (…)` made on a small table scans it).
pub(crate) fn push_lock_requests(b: &mut Batch, ids: &[&str]) -> Result<(), StoreError> {
    let rows = super::padded_rows(ids.len());
    b.push(&super::values_sql(
        Backend::Sqlite,
        "SELECT COUNT(*) FROM (VALUES ",
        rows,
        1,
        ") AS v (id) CROSS JOIN LATERAL (SELECT id FROM requests WHERE id = v.id FOR UPDATE) locked",
    ));
    for id in ids {
        b.bind(*id)?;
    }
    // Padding: no request has the empty id.
    for _ in ids.len()..rows {
        b.bind("")?;
    }
    Ok(())
}

/// One request's compare-and-set in [`push_moves_if_slots_pending`]: move `id` to `to` at
/// `at_ms` if approval `approval_id` is still pending.
pub(crate) struct SlotMove<'a> {
    pub(crate) id: &'a str,
    pub(crate) approval_id: i64,
    pub(crate) to: RequestState,
    pub(crate) at_ms: i64,
}

/// [`push_move_if_slot_pending`] for several requests in one statement (PostgreSQL; their rows
/// locked first, [`push_lock_requests`]): returns a row (id, approval id) per request moved, by
/// the first of its moves whose slot is pending. Each request and each slot is found by its key
/// in a subquery of its own (`LATERAL … LIMIT 1`, which the planner keeps as a loop over the
/// values), and the request is updated by the row address found there, so the plan is a key
/// lookup per move whatever the tables' sizes when it was made (a join with `requests` planned
/// while the table was small read every waiting request through the `state` index; a semi-join
/// with `approvals`, all its pending slots).
pub(crate) fn push_moves_if_slots_pending(
    b: &mut Batch,
    moves: &[SlotMove<'_>],
) -> Result<(), StoreError> {
    let rows = super::padded_rows(moves.len());
    b.push(&moves_sql(rows, "", ""));
    bind_moves(b, moves, rows)
}

/// [`push_moves_if_slots_pending`] for requests that are all distinct, when every one is
/// expected to move: one row if all moved; if one did not, the statement fails (a division by
/// zero), and with it the transaction.
pub(crate) fn push_moves_all_or_fail(
    b: &mut Batch,
    moves: &[SlotMove<'_>],
) -> Result<(), StoreError> {
    let rows = super::padded_rows(moves.len());
    b.push(&moves_sql(
        rows,
        "WITH moved AS (",
        ") SELECT 1 / ((SELECT COUNT(*) FROM moved) / ?)",
    ));
    bind_moves(b, moves, rows)?;
    b.bind(moves.len().max(1) as i64)
}

/// The compare-and-set of `rows` moves, between `head` and `tail`.
fn moves_sql(rows: usize, head: &str, tail: &str) -> String {
    let mut sql = String::from(head);
    sql.push_str(&super::values_sql(
        Backend::Sqlite,
        "UPDATE requests r SET state = t.to_state, updated_at = t.at \
         FROM (SELECT v.approval_id, v.to_state, v.at, found.tid FROM (VALUES ",
        rows,
        4,
        ") AS v (id, approval_id, to_state, at) \
         CROSS JOIN LATERAL (SELECT ctid AS tid, state FROM requests WHERE id = v.id LIMIT 1) found \
         CROSS JOIN LATERAL (SELECT 1 FROM approvals a WHERE a.id = v.approval_id \
         AND a.request_id = v.id AND a.state = 'pending' LIMIT 1) slot \
         WHERE found.state = 'pending_approval') t \
         WHERE r.ctid = t.tid RETURNING r.id, t.approval_id",
    ));
    sql.push_str(tail);
    sql
}

/// Binds `moves`, padded to `rows`, in [`moves_sql`]'s order.
fn bind_moves(b: &mut Batch, moves: &[SlotMove<'_>], rows: usize) -> Result<(), StoreError> {
    for m in moves {
        debug_assert!(
            RequestState::PendingApproval.can_move_to(m.to),
            "{:?}",
            m.to
        );
        b.bind(m.id)?;
        b.bind(m.approval_id)?;
        b.bind(m.to.as_str())?;
        b.bind(m.at_ms)?;
    }
    // Padding: no request has the empty id.
    for _ in moves.len()..rows {
        b.bind("")?;
        b.bind(0i64)?;
        b.bind("")?;
        b.bind(0i64)?;
    }
    Ok(())
}
