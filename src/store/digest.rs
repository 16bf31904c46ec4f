//! Reads for the IT digest: the period's requests with their final decision, the period's
//! decisions, and what waits for IT now. Read-only; the same statements on both backends.

use sqlx::FromRow;

use super::{Store, StoreError};

/// The decisions that end a request's approval: a policy's deny or auto-approval, or a person's
/// final approve or deny (intermediate steps of a multi-step route are `kind = 'step'`).
const FINAL: &str = "((d.kind = 'policy' AND d.outcome IN ('deny', 'auto_approve')) \
     OR (d.kind = 'approver' AND d.outcome IN ('approved', 'rejected')))";

/// A request opened in the period, with its final decision if it had one by the period's end.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PeriodRequest {
    pub id: String,
    pub app: String,
    pub entitlement: String,
    pub created_at: i64,
    /// `policy` or `approver`, when decided.
    pub decision_kind: Option<String>,
    /// `deny`, `auto_approve`, `approved` or `rejected`, when decided.
    pub decision_outcome: Option<String>,
    pub decided_at: Option<i64>,
}

/// A final decision made in the period, with when its request was opened.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PeriodDecision {
    pub request_id: String,
    pub kind: String,
    pub outcome: String,
    pub at: i64,
    pub requested_at: i64,
}

/// A request waiting for approval now.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct WaitingRequest {
    pub id: String,
    pub app: String,
    pub entitlement: String,
    pub subject_email: String,
    pub created_at: i64,
}

/// A failure that waits for IT: a request whose provisioning failed (`kind = 'request'`), or a
/// grant that IT could not remove by hand (`kind = 'revoke'`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct WaitingFailure {
    pub kind: String,
    /// The request or grant id to retry.
    pub id: String,
    pub app: String,
    pub entitlement: String,
    pub subject_email: String,
    pub since: i64,
}

/// Every request waiting for approval, oldest first (`under_way` named for PostgreSQL's partial
/// indexes: see `requests::reads_by_state`).
pub(super) const WAITING_REQUESTS_SQL: &str =
    "SELECT id, app, entitlement, subject_email, created_at FROM requests \
     WHERE under_way AND state = 'pending_approval' ORDER BY created_at, id LIMIT $1";

/// Failed requests and failed revokes whose grant is still held, oldest first.
pub(super) const WAITING_FAILURES_SQL: &str = "SELECT kind, id, app, entitlement, subject_email, since FROM ( \
       SELECT 'request' AS kind, id, app, entitlement, subject_email, updated_at AS since \
       FROM requests WHERE under_way AND state = 'failed' \
       UNION ALL \
       SELECT 'revoke' AS kind, g.id, g.app, g.entitlement, g.subject_email, COALESCE(f.decided_at, f.created_at) AS since \
       FROM fulfilments f JOIN grants g ON g.id = f.grant_id \
       WHERE f.kind = 'revoke' AND f.state = 'failed' AND g.state <> 'revoked' \
     ) failures ORDER BY since, id LIMIT $1";

impl Store {
    /// Requests opened in `[from_ms, to_ms)`, oldest first, each with its final decision made
    /// before `to_ms` (none if undecided then).
    pub async fn digest_requests(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PeriodRequest>, StoreError> {
        let sql = format!(
            "SELECT r.id, r.app, r.entitlement, r.created_at, d.kind AS decision_kind, \
             d.outcome AS decision_outcome, d.at AS decided_at \
             FROM requests r LEFT JOIN decisions d ON d.request_id = r.id AND {FINAL} AND d.at < $2 \
             WHERE r.created_at >= $1 AND r.created_at < $2 ORDER BY r.created_at, r.id, d.id"
        );
        let mut rows: Vec<PeriodRequest> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&mut *self.read_conn().await?)
            .await?;
        // One row per request (the first final decision), should a request ever have two.
        rows.dedup_by(|b, a| a.id == b.id);
        Ok(rows)
    }

    /// Final decisions made in `[from_ms, to_ms)`, oldest first.
    pub async fn digest_decisions(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PeriodDecision>, StoreError> {
        let sql = format!(
            "SELECT d.request_id, d.kind, d.outcome, d.at, r.created_at AS requested_at \
             FROM decisions d JOIN requests r ON r.id = d.request_id \
             WHERE {FINAL} AND d.at >= $1 AND d.at < $2 ORDER BY d.at, d.id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// Every request waiting for approval, oldest first (at most `limit`).
    pub async fn waiting_requests(&self, limit: i64) -> Result<Vec<WaitingRequest>, StoreError> {
        Ok(sqlx::query_as(WAITING_REQUESTS_SQL)
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// Failures waiting for IT, oldest first (at most `limit`): failed requests, and revokes IT
    /// could not make by hand whose grant is still held.
    pub async fn waiting_failures(&self, limit: i64) -> Result<Vec<WaitingFailure>, StoreError> {
        Ok(sqlx::query_as(WAITING_FAILURES_SQL)
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }
}
