//! Approvals: who may decide a request, and where their card was posted.

use sqlx::FromRow;

use super::batch::{Batch, BatchRow};
use super::{Backend, Store, StoreError, Tx};
use crate::domain::RequestId;

/// One approver's slot on a request.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ApprovalRecord {
    pub id: i64,
    pub request_id: String,
    pub step: i64,
    pub approver_email: String,
    pub approver_name: String,
    pub platform: String,
    pub chat_user_id: Option<String>,
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    /// `pending`, `approved`, `rejected`, `closed` (someone else decided).
    pub state: String,
    pub decided_at: Option<i64>,
    /// Set when this approver stands in for someone away (delegation) or was added by escalation.
    pub on_behalf_of: Option<String>,
}

/// An approver to add to a request.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub request_id: &'a RequestId,
    pub step: i64,
    pub email: &'a str,
    pub name: &'a str,
    pub platform: &'a str,
    /// Known from the directory, else looked up when the card is sent.
    pub chat_user_id: Option<&'a str>,
    /// Why this person decides for someone else (delegation, escalation).
    pub on_behalf_of: Option<&'a str>,
}

pub(super) const COLUMNS: &str =
    "id, request_id, step, approver_email, approver_name, platform, chat_user_id, \
     channel_id, message_ts, state, decided_at, on_behalf_of";

impl Tx {
    /// Adds an approver to a request; returns the approval's id.
    pub async fn insert_approval(&mut self, a: &NewApproval<'_>) -> Result<i64, StoreError> {
        let added = self.insert_approvals(std::slice::from_ref(a)).await?;
        added
            .first()
            .map(|(id, _, _)| *id)
            .ok_or_else(|| StoreError::Corrupt("the approval's id was not returned".into()))
    }

    /// Adds approvers in one statement per 1,000; returns (id, request id, approver email) of
    /// each (in no promised order).
    pub async fn insert_approvals(
        &mut self,
        approvals: &[NewApproval<'_>],
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut b = Batch::new(self.backend);
        push_insert_approvals(
            &mut b,
            approvals,
            " RETURNING id, request_id, approver_email",
        )?;
        b.fetch(self.conn())
            .await?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
    }

    /// The pending approval slot of this chat user on this request, if they have one.
    pub async fn approval_for_chat_user(
        &mut self,
        request_id: &RequestId,
        platform: &str,
        chat_user_id: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE request_id = $1 AND platform = $2 AND chat_user_id = $3 \
             ORDER BY step LIMIT 1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id.as_str())
            .bind(platform)
            .bind(chat_user_id)
            .fetch_optional(self.conn())
            .await?)
    }

    /// This chat user's approval slot still waiting on this request, if any.
    pub async fn pending_approval_for_chat_user(
        &mut self,
        request_id: &RequestId,
        platform: &str,
        chat_user_id: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE request_id = $1 AND platform = $2 AND chat_user_id = $3 \
             AND state = 'pending' ORDER BY step LIMIT 1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id.as_str())
            .bind(platform)
            .bind(chat_user_id)
            .fetch_optional(self.conn())
            .await?)
    }

    /// Marks one pending approval approved (compare-and-set). Returns whether it moved.
    pub async fn approve_slot(&mut self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET state = 'approved', decided_at = $1 WHERE id = $2 AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many approvals of a step are given.
    pub async fn approved_in_step(
        &mut self,
        request_id: &RequestId,
        step: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM approvals WHERE request_id = $1 AND step = $2 AND state = 'approved'",
        )
        .bind(request_id.as_str())
        .bind(step)
        .fetch_one(self.conn())
        .await?)
    }

    /// Closes the still-pending approvals of one step (the step is complete).
    pub async fn close_step(
        &mut self,
        request_id: &RequestId,
        step: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE approvals SET state = 'closed' WHERE request_id = $1 AND step = $2 AND state = 'pending'")
            .bind(request_id.as_str())
            .bind(step)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Marks one approval decided and closes the request's other pending ones.
    pub async fn close_approvals(
        &mut self,
        request_id: &RequestId,
        decided_id: i64,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut b = self.batch();
        push_close_approvals(&mut b, request_id, decided_id, outcome, now_ms)?;
        b.execute(self.conn()).await
    }

    /// Closes every pending approval of a request (cancelled, timed out).
    pub async fn close_pending_approvals(
        &mut self,
        request_id: &RequestId,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE approvals SET state = 'closed' WHERE request_id = $1 AND state = 'pending'",
        )
        .bind(request_id.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Records where an approver's card was posted (and their chat id, if it was looked up).
    pub async fn set_approval_message(
        &mut self,
        id: i64,
        chat_user_id: &str,
        channel_id: &str,
        message_ts: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE approvals SET chat_user_id = $1, channel_id = $2, message_ts = $3 WHERE id = $4",
        )
        .bind(chat_user_id)
        .bind(channel_id)
        .bind(message_ts)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl Store {
    /// One approval slot.
    pub async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.read_conn().await?)
            .await?)
    }

    /// Every approval slot of a request.
    pub async fn approvals(
        &self,
        request_id: &RequestId,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM approvals WHERE request_id = $1 ORDER BY step, id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id.as_str())
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }
}

