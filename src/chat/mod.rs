//! Chat platforms behind one trait: what the jobs need to say, not how each platform says it.
//!
//! Invariant: nothing here knows about the store or the connectors; `chat` depends only on
//! `domain` (and the shared outbound helpers).

pub mod chart;
pub mod command;
pub mod digest;
pub mod slack;
pub mod teams;

use std::time::Duration;

use async_trait::async_trait;

/// A failure to talk to a chat platform, classified for the job queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Worth retrying (rate limits, 5xx, timeouts), after `retry_after` when the platform said so.
    #[error("{message} (will retry)")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (bad token, unknown channel); IT must fix something.
    #[error("{message}")]
    Permanent { message: String },
}

/// Where a posted message is, so it can be updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

/// A person as a card shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLabel {
    pub name: String,
    /// Their id on the card's platform (to mention them), when known.
    pub chat_id: Option<String>,
}

/// How a request ended, for the cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Denied,
}

/// Whether the card still asks for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardStatus {
    /// Buttons live.
    Pending,
    /// Decided: no button stays live.
    Decided {
        verdict: Verdict,
        by: PersonLabel,
        at_ms: i64,
    },
    /// Ended without a decision (cancelled by the requester, timed out): no button stays live.
    Closed { why: String, at_ms: i64 },
}

/// One open request on a person's home page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeRequest {
    pub id: String,
    /// `app/entitlement`.
    pub access: String,
    /// In words: "waiting for approval".
    pub state: String,
    pub created_at_ms: i64,
}

/// One grant a person holds, on their home page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeGrant {
    pub id: String,
    pub request_id: String,
    pub access: String,
    pub expires_at_ms: Option<i64>,
}

/// What a person sees on the bot's home page: their requests, their access, what they may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeView {
    pub requests: Vec<HomeRequest>,
    pub grants: Vec<HomeGrant>,
    /// (app name, app id, entitlement ids).
    pub requestable: Vec<(String, String, Vec<String>)>,
    pub now_ms: i64,
}

/// The approval card an approver sees: who, what, how long, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCard {
    pub request_id: String,
    pub requester: PersonLabel,
    pub subject: PersonLabel,
    pub app: String,
    pub entitlement: String,
    /// `4h`, or `permanent`.
    pub duration: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub risk: String,
    /// The policy's reasons, in words.
    pub policy_reasons: Vec<String>,
    /// Facts that help decide: held before, how many in the team hold it, open requests.
    pub context: Vec<String>,
    /// Shorter durations the approver may approve instead (empty: none offered).
    pub shorter: Vec<String>,
    /// Set on a card sent to a stand-in: whom they decide for, and why.
    pub on_behalf_of: Option<String>,
    pub status: CardStatus,
}

/// `action_id` of the Extend button on expiry warnings; its value is the grant id.
pub const EXTEND_ACTION: &str = "grantry.extend";

/// One button under a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub action_id: String,
    pub value: String,
}

/// A message with buttons that may later be replaced (e.g. an access review card).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionMessage {
    /// May use `*bold*`; user input in it is escaped.
    pub text: String,
    /// None once decided.
    pub buttons: Vec<Button>,
}

/// An image to post in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// e.g. `grantry-digest-2026-11-30.png`.
    pub filename: String,
    pub title: String,
    /// What it shows, in words (screen readers; the message beside it).
    pub alt_text: String,
    /// The PNG bytes.
    pub png: Vec<u8>,
}

/// A chat platform, as the jobs use it.
#[async_trait]
pub trait ChatPlatform: Send + Sync {
    /// `slack`, `teams`.
    fn name(&self) -> &'static str;
    /// The platform user id for an email, if the person is on the platform.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<String>, ChatError>;
    /// Sends an approver their card (a direct message).
    async fn post_card(&self, user: &str, card: &ApprovalCard) -> Result<MessageRef, ChatError>;
    /// Replaces a posted card (after a decision).
    async fn update_card(&self, at: &MessageRef, card: &ApprovalCard) -> Result<(), ChatError>;
    /// Sends a person a direct message. `text` may use `*bold*`; user input in it is escaped.
    async fn send_direct(&self, user: &str, text: &str) -> Result<(), ChatError>;
    /// Shows a message only `user` sees, in `channel`.
    async fn send_ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError>;
    /// Sends a direct message with one button (platforms without buttons send the text).
    async fn send_direct_with_button(
        &self,
        user: &str,
        text: &str,
        _button: &Button,
    ) -> Result<(), ChatError> {
        self.send_direct(user, text).await
    }
    /// Sends a direct message with buttons that can be updated later.
    async fn post_action_message(
        &self,
        user: &str,
        msg: &ActionMessage,
    ) -> Result<MessageRef, ChatError>;
    /// Replaces a message sent with [`ChatPlatform::post_action_message`].
    async fn update_action_message(
        &self,
        at: &MessageRef,
        msg: &ActionMessage,
    ) -> Result<(), ChatError>;
    /// Sends a person the guided request form as a message. Platforms whose form opens
    /// elsewhere (Slack's modal) send the help text.
    async fn send_request_form(
        &self,
        user: &str,
        _catalog: &crate::domain::Catalog,
    ) -> Result<(), ChatError> {
        self.send_direct(user, command::HELP).await
    }
    /// Shows a person their home page (Slack's App Home); platforms without one do nothing.
    async fn publish_home(&self, _user: &str, _home: &HomeView) -> Result<(), ChatError> {
        Ok(())
    }
    /// Posts IT's digest in `channel`. The default posts [`digest::Digest::text`] with
    /// [`ChatPlatform::send_direct`]; platforms with richer layout override it.
    async fn post_digest(&self, channel: &str, digest: &digest::Digest) -> Result<(), ChatError> {
        self.send_direct(channel, &digest.text()).await
    }
    /// Posts an image in `channel`. Returns whether it was posted: the default, for platforms
    /// that cannot post images, posts nothing and returns `false`.
    async fn post_image(&self, _channel: &str, _image: &Image) -> Result<bool, ChatError> {
        Ok(false)
    }
}

/// "3h 20m left", "2d 4h left", "expired".
pub fn time_left(now_ms: i64, until_ms: i64) -> String {
    let mins = (until_ms - now_ms) / 60_000;
    if mins <= 0 {
        return "expires now".into();
    }
    let (d, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (d, h) {
        (0, 0) => format!("{m}m left"),
        (0, _) => format!("{h}h {m}m left"),
        _ => format!("{d}d {h}h left"),
    }
}

/// Escapes user-provided text for a message: `&`, `<`, `>` (so a reason cannot ping `@channel`,
/// mention people or fake a link).
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_defuses_mentions_and_links() {
        assert_eq!(
            super::escape("<!channel> see <https://evil|slack.com> & co"),
            "&lt;!channel&gt; see &lt;https://evil|slack.com&gt; &amp; co"
        );
    }
}
