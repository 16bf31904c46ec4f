//! Grants: the ledger of provisioned access, and the expiry sweep.

use sqlx::FromRow;

use super::{Store, StoreError, Tx};
use crate::domain::GrantId;

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct GrantRecord {
    pub id: String,
    pub request_id: String,
    pub subject_email: String,
    pub app: String,
    pub entitlement: String,
    pub connector: String,
    /// The subject's account id in the app (e.g. the SCIM user id).
    pub account_id: String,
    /// The group/team/role in the app, as provisioned (revocation does not depend on the catalog).
    pub target: String,
    /// The connector's receipt (JSON).
    pub receipt: String,
    /// `active`, `revoking`, `revoked`.
    pub state: String,
    pub approved_by: Option<String>,
    pub granted_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

const COLUMNS: &str = "id, request_id, subject_email, app, entitlement, connector, account_id, \
     target, receipt, state, approved_by, granted_at, expires_at, revoked_at, revoked_by, revoke_reason";

impl Tx {
    /// Records a new grant.
    pub async fn insert_grant(&mut self, g: &GrantRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO grants (id, request_id, subject_email, app, entitlement, connector, account_id, \
             target, receipt, state, approved_by, granted_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        )
        .bind(&g.id)
        .bind(&g.request_id)
        .bind(&g.subject_email)
        .bind(&g.app)
        .bind(&g.entitlement)
        .bind(&g.connector)
        .bind(&g.account_id)
        .bind(&g.target)
        .bind(&g.receipt)
        .bind(&g.state)
        .bind(&g.approved_by)
        .bind(g.granted_at)
        .bind(g.expires_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Claims up to `limit` grants due at `now_ms` for revocation (active → revoking) and returns them.
    /// Runs in the sweeper's transaction, so each claimed grant gets its revoke job atomically.
    pub async fn claim_due_grants(
        &mut self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        // PostgreSQL: replicas sweeping at once skip each other's rows instead of waiting; the outer
        // `state = 'active'` re-checks each row as it is updated, so a grant another replica moved
        // after this statement's snapshot is never claimed twice, however the planner runs the subquery.
        let lock = match self.backend() {
            super::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE grants SET state = 'revoking' WHERE state = 'active' AND id IN (SELECT id FROM grants \
             WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2 {lock}) RETURNING {COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(limit)
            .fetch_all(self.conn())
            .await?)
    }

    /// Claims one active grant for revocation (active → revoking). Returns it if this call did.
    pub async fn claim_grant_for_revoke(
        &mut self,
        id: &GrantId,
    ) -> Result<Option<GrantRecord>, StoreError> {
        let sql = format!(
            "UPDATE grants SET state = 'revoking' WHERE id = $1 AND state = 'active' RETURNING {COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?)
    }

    /// Records that the `threshold_minutes` warning of a grant is being sent; false if it was already.
    pub async fn claim_warning(
        &mut self,
        grant_id: &str,
        threshold_minutes: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO grant_warnings (grant_id, threshold_minutes, at) VALUES ($1, $2, $3) \
             ON CONFLICT (grant_id, threshold_minutes) DO NOTHING",
        )
        .bind(grant_id)
        .bind(threshold_minutes)
        .bind(now_ms)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves an active grant's end by `add_ms`. Returns whether it was still active.
    pub async fn extend_grant(&mut self, id: &GrantId, add_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE grants SET expires_at = expires_at + $1 WHERE id = $2 AND state = 'active' AND expires_at IS NOT NULL",
        )
        .bind(add_ms)
        .bind(id.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves a grant revoking → revoked. Returns whether it moved.
    pub async fn finish_revoke(
        &mut self,
        id: &GrantId,
        now_ms: i64,
        by: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE grants SET state = 'revoked', revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE id = $4 AND state = 'revoking'",
        )
        .bind(now_ms)
        .bind(by)
        .bind(reason)
        .bind(id.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every grant of a request (one, or one per entitlement of a bundle), inside the transaction.
    pub async fn grants_of_request(
        &mut self,
        request_id: &str,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM grants WHERE request_id = $1 ORDER BY granted_at, id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id)
            .fetch_all(self.conn())
            .await?)
    }

    /// Reads a grant inside the transaction.
    pub async fn grant(&mut self, id: &GrantId) -> Result<Option<GrantRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM grants WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?)
    }
}

impl Store {
    /// Reads a grant.
    pub async fn grant(&self, id: &GrantId) -> Result<Option<GrantRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM grants WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&mut *self.read_conn().await?)
            .await?)
    }

    /// The grant made for a request, if any (a bundle's first).
    pub async fn grant_for_request(
        &self,
        request_id: &str,
    ) -> Result<Option<GrantRecord>, StoreError> {
        Ok(self
            .grants_for_request(request_id)
            .await?
            .into_iter()
            .next())
    }

    /// Every grant made for a request: one, or one per entitlement of a bundle.
    pub async fn grants_for_request(
        &self,
        request_id: &str,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM grants WHERE request_id = $1 ORDER BY granted_at, id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// Active grants ending within `window_ms` from `now_ms` (not yet ended), soonest first.
    pub async fn grants_ending_within(
        &self,
        now_ms: i64,
        window_ms: i64,
        limit: i64,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM grants WHERE state = 'active' AND expires_at IS NOT NULL \
             AND expires_at > $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(now_ms + window_ms)
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// Active grants of an entitlement (the ledger's side of reconciliation).
    pub async fn active_grants_for(
        &self,
        app: &str,
        entitlement: &str,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM grants WHERE app = $1 AND entitlement = $2 AND state IN ('active', 'revoking')"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(app)
            .bind(entitlement)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// How many grants of this entitlement the person has ever had.
    pub async fn grant_count_of(
        &self,
        subject_email: &str,
        app: &str,
        entitlement: &str,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM grants WHERE subject_email = $1 AND app = $2 AND entitlement = $3",
        )
        .bind(subject_email)
        .bind(app)
        .bind(entitlement)
        .fetch_one(&mut *self.read_conn().await?)
        .await?)
    }

    /// Who holds this entitlement now.
    pub async fn holders(&self, app: &str, entitlement: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT subject_email FROM grants WHERE app = $1 AND entitlement = $2 AND state = 'active'",
        )
        .bind(app)
        .bind(entitlement)
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }

    /// The grants a person holds now (active), soonest to end first.
    pub async fn active_grants_of(
        &self,
        subject_email: &str,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM grants WHERE subject_email = $1 AND state = 'active' \
             ORDER BY expires_at, id LIMIT 200"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subject_email)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// Grants, newest first; `state` filters (`active`, `revoking`, `revoked`) when given.
    pub async fn grants(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM grants WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) \
             ORDER BY granted_at DESC, id LIMIT $2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(limit)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }
}
