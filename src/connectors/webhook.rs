//! Generic webhook: for an app with no connector yet, grantry POSTs a signed JSON event to a URL
//! the team owns, and the answer confirms or fails the change.
//!
//! Config (`[connectors.<name>]`, `type = "webhook"`): `url`, `secret_env`/`secret_file` (the HMAC
//! key, required), `timeout_secs`.
//!
//! The request: `POST url` with `Content-Type: application/json`, `X-Grantry-Timestamp: <unix
//! seconds>`, `X-Grantry-Signature: v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + body)>`
//! and a body `{"type": "grant" | "revoke" | "list_members", "connector", "account": {"id",
//! "login"}, "target", "sent_at"}` (`account` absent for `list_members`). Receivers should reject
//! a timestamp more than five minutes old and treat grant and revoke as idempotent: grantry
//! retries after timeouts, 5xx and 429 (honouring `Retry-After`).
//!
//! The answer: 2xx with an empty body or `{"status": "applied"}`; `{"status": "already_in_place"}`;
//! `{"status": "failed", "message": "…"}` (a permanent failure, the message shown to IT); for
//! `list_members`, `{"members": ["id", …]}`. Any 4xx other than 408/429 is permanent.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::api::{str_field, Api};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    secret_env: Option<String>,
    secret_file: Option<std::path::PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// A team-owned endpoint that applies changes for grantry.
pub struct WebhookConnector {
    api: Api,
    name: String,
    secret: Secret,
}

/// `v1=<hex HMAC-SHA256(secret, "v1:{timestamp}:{body}")>`: the signature header's value.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let secret = SecretSource {
            env: s.secret_env.clone(),
            file: s.secret_file.clone(),
        }
        .load(
            &format!("connectors.{name} secret"),
            "GRANTRY_WEBHOOK_SECRET",
        )
        .map_err(|e| e.to_string())?;
        if secret.is_empty() {
            return Err("set secret_env or secret_file: events are always signed".into());
        }
        Ok(Self {
            api: Api::new("Webhook", name, &s.url, Duration::from_secs(s.timeout_secs)),
            name: name.to_string(),
            secret,
        })
    }

    async fn send(&self, event: Value) -> Result<Value, ConnectorError> {
        let body = event.to_string();
        let ts = chrono::Utc::now().timestamp();
        let kind = str_field(&event, "type").unwrap_or("event").to_string();
        let rb = self
            .api
            .request(Method::POST, "")
            .header("Content-Type", "application/json")
            .header("X-Grantry-Timestamp", ts.to_string())
            .header(
                "X-Grantry-Signature",
                signature(self.secret.expose().as_bytes(), ts, body.as_bytes()),
            )
            .body(body);
        let r = self
            .api
            .send(&Method::POST, &format!("({kind})"), rb)
            .await?;
        if !r.ok() {
            let detail = str_field(&r.body, "message")
                .map(str::to_string)
                .or_else(|| r.body.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(self.api.failure(
                &r,
                &detail,
                "check that the receiver uses the same secret",
            ));
        }
        if str_field(&r.body, "status") == Some("failed") {
            let message = str_field(&r.body, "message").unwrap_or("no reason given");
            return Err(self
                .api
                .permanent(format!("the receiver failed the {kind}: {message}")));
        }
        Ok(r.body)
    }

    fn change_event(&self, kind: &str, account: &Account, target: &str) -> Value {
        json!({
            "type": kind,
            "connector": self.name,
            "account": {"id": account.id, "login": account.login},
            "target": target,
            "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

fn change(answer: &Value) -> Change {
    match str_field(answer, "status") {
        Some("already_in_place") => Change::AlreadyInPlace,
        _ => Change::Applied,
    }
}

#[async_trait]
impl Connector for WebhookConnector {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        let id = subject.mapped_id.unwrap_or(subject.email).to_string();
        Ok(Account {
            id,
            login: Some(subject.email.to_string()),
        })
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        Ok(change(
            &self
                .send(self.change_event("grant", account, target))
                .await?,
        ))
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        Ok(change(
            &self
                .send(self.change_event("revoke", account, target))
                .await?,
        ))
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let answer = self
            .send(json!({"type": "list_members", "connector": self.name, "target": target,
                         "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}))
            .await?;
        let members = answer
            .get("members")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                self.api
                    .permanent("the receiver's list_members answer has no \"members\" array")
            })?;
        Ok(members
            .iter()
            .filter_map(|m| m.as_str().or_else(|| str_field(m, "id")))
            .map(|id| Account {
                id: id.to_string(),
                login: None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_version_timestamp_and_body() {
        // Computed independently: printf 'v1:1700000000:{}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, b"{}"),
            "v1=633c6f41626acf10d3a7dd2a4cb211c5bd6cbd7ae8ca3d212385da9d55734997"
        );
    }
}
