//! Microsoft Teams conversation references: where to reach a person or a channel proactively.

use sqlx::FromRow;

use super::{Store, StoreError};

/// One stored conversation reference.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TeamsConversation {
    /// The person's Entra object id (or a channel's conversation id).
    pub user_key: String,
    /// The Teams user id (`29:…`).
    pub user_id: String,
    pub conversation_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
    pub updated_at: i64,
}

const COLUMNS: &str = "user_key, user_id, conversation_id, service_url, tenant_id, updated_at";

impl Store {
    /// Remembers (or refreshes) where `c.user_key` is reached.
    pub async fn remember_teams_conversation(
        &self,
        c: &TeamsConversation,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO teams_conversations (user_key, user_id, conversation_id, service_url, tenant_id, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (user_key) DO UPDATE SET user_id = excluded.user_id, \
             conversation_id = excluded.conversation_id, service_url = excluded.service_url, \
             tenant_id = COALESCE(excluded.tenant_id, teams_conversations.tenant_id), updated_at = excluded.updated_at",
        )
        .bind(&c.user_key)
        .bind(&c.user_id)
        .bind(&c.conversation_id)
        .bind(&c.service_url)
        .bind(&c.tenant_id)
        .bind(c.updated_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Where the person (or channel) with this key is reached, if known.
    pub async fn teams_conversation_of(
        &self,
        user_key: &str,
    ) -> Result<Option<TeamsConversation>, StoreError> {
        Ok(
            sqlx::query_as::<_, TeamsConversation>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM teams_conversations WHERE user_key = $1"
            )))
            .bind(user_key)
            .fetch_optional(&mut *self.read_conn().await?)
            .await?,
        )
    }

    /// The reference holding this conversation id (for updating a message posted there).
    pub async fn teams_conversation_by_id(
        &self,
        conversation_id: &str,
    ) -> Result<Option<TeamsConversation>, StoreError> {
        Ok(sqlx::query_as::<_, TeamsConversation>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM teams_conversations WHERE conversation_id = $1 ORDER BY updated_at DESC LIMIT 1"
        )))
        .bind(conversation_id)
        .fetch_optional(&mut *self.read_conn().await?)
        .await?)
    }
}
