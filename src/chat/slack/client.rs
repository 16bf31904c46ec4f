//! A small Slack Web API client: timeouts, `Retry-After` on 429, and Slack's `ok:false` errors
//! sorted into retry-worthy and needs-a-human. The token is sent only in the Authorization header.

use std::time::Duration;

use serde_json::{json, Value};

use crate::chat::ChatError;
use crate::config::Secret;
use crate::outbound;

/// Slack errors that no retry will fix: IT must act (token, scopes, channels).
const PERMANENT: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "channel_not_found",
    "user_not_found",
    "users_not_found",
    "is_archived",
    "not_in_channel",
    "cant_update_message",
    "message_not_found",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "ekm_access_denied",
    "team_access_not_granted",
    "file_uploads_disabled",
    "file_uploads_except_images_disabled",
    "file_type_not_allowed",
    "file_upload_size_restricted",
    "invalid_channel",
];

/// A Web API client bound to one bot token.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
}

impl SlackClient {
    /// A client for `base_url` (e.g. `https://slack.com/api`).
    pub fn new(base_url: &str, token: Secret, timeout: Duration) -> Self {
        Self {
            http: outbound::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Calls `method` with a JSON body; returns the response on `ok: true`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, ChatError> {
        let req = self
            .http
            .post(format!("{}/{method}", self.base_url))
            .bearer_auth(self.token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string());
        self.send(method, req).await
    }

    /// Calls `method` with form fields (for methods that do not read JSON, e.g. `users.lookupByEmail`).
    pub async fn call_form(
        &self,
        method: &str,
        fields: &[(&str, &str)],
    ) -> Result<Value, ChatError> {
        let req = self
            .http
            .post(format!("{}/{method}", self.base_url))
            .bearer_auth(self.token.expose())
            .form(fields);
        self.send(method, req).await
    }

    async fn send(&self, method: &str, req: reqwest::RequestBuilder) -> Result<Value, ChatError> {
        let resp = req.send().await.map_err(|e| {
            crate::metrics::slack_call(method, "transient");
            ChatError::Transient {
                message: format!("Slack {method}: {}", outbound::describe(&e)),
                retry_after: None,
            }
        })?;
        let status = resp.status();
        let retry_after = outbound::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let outcome = match status.as_u16() {
                429 => "rate_limited",
                _ if outbound::is_transient(status) => "transient",
                _ => "permanent",
            };
            crate::metrics::slack_call(method, outcome);
            let message = format!("Slack {method}: HTTP {status}");
            return Err(if outbound::is_transient(status) {
                ChatError::Transient {
                    message,
                    retry_after,
                }
            } else {
                ChatError::Permanent { message }
            });
        }
        let v: Value = serde_json::from_str(&text).map_err(|_| ChatError::Transient {
            message: format!("Slack {method}: response is not JSON"),
            retry_after: None,
        })?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            crate::metrics::slack_call(method, "ok");
            return Ok(v);
        }
        let error = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let message = format!("Slack {method}: {error}");
        crate::metrics::slack_call(
            method,
            match error {
                "ratelimited" => "rate_limited",
                e if PERMANENT.contains(&e) => "permanent",
                _ => "transient",
            },
        );
        Err(if PERMANENT.contains(&error) {
            ChatError::Permanent { message }
        } else {
            ChatError::Transient {
                message,
                retry_after: if error == "ratelimited" {
                    retry_after
                } else {
                    None
                },
            }
        })
    }

