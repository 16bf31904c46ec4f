//! Delegations: an approver away hands their approvals to someone until a date (read at intake
//! by `intake_facts`).

use super::{StoreError, Tx};

impl Tx {
    /// Sets (or replaces) who decides for `delegator` until `until_ms`.
    pub async fn set_delegation(
        &mut self,
        delegator: &str,
        delegate: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM delegations WHERE delegator_email = $1")
            .bind(delegator)
            .execute(self.conn())
            .await?;
        sqlx::query(
            "INSERT INTO delegations (delegator_email, delegate_email, until_at, created_at) VALUES ($1,$2,$3,$4)",
        )
        .bind(delegator)
        .bind(delegate)
        .bind(until_ms)
        .bind(now_ms)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Ends a delegation early. Returns whether there was one.
    pub async fn end_delegation(&mut self, delegator: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM delegations WHERE delegator_email = $1")
            .bind(delegator)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
