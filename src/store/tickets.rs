//! Service-desk tickets: which ticket records which request, and how far it has been written.

use sqlx::FromRow;

use super::batch::Batch;
use super::{Store, StoreError, Tx};

/// A request's ticket as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TicketRecord {
    pub request_id: String,
    /// The `[service_desks.<name>]` it lives in.
    pub desk: String,
    /// None until the desk answered the create.
    pub ticket_key: Option<String>,
    pub url: Option<String>,
    /// 1: filed in the desk first (its webhook brought the request in).
    pub inbound: i64,
    pub queued: i64,
    pub failed_state: Option<String>,
    pub synced_state: Option<String>,
    pub resolved: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "request_id, desk, ticket_key, url, inbound, queued, failed_state, synced_state, resolved, updated_at";

/// A request whose ticket is behind its state.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TicketDue {
    pub request_id: String,
    pub app: String,
    pub state: String,
}

impl Tx {
    /// Links a ticket filed in the desk to the request it became (once; a retried webhook
    /// changes nothing).
    pub async fn link_inbound_ticket(
        &mut self,
        request_id: &str,
        desk: &str,
        key: &str,
        url: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut b = Batch::new(self.backend());
        push_link_inbound_ticket(&mut b, request_id, desk, key, url, now_ms)?;
        b.execute(self.conn()).await
    }

    /// Claims the sync of `request_id`'s ticket (a compare-and-set on `queued`): true when this
    /// call should queue the sync job; one sync per ticket is queued or running at a time.
    pub async fn claim_ticket_sync(
        &mut self,
        request_id: &str,
        desk: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO tickets (request_id, desk, queued, updated_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(desk)
        .bind(now_ms)
        .execute(self.conn())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(true);
        }
        let claimed = sqlx::query(
            "UPDATE tickets SET queued = 1, updated_at = $1 WHERE request_id = $2 AND queued = 0",
        )
        .bind(now_ms)
        .bind(request_id)
        .execute(self.conn())
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// A sync given up: not retried until the request's state moves on.
    pub async fn set_ticket_sync_failed(
        &mut self,
        request_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tickets SET queued = 0, updated_at = $1, failed_state = \
             (SELECT state FROM requests WHERE id = $2) WHERE request_id = $2",
        )
        .bind(now_ms)
        .bind(request_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl Store {
    /// The ticket of a request, if it has one.
    pub async fn ticket(&self, request_id: &str) -> Result<Option<TicketRecord>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tickets WHERE request_id = $1"
        )))
        .bind(request_id)
        .fetch_optional(&mut *self.read_conn().await?)
        .await?)
    }

    /// Records the desk's answer to a create.
    pub async fn set_ticket_created(
        &self,
        request_id: &str,
        key: &str,
        url: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tickets SET ticket_key = $1, url = $2, updated_at = $3 WHERE request_id = $4",
        )
        .bind(key)
        .bind(url)
        .bind(now_ms)
        .bind(request_id)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Records that the ticket now shows `state` (and whether it is resolved); the sync is over.
    pub async fn set_ticket_synced(
        &self,
        request_id: &str,
        state: &str,
        resolved: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tickets SET synced_state = $1, resolved = $2, updated_at = $3, queued = 0, \
             failed_state = NULL WHERE request_id = $4",
        )
        .bind(state)
        .bind(i64::from(resolved))
        .bind(now_ms)
        .bind(request_id)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Requests of these apps (or filed from a desk), changed since `since_ms`, whose ticket is
    /// behind their state with no sync queued.
    pub async fn tickets_due(
        &self,
        apps: &[String],
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<TicketDue>, StoreError> {
        let list: Vec<String> = (0..apps.len()).map(|i| format!("${}", i + 3)).collect();
        let in_apps = if list.is_empty() {
            "1 = 0".to_string()
        } else {
            format!("r.app IN ({})", list.join(", "))
        };
        let sql = format!(
            "SELECT r.id AS request_id, r.app, r.state FROM requests r \
             LEFT JOIN tickets t ON t.request_id = r.id \
             WHERE r.updated_at >= $1 AND ({in_apps} OR t.inbound = 1) \
             AND (t.request_id IS NULL OR (t.queued = 0 \
                  AND (t.synced_state IS NULL OR t.synced_state <> r.state) \
                  AND (t.failed_state IS NULL OR t.failed_state <> r.state))) \
             ORDER BY r.updated_at LIMIT $2"
        );
        let mut q = sqlx::query_as::<_, TicketDue>(sqlx::AssertSqlSafe(sql))
            .bind(since_ms)
            .bind(limit);
        for a in apps {
            q = q.bind(a);
        }
        Ok(q.fetch_all(&mut *self.read_conn().await?).await?)
    }
}

/// Adds [`Tx::link_inbound_ticket`]'s insert to `b`.
pub(crate) fn push_link_inbound_ticket(
    b: &mut Batch,
    request_id: &str,
    desk: &str,
    key: &str,
    url: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    b.push(
        "INSERT INTO tickets (request_id, desk, ticket_key, url, inbound, updated_at) \
         VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (request_id) DO NOTHING",
    );
    b.bind(request_id)?;
    b.bind(desk)?;
    b.bind(key)?;
    b.bind(url)?;
    b.bind(now_ms)
}
