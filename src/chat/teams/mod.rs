//! Microsoft Teams through the Bot Framework, behind [`ChatPlatform`](crate::chat::ChatPlatform).
//!
//! `auth.rs` authenticates the Bot Connector's calls (JWT against the OpenID metadata's keys),
//! `activity.rs` reads incoming activities, `cards.rs` renders Adaptive Cards, `connector.rs`
//! calls the Bot Connector REST API. People are known by their Entra object id (the people
//! file's `teams_id`); where they are reached (conversation id and service URL) is kept in a
//! [`ConversationBook`], which the store implements (this module does not know the store).

pub mod activity;
pub mod auth;
pub mod cards;
pub mod connector;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::chat::{ActionMessage, ApprovalCard, Button, ChatError, ChatPlatform, MessageRef};
use connector::BotConnector;

/// Where a person (or a channel) is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRef {
    /// The person's Entra object id, or a channel's conversation id.
    pub key: String,
    /// The Teams user id (`29:…`), or the key again where none is known.
    pub user_id: String,
    pub conversation_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
}

/// Stored conversation references.
#[async_trait]
pub trait ConversationBook: Send + Sync {
    /// The reference for a person's (or channel's) key.
    async fn by_key(&self, key: &str) -> Result<Option<ConversationRef>, ChatError>;
    /// The reference holding a conversation id.
    async fn by_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Option<ConversationRef>, ChatError>;
    /// Remembers a reference (replacing the key's earlier one).
    async fn remember(&self, r: &ConversationRef) -> Result<(), ChatError>;
}

/// Teams as a [`ChatPlatform`].
pub struct TeamsPlatform {
    connector: BotConnector,
    book: Arc<dyn ConversationBook>,
    /// For people who never wrote to the bot.
    default_service_url: String,
    tenant_id: Option<String>,
}

impl TeamsPlatform {
    pub fn new(
        connector: BotConnector,
        book: Arc<dyn ConversationBook>,
        default_service_url: &str,
        tenant_id: Option<String>,
    ) -> Self {
        Self {
            connector,
            book,
            default_service_url: default_service_url.to_string(),
            tenant_id,
        }
    }

    /// Where to reach `key`: a stored reference, a channel conversation id, or a new 1:1
    /// conversation (remembered).
    async fn reach(&self, key: &str) -> Result<ConversationRef, ChatError> {
        if let Some(r) = self.book.by_key(key).await? {
            return Ok(r);
        }
        if let Some(r) = self.book.by_conversation(key).await? {
            return Ok(r);
        }
        if key.starts_with("19:") || key.starts_with("a:") {
            // A channel or chat named by its conversation id: post there directly.
            return Ok(ConversationRef {
                key: key.to_string(),
                user_id: key.to_string(),
                conversation_id: key.to_string(),
                service_url: self.default_service_url.clone(),
                tenant_id: self.tenant_id.clone(),
            });
        }
        let conversation_id = self
            .connector
            .create_conversation(&self.default_service_url, self.tenant_id.as_deref(), key)
            .await?;
        let r = ConversationRef {
            key: key.to_string(),
            user_id: key.to_string(),
            conversation_id,
            service_url: self.default_service_url.clone(),
            tenant_id: self.tenant_id.clone(),
        };
        self.book.remember(&r).await?;
        Ok(r)
    }

    async fn send(&self, key: &str, activity: &Value) -> Result<MessageRef, ChatError> {
        let r = self.reach(key).await?;
        let id = self
            .connector
            .send(&r.service_url, &r.conversation_id, activity)
            .await?;
        Ok(MessageRef {
            channel: r.conversation_id,
            ts: id,
        })
    }

    async fn replace(&self, at: &MessageRef, activity: &Value) -> Result<(), ChatError> {
        let service_url = match self.book.by_conversation(&at.channel).await? {
            Some(r) => r.service_url,
            None => self.default_service_url.clone(),
        };
        self.connector
            .update(&service_url, &at.channel, &at.ts, activity)
            .await
    }

    /// Sends an arbitrary card to a person or channel (used for answers to typed commands).
    pub async fn send_card(&self, key: &str, card: &Value) -> Result<MessageRef, ChatError> {
        self.send(key, &card_activity(card, "")).await
    }
}

/// A message activity carrying markdown text.
pub fn text_activity(text: &str) -> Value {
    json!({"type": "message", "textFormat": "markdown", "text": cards::to_markdown(text)})
}

/// A message activity carrying one card (`summary`: the notification's text).
pub fn card_activity(card: &Value, summary: &str) -> Value {
    let mut a = json!({"type": "message", "attachments": [cards::attachment(card)]});
    if !summary.is_empty() {
        a["summary"] = json!(summary);
    }
    a
}

#[async_trait]
impl ChatPlatform for TeamsPlatform {
    fn name(&self) -> &'static str {
        "teams"
    }

    /// The Bot Connector cannot look people up by email: the people file's `teams_id` maps them.
    async fn find_user_by_email(&self, _email: &str) -> Result<Option<String>, ChatError> {
        Ok(None)
    }

    async fn post_card(&self, user: &str, card: &ApprovalCard) -> Result<MessageRef, ChatError> {
        let summary = crate::chat::slack::blocks::card_text(card);
        self.send(user, &card_activity(&cards::approval_card(card), &summary))
            .await
    }

    async fn update_card(&self, at: &MessageRef, card: &ApprovalCard) -> Result<(), ChatError> {
        let summary = crate::chat::slack::blocks::card_text(card);
        self.replace(at, &card_activity(&cards::approval_card(card), &summary))
            .await
    }

    async fn send_direct(&self, user: &str, text: &str) -> Result<(), ChatError> {
        self.send(user, &text_activity(text)).await.map(|_| ())
    }

    /// Teams has no message only one person sees in a shared place: the person gets a direct
    /// message instead.
    async fn send_ephemeral(
        &self,
        _channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), ChatError> {
        self.send_direct(user, text).await
    }

    async fn send_direct_with_button(
        &self,
        user: &str,
        text: &str,
        button: &Button,
    ) -> Result<(), ChatError> {
        let msg = ActionMessage {
            text: text.to_string(),
            buttons: vec![button.clone()],
        };
        self.post_action_message(user, &msg).await.map(|_| ())
    }

    async fn post_action_message(
        &self,
        user: &str,
        msg: &ActionMessage,
    ) -> Result<MessageRef, ChatError> {
        self.send(user, &card_activity(&cards::action_card(msg), ""))
            .await
    }

    /// Posts the chart inline (a base64 `data:` image attachment, which Teams shows in chats and
    /// channels).
    async fn post_image(
        &self,
        channel: &str,
        image: &crate::chat::Image,
    ) -> Result<bool, ChatError> {
        use base64::Engine;
        let activity = json!({
            "type": "message",
            "text": cards::to_markdown(&image.title),
            "attachments": [{
                "contentType": "image/png",
                "contentUrl": format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(&image.png)
                ),
                "name": image.filename,
            }],
        });
        self.send(channel, &activity).await.map(|_| true)
    }

    async fn send_request_form(
        &self,
        user: &str,
        catalog: &crate::domain::Catalog,
    ) -> Result<(), ChatError> {
        let form = cards::request_form(catalog, None, &Value::Null);
        self.send(user, &card_activity(&form, "Request access"))
            .await
            .map(|_| ())
    }

    async fn update_action_message(
        &self,
        at: &MessageRef,
        msg: &ActionMessage,
    ) -> Result<(), ChatError> {
        self.replace(at, &card_activity(&cards::action_card(msg), ""))
            .await
    }
}
