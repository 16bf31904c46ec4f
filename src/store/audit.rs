//! The audit chain's storage: append inside a change's transaction, read in order.

use serde_json::Value;
use sqlx::FromRow;

use super::batch::{Batch, BatchRow};
use super::{Backend, Store, StoreError, Tx};

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
    /// Appends an event to the chain; returns its seq.
    pub async fn audit(&mut self, at_ms: i64, e: NewAuditEvent<'_>) -> Result<i64, StoreError> {
        self.audit_timed(&[(at_ms, &e)]).await
    }

    /// Appends several events at once (one head move, inserts of many rows): for sweeps that
    /// record an event per grant. The chain is the same as appending them one by one.
    pub async fn audit_many(
        &mut self,
        at_ms: i64,
        events: &[NewAuditEvent<'_>],
    ) -> Result<(), StoreError> {
        let timed: Vec<(i64, &NewAuditEvent<'_>)> = events.iter().map(|e| (at_ms, e)).collect();
        self.audit_timed(&timed).await.map(|_| ())
    }

    /// Appends events each with its own time, in order, with one head move; returns the last
    /// one's seq (0 when there are none).
    pub(crate) async fn audit_timed(
        &mut self,
        events: &[(i64, &NewAuditEvent<'_>)],
    ) -> Result<i64, StoreError> {
        self.run_with_audit(self.batch(), events).await
    }

    /// Runs `writes` (a batch of this transaction's, [`Tx::batch`]) with `events` appended to
    /// the chain in the same batch; returns the last event's seq (0 when there are none). On
    /// SQLite that is two round trips: the head's read, then everything else.
    pub(crate) async fn run_with_audit(
        &mut self,
        mut writes: Batch,
        events: &[(i64, &NewAuditEvent<'_>)],
    ) -> Result<i64, StoreError> {
        let mut seq = 0;
        if !events.is_empty() {
            let mut read = self.batch();
            push_read_head(&mut read);
            let head = read_head(read.fetch(self.conn()).await?.first())?;
            seq = push_append(&mut writes, head, events)?.0;
        }
        if writes.enqueues() {
            self.mark_enqueued();
        }
        if !writes.is_empty() {
            writes.execute(self.conn()).await?;
        }
        Ok(seq)
    }
}

/// Reads the chain's head (seq, hash) to append after it. Appenders are serialised: on
/// PostgreSQL this locks the head's row until the commit; SQLite has one writer.
pub(crate) fn push_read_head(b: &mut Batch) {
    b.push(match b.backend() {
        Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
        Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
    });
}

/// [`push_read_head`] for a batch written after `head`, known beforehand: on PostgreSQL the
/// statement fails (a division by zero) unless the head is `head` once its row is locked, so a
/// batch built on a head that another writer has moved since, or that a batch before it on the
/// same connection was to leave but rolled back, fails whole. SQLite's one writer reads it.
pub(crate) fn push_read_head_expecting(
    b: &mut Batch,
    head: &(i64, String),
) -> Result<(), StoreError> {
    match b.backend() {
        Backend::Sqlite => {
            push_read_head(b);
            Ok(())
        }
        Backend::Postgres => push_lock_head_expecting_and(b, head, ""),
    }
}

/// PostgreSQL: [`push_read_head_expecting`]'s statement with `condition` (` AND …`, its values
/// bound next by the caller) added to what the row must meet before it is locked.
pub(crate) fn push_lock_head_expecting_and(
    b: &mut Batch,
    (seq, hash): &(i64, String),
    condition: &str,
) -> Result<(), StoreError> {
    b.push(&format!(
        "SELECT seq, hash FROM audit_head \
         WHERE id = 1 AND 1 / (seq = ? AND hash = ?)::int = 1{condition} FOR UPDATE"
    ));
    b.bind(*seq)?;
    b.bind(hash.as_str())
}

/// The head from the row [`push_read_head`] returned.
pub(crate) fn read_head(row: Option<&BatchRow>) -> Result<(i64, String), StoreError> {
    let row = row.ok_or_else(|| StoreError::Corrupt("the audit chain has no head".into()))?;
    Ok((row.get(0)?, row.get(1)?))
}

/// Adds `events` after `head` (their rows, then the head's move) to `b`; returns the new head
/// (`head` itself when there are none). The chain is the same as appending them one by one.
pub(crate) fn push_append(
    b: &mut Batch,
    head: (i64, String),
    events: &[(i64, &NewAuditEvent<'_>)],
) -> Result<(i64, String), StoreError> {
    let (mut seq, mut prev) = head;
    for chunk in events.chunks(ROWS_PER_INSERT) {
        b.push_values(
            "INSERT INTO audit_events (seq, at, actor, action, request_id, grant_id, detail, prev_hash, hash) VALUES ",
            chunk.len(),
            9,
            "",
        );
        for (at_ms, e) in chunk {
            seq += 1;
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
            b.bind(seq)?;
            b.bind(*at_ms)?;
            b.bind(e.actor)?;
            b.bind(e.action)?;
            b.bind(e.request_id)?;
            b.bind(e.grant_id)?;
            b.bind(detail)?;
            b.bind(std::mem::replace(&mut prev, hash.clone()))?;
            b.bind(hash)?;
        }
    }
    if !events.is_empty() {
        b.push("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1");
        b.bind(seq)?;
        b.bind(prev.as_str())?;
    }
    Ok((seq, prev))
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
        .fetch_all(&mut *self.read_conn().await?)
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
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }

    /// The chain head as recorded (seq, hash).
    pub async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&mut *self.read_conn().await?)
                .await?,
        )
    }
}
