//! The store as Teams' [`ConversationBook`]: conversation references live in
//! `teams_conversations`, so proactive messages reach people after a restart or on another replica.

use async_trait::async_trait;

use crate::chat::teams::{ConversationBook, ConversationRef};
use crate::chat::ChatError;
use crate::store::teams::TeamsConversation;
use crate::store::{Store, StoreError};

/// Conversation references kept in the store.
pub struct StoredConversations {
    pub store: Store,
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

fn transient(e: StoreError) -> ChatError {
    ChatError::Transient {
        message: e.to_string(),
        retry_after: None,
    }
}

fn from_row(c: TeamsConversation) -> ConversationRef {
    ConversationRef {
        key: c.user_key,
        user_id: c.user_id,
        conversation_id: c.conversation_id,
        service_url: c.service_url,
        tenant_id: c.tenant_id,
    }
}

#[async_trait]
impl ConversationBook for StoredConversations {
    async fn by_key(&self, key: &str) -> Result<Option<ConversationRef>, ChatError> {
        Ok(self
            .store
            .teams_conversation_of(key)
            .await
            .map_err(transient)?
            .map(from_row))
    }

    async fn by_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Option<ConversationRef>, ChatError> {
        Ok(self
            .store
            .teams_conversation_by_id(conversation_id)
            .await
            .map_err(transient)?
            .map(from_row))
    }

    async fn remember(&self, r: &ConversationRef) -> Result<(), ChatError> {
        self.store
            .remember_teams_conversation(&TeamsConversation {
                user_key: r.key.clone(),
                user_id: r.user_id.clone(),
                conversation_id: r.conversation_id.clone(),
                service_url: r.service_url.clone(),
                tenant_id: r.tenant_id.clone(),
                updated_at: self.clock.now_ms(),
            })
            .await
            .map_err(transient)
    }
}