/// Adds the inserts of `approvals` to `b` (one statement per 1,000), each ending with `tail`.
pub(crate) fn push_insert_approvals(
    b: &mut Batch,
    approvals: &[NewApproval<'_>],
    tail: &str,
) -> Result<(), StoreError> {
    for chunk in approvals.chunks(1_000) {
        b.push(&insert_sql(chunk.len(), tail));
        for a in chunk {
            bind_new_approval(b, a)?;
        }
    }
    Ok(())
}

/// The insert of `rows` new approvals, with `?` placeholders, then `tail`.
pub(crate) fn insert_sql(rows: usize, tail: &str) -> String {
    super::values_sql(
        super::Backend::Sqlite,
        "INSERT INTO approvals (request_id, step, approver_email, approver_name, platform, \
         chat_user_id, on_behalf_of) VALUES ",
        rows,
        7,
        tail,
    )
}

/// Binds a new approval's values, in [`insert_sql`]'s order.
pub(crate) fn bind_new_approval(b: &mut Batch, a: &NewApproval<'_>) -> Result<(), StoreError> {
    b.bind(a.request_id.as_str())?;
    b.bind(a.step)?;
    b.bind(a.email)?;
    b.bind(a.name)?;
    b.bind(a.platform)?;
    b.bind(a.chat_user_id)?;
    b.bind(a.on_behalf_of)
}

/// Adds [`Tx::close_approvals`]'s update to `b`, one statement: the decided approval gets
/// `outcome`, the request's other pending ones are closed. It finds them by the request (an
/// index's first column), so its plan is an index scan whatever the batch around it.
pub(crate) fn push_close_approvals(
    b: &mut Batch,
    request_id: &RequestId,
    decided_id: i64,
    outcome: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    b.push(
        "UPDATE approvals SET state = CASE WHEN id = ? THEN ? ELSE 'closed' END, \
         decided_at = CASE WHEN id = ? THEN ? ELSE decided_at END \
         WHERE request_id = ? AND (id = ? OR state = 'pending')",
    );
    b.bind(decided_id)?;
    b.bind(outcome)?;
    b.bind(decided_id)?;
    b.bind(now_ms)?;
    b.bind(request_id.as_str())?;
    b.bind(decided_id)
}

/// One request's slots in [`push_close_approvals_of`]: `decided_id` gets `outcome` at
/// `at_ms`, the request's other pending slots are closed.
pub(crate) struct SlotRuling<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) decided_id: i64,
    pub(crate) outcome: &'a str,
    pub(crate) at_ms: i64,
}

/// [`push_close_approvals`] for several requests in one statement (PostgreSQL): each request's
/// slots are found by its id, the first column of an index (the plan is an index lookup per
/// request, planned on any table size).
pub(crate) fn push_close_approvals_of(
    b: &mut Batch,
    rulings: &[SlotRuling<'_>],
) -> Result<(), StoreError> {
    let rows = super::padded_rows(rulings.len());
    b.push(&super::values_sql(
        Backend::Sqlite,
        "UPDATE approvals a SET state = CASE WHEN a.id = v.decided_id THEN v.outcome ELSE 'closed' END, \
         decided_at = CASE WHEN a.id = v.decided_id THEN v.at ELSE a.decided_at END FROM (VALUES ",
        rows,
        4,
        ") AS v (request_id, decided_id, outcome, at) \
         WHERE a.request_id = v.request_id AND (a.id = v.decided_id OR a.state = 'pending')",
    ));
    for r in rulings {
        b.bind(r.request_id)?;
        b.bind(r.decided_id)?;
        b.bind(r.outcome)?;
        b.bind(r.at_ms)?;
    }
    // Padding: no request has the empty id.
    for _ in rulings.len()..rows {
        b.bind("")?;
        b.bind(0i64)?;
        b.bind("")?;
        b.bind(0i64)?;
    }
    Ok(())
}

/// An approval read from `row`'s columns `at..at + 12`, in [`COLUMNS`]' order.
pub(super) fn from_batch_row(row: &BatchRow, at: usize) -> Result<ApprovalRecord, StoreError> {
    Ok(ApprovalRecord {
        id: row.get(at)?,
        request_id: row.get(at + 1)?,
        step: row.get(at + 2)?,
        approver_email: row.get(at + 3)?,
        approver_name: row.get(at + 4)?,
        platform: row.get(at + 5)?,
        chat_user_id: row.get(at + 6)?,
        channel_id: row.get(at + 7)?,
        message_ts: row.get(at + 8)?,
        state: row.get(at + 9)?,
        decided_at: row.get(at + 10)?,
        on_behalf_of: row.get(at + 11)?,
    })
}
