//! SCIM 2.0 (RFC 7643/7644): users found by filter, group membership by PATCH.
//!
//! Config (`[connectors.<name>]`, `type = "scim"`): `base_url` (e.g. `https://idp.example.com/scim/v2`),
//! `token_env` or `token_file` (a bearer token), `timeout_secs` (default 10).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};
use crate::outbound;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    base_url: String,
    token_env: Option<String>,
    token_file: Option<std::path::PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// A SCIM 2.0 service provider.
pub struct ScimConnector {
    name: String,
    base_url: String,
    token: Secret,
    http: reqwest::Client,
    group_ids: Mutex<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(rename = "Resources", default)]
    resources: Vec<Value>,
}

/// Quotes a value for a SCIM filter (RFC 7644 §3.4.2.2: a JSON string).
fn filter_string(v: &str) -> String {
    Value::String(v.to_string()).to_string()
}

impl ScimConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let token = SecretSource {
            env: s.token_env.clone(),
            file: s.token_file.clone(),
        }
        .load(&format!("connectors.{name} token"), "SCIM_TOKEN")
        .map_err(|e| e.to_string())?;
        Ok(Self::new(
            name,
            &s.base_url,
            token,
            Duration::from_secs(s.timeout_secs),
        ))
    }

    /// A connector for `base_url` with a bearer token (empty: no Authorization header).
    pub fn new(name: &str, base_url: &str, token: Secret, timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            http: outbound::client(timeout),
            group_ids: Mutex::new(HashMap::new()),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), ConnectorError> {
        let url = format!("{}{}", self.base_url, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::ACCEPT, SCIM_JSON);
        if !self.token.is_empty() {
            req = req.bearer_auth(self.token.expose());
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            ConnectorError::transient(format!("SCIM {}: {}", self.name, outbound::describe(&e)))
        })?;
        let status = resp.status();
        let retry_after = outbound::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            let v = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|_| {
                    ConnectorError::permanent(format!(
                        "SCIM {}: {method} {path} answered {status} with a body that is not JSON",
                        self.name
                    ))
                })?
            };
            return Ok((status, v));
        }
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| outbound::excerpt(&text));
        let message = format!(
            "SCIM {}: {method} {path} answered {status}: {detail}",
            self.name
        );
        if outbound::is_transient(status) {
            return Err(ConnectorError::Transient {
                message,
                retry_after,
            });
        }
        Err(ConnectorError::permanent(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "{message} (check the connector's token and its permissions on Users and Groups)"
            ),
            _ => message,
        }))
    }

    async fn find_one(
        &self,
        resource: &str,
        filter: &str,
    ) -> Result<Option<Value>, ConnectorError> {
        let q = serde_urlencoded::to_string([("filter", filter)])
            .map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let (_, v) = self
            .call(Method::GET, &format!("/{resource}?{q}"), None)
            .await?;
        let list: ListResponse = serde_json::from_value(v).map_err(|e| {
            ConnectorError::permanent(format!(
                "SCIM {}: {resource} list is not a ListResponse: {e}",
                self.name
            ))
        })?;
        Ok(list.resources.into_iter().next())
    }

    async fn group_id(&self, display_name: &str) -> Result<String, ConnectorError> {
        if let Some(id) = self.group_ids.lock().await.get(display_name) {
            return Ok(id.clone());
        }
        let g = self
            .find_one("Groups", &format!("displayName eq {}", filter_string(display_name)))
            .await?
            .ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "SCIM {}: no group with displayName {display_name:?}: create it or fix the catalog's target",
                    self.name
                ))
            })?;
        let id = g
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ConnectorError::permanent(format!("SCIM {}: group without id", self.name))
            })?
            .to_string();
        self.group_ids
            .lock()
            .await
            .insert(display_name.to_string(), id.clone());
        Ok(id)
    }

    async fn member_ids(&self, group_id: &str) -> Result<Vec<String>, ConnectorError> {
        let (_, g) = self
            .call(
                Method::GET,
                &format!("/Groups/{group_id}?attributes=members"),
                None,
            )
            .await?;
        Ok(g.get("members")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl Connector for ScimConnector {
    fn kind(&self) -> &'static str {
        "scim"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        let email = subject.mapped_id.unwrap_or(subject.email);
        let by_user_name = format!("userName eq {}", filter_string(email));
        let by_email = format!("emails.value eq {}", filter_string(email));
        let user = match self.find_one("Users", &by_user_name).await? {
            Some(u) => Some(u),
            None => self.find_one("Users", &by_email).await?,
        };
        let user = user.ok_or_else(|| {
            ConnectorError::permanent(format!(
                "SCIM {}: no user with userName or email {email}: the person has no account in this app yet",
                self.name
            ))
        })?;
        let id = user.get("id").and_then(Value::as_str).ok_or_else(|| {
            ConnectorError::permanent(format!("SCIM {}: user without id", self.name))
        })?;
        Ok(Account {
            id: id.to_string(),
            login: user
                .get("userName")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        if self.member_ids(&gid).await?.contains(&account.id) {
            return Ok(Change::AlreadyInPlace);
        }
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": account.id}]}]
        });
        self.call(Method::PATCH, &format!("/Groups/{gid}"), Some(body))
            .await?;
        Ok(Change::Applied)
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        if !self.member_ids(&gid).await?.contains(&account.id) {
            return Ok(Change::AlreadyInPlace);
        }
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "remove", "path": format!("members[value eq {}]", filter_string(&account.id))}]
        });
        self.call(Method::PATCH, &format!("/Groups/{gid}"), Some(body))
            .await?;
        Ok(Change::Applied)
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let gid = self.group_id(target).await?;
        Ok(self
            .member_ids(&gid)
            .await?
            .into_iter()
            .map(|id| Account { id, login: None })
            .collect())
    }
}