    /// `chat.postMessage`; returns (channel, ts).
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&[Value]>,
    ) -> Result<(String, String), ChatError> {
        let mut body =
            json!({"channel": channel, "text": text, "unfurl_links": false, "unfurl_media": false});
        if let Some(b) = blocks {
            body["blocks"] = Value::Array(b.to_vec());
        }
        let v = self.call("chat.postMessage", &body).await?;
        let ch = v
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or(channel)
            .to_string();
        let ts = v
            .get("ts")
            .and_then(Value::as_str)
            .ok_or_else(|| ChatError::Permanent {
                message: "Slack chat.postMessage: no ts in response".into(),
            })?
            .to_string();
        Ok((ch, ts))
    }

    /// `chat.update`.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &[Value],
    ) -> Result<(), ChatError> {
        self.call(
            "chat.update",
            &json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks}),
        )
        .await
        .map(|_| ())
    }

    /// `chat.postEphemeral`.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), ChatError> {
        self.call(
            "chat.postEphemeral",
            &json!({"channel": channel, "user": user, "text": text}),
        )
        .await
        .map(|_| ())
    }

    /// `views.open`: shows a modal (the `trigger_id` is valid for 3 seconds).
    pub async fn views_open(&self, trigger_id: &str, view: &Value) -> Result<(), ChatError> {
        self.call(
            "views.open",
            &json!({"trigger_id": trigger_id, "view": view}),
        )
        .await
        .map(|_| ())
    }

    /// `views.publish`: sets a person's App Home.
    pub async fn views_publish(&self, user: &str, view: &Value) -> Result<(), ChatError> {
        self.call("views.publish", &json!({"user_id": user, "view": view}))
            .await
            .map(|_| ())
    }

    /// Shares a file in `channel` with Slack's upload flow: `files.getUploadURLExternal`, the bytes
    /// POSTed to the upload URL it returns (pre-signed: no token is sent there), then
    /// `files.completeUploadExternal` with `channel_id` and `comment` beside the file.
    pub async fn upload_file(
        &self,
        channel: &str,
        filename: &str,
        title: &str,
        alt_text: &str,
        comment: &str,
        bytes: &[u8],
    ) -> Result<String, ChatError> {
        let length = bytes.len().to_string();
        let alt: String = alt_text.chars().take(1000).collect();
        let v = self
            .call_form(
                "files.getUploadURLExternal",
                &[
                    ("filename", filename),
                    ("length", &length),
                    ("alt_txt", &alt),
                ],
            )
            .await?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ChatError::Permanent {
                    message: format!("Slack files.getUploadURLExternal: no {name} in response"),
                })
        };
        let (url, file_id) = (field("upload_url")?, field("file_id")?);
        self.upload_bytes(&url, bytes).await?;
        self.call(
            "files.completeUploadExternal",
            &json!({"files": [{"id": file_id, "title": title}], "channel_id": channel,
                    "initial_comment": comment}),
        )
        .await?;
        Ok(file_id)
    }

    /// POSTs a file's bytes to the upload URL Slack handed out.
    async fn upload_bytes(&self, url: &str, bytes: &[u8]) -> Result<(), ChatError> {
        const METHOD: &str = "files.upload_url";
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|e| {
                crate::metrics::slack_call(METHOD, "transient");
                ChatError::Transient {
                    message: format!("Slack file upload: {}", outbound::describe(&e)),
                    retry_after: None,
                }
            })?;
        let status = resp.status();
        if status.is_success() {
            crate::metrics::slack_call(METHOD, "ok");
            return Ok(());
        }
        let retry_after = outbound::retry_after(resp.headers());
        let message = format!("Slack file upload: HTTP {status}");
        if outbound::is_transient(status) {
            crate::metrics::slack_call(METHOD, "transient");
            Err(ChatError::Transient {
                message,
                retry_after,
            })
        } else {
            crate::metrics::slack_call(METHOD, "permanent");
            Err(ChatError::Permanent { message })
        }
    }

    /// `users.lookupByEmail`: the user id, or `None` when Slack has no such user.
    pub async fn lookup_by_email(&self, email: &str) -> Result<Option<String>, ChatError> {
        match self
            .call_form("users.lookupByEmail", &[("email", email)])
            .await
        {
            Ok(v) => Ok(v
                .pointer("/user/id")
                .and_then(Value::as_str)
                .map(str::to_string)),
            Err(ChatError::Permanent { message }) if message.ends_with("users_not_found") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
