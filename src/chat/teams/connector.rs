//! The Bot Connector REST API (v3), as the bot calls it: an OAuth client-credentials token
//! (cached until shortly before it expires), then activities sent to, and updated in,
//! conversations at the service URL each conversation lives at.
//!
//! Failures are classed like every other outbound call: 429/5xx/timeouts are transient (with
//! `Retry-After`); a 401 drops the cached token and is transient once (the next try gets a fresh
//! token); other 4xx are permanent. The client secret is only ever sent in the token request's body.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::chat::ChatError;
use crate::config::Secret;
use crate::outbound;

/// Credentials and endpoints for outgoing calls.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    pub app_id: String,
    pub app_password: Secret,
    pub token_url: String,
    pub scope: String,
    pub timeout: Duration,
}

/// A Bot Connector client.
pub struct BotConnector {
    settings: ConnectorSettings,
    http: reqwest::Client,
    token: Mutex<Option<(Secret, Instant)>>,
}

fn transient(message: String, retry_after: Option<Duration>) -> ChatError {
    ChatError::Transient {
        message,
        retry_after,
    }
}

/// `https://x/amer/` + `v3/conversations` without doubling or losing the slash.
fn join(service_url: &str, path: &str) -> String {
    format!("{}/{}", service_url.trim_end_matches('/'), path)
}

/// Conversation ids may contain `:`, `@`, `;`: percent-encode them for a path segment.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl BotConnector {
    pub fn new(settings: ConnectorSettings) -> Self {
        let http = outbound::client(settings.timeout);
        Self {
            settings,
            http,
            token: Mutex::new(None),
        }
    }

    /// The bot's id in conversations: `28:<app id>`.
    pub fn bot_id(&self) -> String {
        format!("28:{}", self.settings.app_id)
    }

    async fn token(&self) -> Result<Secret, ChatError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.app_id.as_str()),
            ("client_secret", self.settings.app_password.expose()),
            ("scope", self.settings.scope.as_str()),
        ];
        let resp = self
            .http
            .post(&self.settings.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| transient(outbound::describe(&e), None))?;
        let status = resp.status();
        let retry_after = outbound::retry_after(resp.headers());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let what = format!(
                "the Bot Framework token endpoint answered {status} ({})",
                body["error"].as_str().unwrap_or("no error code")
            );
            return Err(if outbound::is_transient(status) {
                transient(what, retry_after)
            } else {
                ChatError::Permanent {
                    message: format!("{what}: check teams.app_id and the app password"),
                }
            });
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ChatError::Permanent {
                message: "the Bot Framework token endpoint answered without access_token".into(),
            })?;
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        // Renew five minutes early (or halfway for short-lived tokens).
        let margin = (lifetime / 2).min(300);
        let secret = Secret::new(token);
        *cached = Some((
            secret.clone(),
            Instant::now() + Duration::from_secs(lifetime - margin),
        ));
        Ok(secret)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: &Value,
        what: &str,
    ) -> Result<Value, ChatError> {
        let token = self.token().await?;
        let resp = self
            .http
            .request(method, &url)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| transient(outbound::describe(&e), None))?;
        let status = resp.status();
        let retry_after = outbound::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let path = url.split('?').next().unwrap_or("");
        let message = format!(
            "Teams {what} at {path} answered {status}: {}",
            outbound::excerpt(&text)
        );
        if status == reqwest::StatusCode::UNAUTHORIZED {
            *self.token.lock().await = None;
            return Err(transient(message, None));
        }
        Err(if outbound::is_transient(status) {
            transient(message, retry_after)
        } else {
            ChatError::Permanent { message }
        })
    }

    /// Sends an activity to a conversation; returns the new activity's id.
    pub async fn send(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity: &Value,
    ) -> Result<String, ChatError> {
        let url = join(
            service_url,
            &format!("v3/conversations/{}/activities", segment(conversation_id)),
        );
        let r = self
            .call(reqwest::Method::POST, url, activity, "send message")
            .await?;
        Ok(r["id"].as_str().unwrap_or_default().to_string())
    }

    /// Replaces activity `activity_id` in a conversation (a card after a decision).
    pub async fn update(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), ChatError> {
        let url = join(
            service_url,
            &format!(
                "v3/conversations/{}/activities/{}",
                segment(conversation_id),
                segment(activity_id)
            ),
        );
        let mut activity = activity.clone();
        activity["id"] = json!(activity_id);
        self.call(reqwest::Method::PUT, url, &activity, "update message")
            .await
            .map(|_| ())
    }

    /// Opens (or finds: Teams answers with the existing one) the 1:1 conversation with `user_id`.
    pub async fn create_conversation(
        &self,
        service_url: &str,
        tenant_id: Option<&str>,
        user_id: &str,
    ) -> Result<String, ChatError> {
        let mut body = json!({
            "bot": {"id": self.bot_id()},
            "members": [{"id": user_id}],
            "isGroup": false,
        });
        if let Some(t) = tenant_id {
            body["tenantId"] = json!(t);
            body["channelData"] = json!({"tenant": {"id": t}});
        }
        let url = join(service_url, "v3/conversations");
        let r = self
            .call(reqwest::Method::POST, url, &body, "create conversation")
            .await?;
        r["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ChatError::Permanent {
                message: "Teams created a conversation but returned no id".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conversation_ids_are_path_safe() {
        assert_eq!(
            super::segment("19:abc@thread.tacv2;messageid=1"),
            "19:abc@thread.tacv2%3Bmessageid%3D1"
        );
        assert_eq!(
            super::join("https://smba.trafficmanager.net/amer/", "v3/conversations"),
            "https://smba.trafficmanager.net/amer/v3/conversations"
        );
    }
}
