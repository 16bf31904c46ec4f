//! Decisions: policy's and each approver's, with the policies behind them.

use sqlx::FromRow;

use super::batch::Batch;
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
        self.insert_decisions(&[d]).await
    }

    /// Records decisions in one statement per 1,000.
    pub async fn insert_decisions(&mut self, ds: &[&DecisionRecord]) -> Result<(), StoreError> {
        let mut b = Batch::new(self.backend);
        push_insert_decisions(&mut b, ds)?;
        b.execute(self.conn()).await
    }
}

/// Adds the inserts of `ds` to `b` (one statement per 1,000).
pub(crate) fn push_insert_decisions(
    b: &mut Batch,
    ds: &[&DecisionRecord],
) -> Result<(), StoreError> {
    for chunk in ds.chunks(1_000) {
        b.push_values(
            "INSERT INTO decisions (request_id, kind, outcome, actor, policy_ids, reasons, at) VALUES ",
            chunk.len(),
            7,
            "",
        );
        for d in chunk {
            b.bind(d.request_id.as_str())?;
            b.bind(d.kind.as_str())?;
            b.bind(d.outcome.as_str())?;
            b.bind(d.actor.as_str())?;
            b.bind(d.policy_ids.as_str())?;
            b.bind(d.reasons.as_str())?;
            b.bind(d.at)?;
        }
    }
    Ok(())
}

impl Store {
    /// Approver decision latency (decision time − request time): cumulative counts at each
    /// bound (milliseconds), the total count and the sum in milliseconds.
    pub async fn decision_latency_buckets(
        &self,
        bounds_ms: &[i64],
    ) -> Result<(Vec<i64>, i64, i64), StoreError> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT d.at - r.created_at FROM decisions d JOIN requests r ON r.id = d.request_id \
             WHERE d.kind = 'approver'",
        )
        .fetch_all(&mut *self.read_conn().await?)
        .await?;
        let latencies: Vec<i64> = rows.into_iter().map(|(l,)| l.max(0)).collect();
        let buckets = bounds_ms
            .iter()
            .map(|b| latencies.iter().filter(|l| **l <= *b).count() as i64)
            .collect();
        Ok((buckets, latencies.len() as i64, latencies.iter().sum()))
    }

    /// Every decision on a request, oldest first.
    pub async fn decisions(&self, id: &RequestId) -> Result<Vec<DecisionRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT request_id, kind, outcome, actor, policy_ids, reasons, at FROM decisions \
             WHERE request_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }
}
