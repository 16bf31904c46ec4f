//! Scheduled work claims its slot here, so each slot runs once however many replicas run.

use super::{StoreError, Tx};

impl Tx {
    /// Claims slot `slot` of schedule `name`; true if this call got it.
    pub async fn claim_slot(
        &mut self,
        name: &str,
        slot: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO schedule_runs (name, slot, at) VALUES ($1, $2, $3) ON CONFLICT (name, slot) DO NOTHING",
        )
        .bind(name)
        .bind(slot)
        .bind(now_ms)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
