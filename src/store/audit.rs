//! The audit chain's storage: append inside a change's transaction, read in order.

use serde_json::Value;
use sqlx::FromRow;

use super::{Store, StoreError, Tx};

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent<'a> {
    /// Who acted: an email, `slack:U123` for an unknown chat user, `policy`, `system`.
    pub actor: &'a str,
    /// What happened, e.g. `request.submitted`, `request.approved`, `approval.refused`.
    pub action: &'a str,
    pub request_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub detail: Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Tx {
    /// Appends an event to the chain (reads and moves the head in this transaction).
    pub async fn audit(&mut self, at_ms: i64, e: NewAuditEvent<'_>) -> Result<i64, StoreError> {
        // Moving the head first locks it (PostgreSQL: the row; SQLite: the one writer), so
        // appenders are serialised; RETURNING gives the new seq and the previous hash.
        let (seq, head_hash): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                .fetch_one(self.conn())
                .await?;
        let detail = e.detail.to_string();
        let hash = crate::audit::chain_hash(
            &head_hash,
            seq,
            at_ms,
            e.actor,
            e.action,
            e.request_id,
            e.grant_id,
            &detail,
        );
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, request_id, grant_id, detail, prev_hash, hash) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        )
        .bind(seq)
        .bind(at_ms)
        .bind(e.actor)
        .bind(e.action)
        .bind(e.request_id)
        .bind(e.grant_id)
        .bind(&detail)
        .bind(&head_hash)
        .bind(&hash)
        .execute(self.conn())
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&hash)
            .execute(self.conn())
            .await?;
        Ok(seq)
    }
}

impl Tx {
    /// Appends several events at once (one head move, inserts of many rows): for sweeps that
    /// record an event per grant. The chain is the same as appending them one by one.
    pub async fn audit_many(
        &mut self,
        at_ms: i64,
        events: &[NewAuditEvent<'_>],
    ) -> Result<(), StoreError> {
        let timed: Vec<(i64, &NewAuditEvent<'_>)> = events.iter().map(|e| (at_ms, e)).collect();
        self.audit_timed(&timed).await
    }

    /// Appends events each with its own time, in order, with one head move.
    pub(crate) async fn audit_timed(
        &mut self,
        events: &[(i64, &NewAuditEvent<'_>)],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let (last_seq, mut prev): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
                .bind(events.len() as i64)
                .fetch_one(self.conn())
                .await?;
        let first = last_seq - events.len() as i64 + 1;
        let mut rows = Vec::with_capacity(events.len());
        for (i, (at_ms, e)) in events.iter().enumerate() {
            let seq = first + i as i64;
            let detail = e.detail.to_string();
            let hash = crate::audit::chain_hash(
                &prev,
                seq,
                *at_ms,
                e.actor,
                e.action,
                e.request_id,
                e.grant_id,
                &detail,
            );
            rows.push((seq, *at_ms, detail, prev.clone(), hash.clone()));
            prev = hash;
        }
        for chunk in events
            .iter()
            .zip(rows)
            .collect::<Vec<_>>()
            .chunks(ROWS_PER_INSERT)
        {
            let sql = super::values_sql(
                self.backend(),
                "INSERT INTO audit_events (seq, at, actor, action, request_id, grant_id, detail, prev_hash, hash) VALUES ",
                chunk.len(),
                9,
                "",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((_, e), (seq, at_ms, detail, prev_hash, hash)) in chunk {
                q = q
                    .bind(*seq)
                    .bind(*at_ms)
                    .bind(e.actor.to_string())
                    .bind(e.action.to_string())
                    .bind(e.request_id.map(str::to_string))
                    .bind(e.grant_id.map(str::to_string))
                    .bind(detail.clone())
                    .bind(prev_hash.clone())
                    .bind(hash.clone());
            }
            q.execute(self.conn()).await?;
        }
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(prev)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

/// Rows per multi-row insert: well under SQLite's 32,766 bound parameters at 9 per row.
const ROWS_PER_INSERT: usize = 500;

impl Store {
    /// Events with `seq > after`, in order, at most `limit`.
    pub async fn audit_events(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, at, actor, action, request_id, grant_id, detail, prev_hash, hash \
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?)
    }

    /// Events about one request, in order.
    pub async fn audit_for_request(
        &self,
        request_id: &str,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, at, actor, action, request_id, grant_id, detail, prev_hash, hash \
             FROM audit_events WHERE request_id = $1 ORDER BY seq",
        )
        .bind(request_id)
        .fetch_all(self.reader())
        .await?)
    }

    /// The chain head as recorded (seq, hash).
    pub async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(self.reader())
                .await?,
        )
    }
}
