//! Slack user groups: membership of a user group (`@oncall`, `@platform-admins`).
//!
//! Config (`[connectors.<name>]`, `type = "slack_usergroups"`): `token_env`/`token_file` (a token
//! with `usergroups:read`, `usergroups:write` and `users:read.email`), `api_url` (default
//! `https://slack.com/api`), `timeout_secs`.
//!
//! Slack only offers "replace the whole member list" (`usergroups.users.update`), so a change is
//! read-modify-write. Guard against lost updates: writes to one group are serialised in the
//! process, and every write is read back; if the read-back does not show our change (someone
//! else wrote in between) the call fails as transient and the job retries from a fresh read.
//! Slack refuses an empty user group: revoking its last member fails with a message saying so.
//!
//! Targets: the group's handle (`platform-admins`, with or without `@`) or id (`S…`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::api::{str_field, Api, Reply};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

const FIX: &str = "the token needs usergroups:read, usergroups:write and users:read.email";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    token_env: Option<String>,
    token_file: Option<std::path::PathBuf>,
    #[serde(default = "default_api_url")]
    api_url: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_api_url() -> String {
    "https://slack.com/api".into()
}

fn default_timeout() -> u64 {
    10
}

/// A Slack workspace's user groups.
pub struct SlackUserGroupsConnector {
    api: Api,
    token: Secret,
    group_ids: Mutex<HashMap<String, String>>,
    /// One lock per user group id: read-modify-write is serialised within the process.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl SlackUserGroupsConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let token = SecretSource {
            env: s.token_env.clone(),
            file: s.token_file.clone(),
        }
        .load(
            &format!("connectors.{name} token"),
            "SLACK_USERGROUPS_TOKEN",
        )
        .map_err(|e| e.to_string())?;
        if token.is_empty() {
            return Err("set token_env or token_file".into());
        }
        Ok(Self {
            api: Api::new(
                "Slack",
                name,
                &s.api_url,
                Duration::from_secs(s.timeout_secs),
            ),
            token,
            group_ids: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Calls a Web API method; `ok: false` is an error (transient for `ratelimited` and
    /// Slack-side faults, else permanent naming Slack's error code).
    async fn call(&self, method: &str, form: &[(&str, &str)]) -> Result<Reply, ConnectorError> {
        let path = format!("/{method}");
        let rb = self
            .api
            .request(Method::POST, &path)
            .bearer_auth(self.token.expose())
            .form(form);
        let r = self.api.send(&Method::POST, &path, rb).await?;
        if !r.ok() {
            return Err(self.api.failure(&r, "", FIX));
        }
        if r.body.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(r);
        }
        let code = str_field(&r.body, "error")
            .unwrap_or("unknown_error")
            .to_string();
        let message = format!("{}: {method} failed: {code}", self.api.label());
        Err(match code.as_str() {
            "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => ConnectorError::Transient {
                message,
                retry_after: super::api::rate_limit_wait(&r.headers),
            },
            "missing_scope"
            | "not_allowed_token_type"
            | "invalid_auth"
            | "not_authed"
            | "permission_denied"
            | "no_permission" => ConnectorError::permanent(format!("{message} ({FIX})")),
            _ => ConnectorError::permanent(message),
        })
    }

    async fn group_id(&self, target: &str) -> Result<String, ConnectorError> {
        let handle = target.trim_start_matches('@');
        if handle.starts_with('S')
            && handle
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Ok(handle.to_string());
        }
        if let Some(id) = self.group_ids.lock().await.get(handle) {
            return Ok(id.clone());
        }
        let r = self
            .call("usergroups.list", &[("include_disabled", "true")])
            .await?;
        let id = r
            .body
            .get("usergroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|g| str_field(g, "handle") == Some(handle))
            .and_then(|g| str_field(g, "id"))
            .ok_or_else(|| {
                self.api.permanent(format!(
                    "no user group with handle @{handle}: create it or fix the catalog's target"
                ))
            })?
            .to_string();
        self.group_ids
            .lock()
            .await
            .insert(handle.to_string(), id.clone());
        Ok(id)
    }

    async fn users(&self, group_id: &str) -> Result<Vec<String>, ConnectorError> {
        let r = self
            .call(
                "usergroups.users.list",
                &[("usergroup", group_id), ("include_disabled", "true")],
            )
            .await?;
        Ok(r.body
            .get("users")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect())
    }

    async fn lock(&self, group_id: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .await
            .entry(group_id.to_string())
            .or_default()
            .clone()
    }

    /// Read, change, write, read back. `add`: whether `user` should be in the group.
    async fn set_membership(
        &self,
        user: &str,
        target: &str,
        add: bool,
    ) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        let lock = self.lock(&gid).await;
        let _held = lock.lock().await;
        let mut users = self.users(&gid).await?;
        if users.iter().any(|u| u == user) == add {
            return Ok(Change::AlreadyInPlace);
        }
        if add {
            users.push(user.to_string());
        } else {
            users.retain(|u| u != user);
            if users.is_empty() {
                return Err(self.api.permanent(format!(
                    "{user} is the last member of user group {gid}, and Slack does not allow an empty user group: add someone else or disable the group"
                )));
            }
        }
        let list = users.join(",");
        self.call(
            "usergroups.users.update",
            &[("usergroup", gid.as_str()), ("users", list.as_str())],
        )
        .await?;
        let after = self.users(&gid).await?;
        if after.iter().any(|u| u == user) != add {
            return Err(ConnectorError::transient(format!(
                "{}: user group {gid} changed while we wrote it; trying again from a fresh read",
                self.api.label()
            )));
        }
        Ok(Change::Applied)
    }
}

#[async_trait]
impl Connector for SlackUserGroupsConnector {
    fn kind(&self) -> &'static str {
        "slack_usergroups"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        if let Some(id) = subject.mapped_id {
            return Ok(Account {
                id: id.to_string(),
                login: None,
            });
        }
        let r = match self
            .call("users.lookupByEmail", &[("email", subject.email)])
            .await
        {
            Err(ConnectorError::Permanent { message }) if message.ends_with("users_not_found") => {
                return Err(self.api.permanent(format!(
                    "no Slack user has the email {}: they are not in this workspace",
                    subject.email
                )))
            }
            other => other?,
        };
        let user = r.body.get("user").cloned().unwrap_or(Value::Null);
        let id = str_field(&user, "id").ok_or_else(|| self.api.permanent("a user without id"))?;
        Ok(Account {
            id: id.to_string(),
            login: str_field(&user, "name").map(str::to_string),
        })
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        self.set_membership(&account.id, target, true).await
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        self.set_membership(&account.id, target, false).await
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let gid = self.group_id(target).await?;
        Ok(self
            .users(&gid)
            .await?
            .into_iter()
            .map(|id| Account { id, login: None })
            .collect())
    }
}
