//! Manual fulfilment tasks: a change a person in IT makes by hand and confirms with a button.

use sqlx::FromRow;

use super::{Store, StoreError, Tx};

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Fulfilment {
    pub id: String,
    pub task_key: String,
    /// `grant` or `revoke`.
    pub kind: String,
    pub request_id: String,
    pub grant_id: Option<String>,
    pub app: String,
    pub entitlement: String,
    pub target: String,
    pub subject_email: String,
    /// Where the task is posted.
    pub channel: String,
    pub revoke_by: Option<String>,
    pub revoke_reason: Option<String>,
    /// `open`, `done` or `failed`.
    pub state: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub message_channel: Option<String>,
    pub message_ts: Option<String>,
}

const COLUMNS: &str = "id, task_key, kind, request_id, grant_id, app, entitlement, target, subject_email, channel, \
     revoke_by, revoke_reason, state, created_at, decided_by, decided_at, message_channel, message_ts";

impl Tx {
    /// Opens a task, unless one with its key exists. Returns whether this call opened it.
    pub async fn insert_fulfilment(&mut self, f: &Fulfilment) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO fulfilments (id, task_key, kind, request_id, grant_id, app, entitlement, target, \
             subject_email, channel, revoke_by, revoke_reason, state, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) ON CONFLICT (task_key) DO NOTHING",
        )
        .bind(&f.id)
        .bind(&f.task_key)
        .bind(&f.kind)
        .bind(&f.request_id)
        .bind(&f.grant_id)
        .bind(&f.app)
        .bind(&f.entitlement)
        .bind(&f.target)
        .bind(&f.subject_email)
        .bind(&f.channel)
        .bind(&f.revoke_by)
        .bind(&f.revoke_reason)
        .bind(&f.state)
        .bind(f.created_at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes an open task as `done` or `failed` (compare-and-set). Returns whether this call did.
    pub async fn decide_fulfilment(
        &mut self,
        id: &str,
        state: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE fulfilments SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND state = 'open'",
        )
        .bind(state)
        .bind(by)
        .bind(now_ms)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens a failed task again (IT retried), to be posted anew.
    pub async fn reopen_fulfilment(&mut self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE fulfilments SET state = 'open', decided_by = NULL, decided_at = NULL, \
             message_channel = NULL, message_ts = NULL WHERE id = $1 AND state = 'failed'",
        )
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Where the task's message was posted.
    pub async fn set_fulfilment_message(
        &mut self,
        id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE fulfilments SET message_channel = $1, message_ts = $2 WHERE id = $3")
            .bind(channel)
            .bind(ts)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

impl Store {
    /// A task by id.
    pub async fn fulfilment(&self, id: &str) -> Result<Option<Fulfilment>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM fulfilments WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.read_conn().await?)
            .await?)
    }

    /// The task for a change (`grant:<request id>` or `revoke:<grant id>`).
    pub async fn fulfilment_by_key(&self, key: &str) -> Result<Option<Fulfilment>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM fulfilments WHERE task_key = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&mut *self.read_conn().await?)
            .await?)
    }

    /// Tasks still waiting for IT, oldest first.
    pub async fn open_fulfilments(&self) -> Result<Vec<Fulfilment>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM fulfilments WHERE state = 'open' ORDER BY created_at");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }
}
