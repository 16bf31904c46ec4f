//! Decisions: policy's and each approver's, with the policies behind them.

use sqlx::FromRow;

use super::{Store, StoreError, Tx};
use crate::domain::RequestId;

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DecisionRecord {
    pub request_id: String,
    /// `policy` or `approver`.
    pub kind: String,
    /// `deny`, `auto_approve`, `needs_approval`, `approved`, `rejected`.
    pub outcome: String,
    /// `policy` or the approver's email.
    pub actor: String,
    /// JSON array of policy ids.
    pub policy_ids: String,
    /// JSON array of reasons.
    pub reasons: String,
    pub at: i64,
}

impl Tx {
    /// Records a decision.
    pub async fn insert_decision(&mut self, d: &DecisionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO decisions (request_id, kind, outcome, actor, policy_ids, reasons, at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(&d.request_id)
        .bind(&d.kind)
        .bind(&d.outcome)
        .bind(&d.actor)
        .bind(&d.policy_ids)
        .bind(&d.reasons)
        .bind(d.at)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl Store {
    /// Every decision on a request, oldest first.
    pub async fn decisions(&self, id: &RequestId) -> Result<Vec<DecisionRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT request_id, kind, outcome, actor, policy_ids, reasons, at FROM decisions \
             WHERE request_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(self.reader())
        .await?)
    }
}
