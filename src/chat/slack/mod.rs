//! Slack: signed HTTP endpoints in, Block Kit and the Web API out.

pub mod blocks;
pub mod client;
pub mod payload;
pub mod signature;
pub mod views;

use async_trait::async_trait;

use crate::chat::digest::Digest;
use crate::chat::{
    ActionMessage, ApprovalCard, Button, ChatError, ChatPlatform, HomeView, Image, MessageRef,
};
pub use client::SlackClient;

/// Slack behind [`ChatPlatform`].
#[derive(Clone)]
pub struct SlackPlatform {
    client: SlackClient,
}

impl SlackPlatform {
    /// Slack through this Web API client.
    pub fn new(client: SlackClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ChatPlatform for SlackPlatform {
    fn name(&self) -> &'static str {
        "slack"
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<String>, ChatError> {
        self.client.lookup_by_email(email).await
    }

    async fn post_card(&self, user: &str, card: &ApprovalCard) -> Result<MessageRef, ChatError> {
        let (channel, ts) = self
            .client
            .post_message(
                user,
                &blocks::card_text(card),
                Some(&blocks::approval_card(card)),
            )
            .await?;
        Ok(MessageRef { channel, ts })
    }

    async fn update_card(&self, at: &MessageRef, card: &ApprovalCard) -> Result<(), ChatError> {
        self.client
            .update_message(
                &at.channel,
                &at.ts,
                &blocks::card_text(card),
                &blocks::approval_card(card),
            )
            .await
    }

    async fn send_direct(&self, user: &str, text: &str) -> Result<(), ChatError> {
        self.client.post_message(user, text, None).await.map(|_| ())
    }

    async fn send_ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError> {
        self.client.post_ephemeral(channel, user, text).await
    }

    async fn send_direct_with_button(
        &self,
        user: &str,
        text: &str,
        button: &Button,
    ) -> Result<(), ChatError> {
        let blocks = [
            serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
            serde_json::json!({"type": "actions", "elements": [{"type": "button", "action_id": button.action_id,
                "value": button.value, "text": {"type": "plain_text", "text": button.label}}]}),
        ];
        self.client
            .post_message(user, text, Some(&blocks))
            .await
            .map(|_| ())
    }

    async fn post_action_message(
        &self,
        user: &str,
        msg: &ActionMessage,
    ) -> Result<MessageRef, ChatError> {
        let (channel, ts) = self
            .client
            .post_message(user, &msg.text, Some(&blocks::action_message(msg)))
            .await?;
        Ok(MessageRef { channel, ts })
    }

    async fn update_action_message(
        &self,
        at: &MessageRef,
        msg: &ActionMessage,
    ) -> Result<(), ChatError> {
        self.client
            .update_message(&at.channel, &at.ts, &msg.text, &blocks::action_message(msg))
            .await
    }

    async fn publish_home(&self, user: &str, home: &HomeView) -> Result<(), ChatError> {
        self.client.views_publish(user, &views::home(home)).await
    }

    async fn post_digest(&self, channel: &str, digest: &Digest) -> Result<(), ChatError> {
        self.client
            .post_message(
                channel,
                &blocks::digest_text(digest),
                Some(&blocks::digest(digest)),
            )
            .await
            .map(|_| ())
    }

    async fn post_image(&self, channel: &str, image: &Image) -> Result<bool, ChatError> {
        self.client
            .upload_file(
                channel,
                &image.filename,
                &image.title,
                &image.alt_text,
                &image.alt_text,
                &image.png,
            )
            .await
            .map(|_| true)
    }
}
