//! Jira / Atlassian Cloud: group membership through the Jira Cloud platform REST API v3
//! (<https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-groups/>).
//!
//! Config (`[connectors.<name>]`, `type = "jira"`): `site_url` (`https://acme.atlassian.net`; with
//! an OAuth 2.0 token: `https://api.atlassian.com/ex/jira/<cloudId>`), `timeout_secs`, and one way
//! to authenticate: `email` + `token_env`/`token_file` (an API token, sent as Basic
//! `email:token`), or `token_env`/`token_file` alone (an OAuth 2.0 access token, sent as Bearer).
//!
//! Targets: a group id (`groupId`, which Atlassian recommends because names can change), or
//! `name:<group name>` (its id looked up once with `GET /rest/api/3/group/bulk?groupName=`).
//! Accounts: the Atlassian `accountId` mapped in the people file (`accounts.<connector>`), else
//! the one user `GET /rest/api/3/user/search?query=<email>` returns with exactly that email (an
//! email hidden by the user's privacy settings cannot be matched: map the account then).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::api::{str_field, Api, Reply};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

const PAGE: usize = 50;
const FIX: &str = "adding and removing group members needs a site admin (a member of the site-admin group) behind the token, finding people the Browse users and groups global permission; an OAuth 2.0 token needs the scopes manage:jira-configuration and read:jira-user";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    site_url: String,
    email: Option<String>,
    token_env: Option<String>,
    token_file: Option<std::path::PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// A Jira Cloud site.
pub struct JiraConnector {
    api: Api,
    /// The whole `Authorization` header value.
    authorization: Secret,
    group_ids: Mutex<HashMap<String, String>>,
}

impl JiraConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let token = SecretSource {
            env: s.token_env.clone(),
            file: s.token_file.clone(),
        }
        .load(&format!("connectors.{name} token"), "JIRA_API_TOKEN")
        .map_err(|e| e.to_string())?;
        if token.is_empty() {
            return Err(
                "set token_env/token_file: an API token (with email) or an OAuth 2.0 access token"
                    .into(),
            );
        }
        let authorization = match &s.email {
            Some(email) => Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{email}:{}", token.expose()))
            )),
            None => Secret::new(format!("Bearer {}", token.expose())),
        };
        Ok(Self {
            api: Api::new(
                "Jira",
                name,
                &s.site_url,
                Duration::from_secs(s.timeout_secs),
            ),
            authorization,
            group_ids: Mutex::new(HashMap::new()),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, ConnectorError> {
        let mut rb = self
            .api
            .request(method.clone(), path)
            .header("Accept", "application/json")
            .header("Authorization", self.authorization.expose());
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.api.send(&method, path, rb).await
    }

    fn failure(&self, r: &Reply) -> ConnectorError {
        self.api.failure(r, &detail(&r.body), FIX)
    }

    async fn ok(&self, method: Method, path: &str) -> Result<Reply, ConnectorError> {
        let r = self.call(method, path, None).await?;
        if r.ok() {
            Ok(r)
        } else {
            Err(self.failure(&r))
        }
    }

    /// The group id a target names.
    async fn group_id(&self, target: &str) -> Result<String, ConnectorError> {
        let Some(name) = target.strip_prefix("name:") else {
            return Ok(target.to_string());
        };
        if let Some(id) = self.group_ids.lock().await.get(name) {
            return Ok(id.clone());
        }
        let q = query(&[("groupName", name), ("maxResults", "1")])?;
        let r = self
            .ok(Method::GET, &format!("/rest/api/3/group/bulk?{q}"))
            .await?;
        let id = r
            .body
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|g| str_field(g, "name") == Some(name))
            .and_then(|g| str_field(g, "groupId"))
            .ok_or_else(|| {
                self.api.permanent(format!(
                    "no group named {name:?}: create it or fix the catalog's target"
                ))
            })?
            .to_string();
        self.group_ids
            .lock()
            .await
            .insert(name.to_string(), id.clone());
        Ok(id)
    }
}

impl JiraConnector {
    /// Whether the account is a direct member of the group (`GET /rest/api/3/user/groups`).
    async fn in_group(&self, account_id: &str, group_id: &str) -> Result<bool, ConnectorError> {
        let q = query(&[("accountId", account_id)])?;
        let r = self
            .ok(Method::GET, &format!("/rest/api/3/user/groups?{q}"))
            .await?;
        Ok(r.body
            .as_array()
            .into_iter()
            .flatten()
            .any(|g| str_field(g, "groupId") == Some(group_id)))
    }
}

/// `errorMessages` and `errors` of a Jira error body, joined.
fn detail(body: &Value) -> String {
    let mut parts: Vec<String> = body
        .get("errorMessages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if let Some(errors) = body.get("errors").and_then(Value::as_object) {
        parts.extend(
            errors
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}: {v}"))),
        );
    }
    if parts.is_empty() {
        if let Some(s) = body.as_str() {
            parts.push(s.to_string());
        }
    }
    parts.join("; ")
}

fn query(pairs: &[(&str, &str)]) -> Result<String, ConnectorError> {
    serde_urlencoded::to_string(pairs).map_err(|e| ConnectorError::permanent(e.to_string()))
}

fn account(user: &Value) -> Option<Account> {
    Some(Account {
        id: str_field(user, "accountId")?.to_string(),
        login: str_field(user, "emailAddress").map(str::to_string),
    })
}

#[async_trait]
impl Connector for JiraConnector {
    fn kind(&self) -> &'static str {
        "jira"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        if let Some(id) = subject.mapped_id {
            let q = query(&[("accountId", id)])?;
            let r = self
                .call(Method::GET, &format!("/rest/api/3/user?{q}"), None)
                .await?;
            if r.status == StatusCode::NOT_FOUND {
                return Err(self.api.permanent(format!(
                    "the people file maps {} to Atlassian account {id:?}, which does not exist: fix the mapping",
                    subject.email
                )));
            }
            if !r.ok() {
                return Err(self.failure(&r));
            }
            if r.body.get("active").and_then(Value::as_bool) == Some(false) {
                return Err(self
                    .api
                    .permanent(format!("{} is deactivated in Atlassian", subject.email)));
            }
            return account(&r.body).ok_or_else(|| self.api.permanent("a user without accountId"));
        }
        let q = query(&[("query", subject.email), ("maxResults", "50")])?;
        let r = self
            .ok(Method::GET, &format!("/rest/api/3/user/search?{q}"))
            .await?;
        let users: Vec<&Value> = r
            .body
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| {
                str_field(u, "emailAddress").is_some_and(|e| e.eq_ignore_ascii_case(subject.email))
                    && str_field(u, "accountType").is_none_or(|t| t == "atlassian")
            })
            .collect();
        match users.as_slice() {
            [one] => {
                if one.get("active").and_then(Value::as_bool) == Some(false) {
                    return Err(self
                        .api
                        .permanent(format!("{} is deactivated in Atlassian", subject.email)));
                }
                account(one).ok_or_else(|| self.api.permanent("a user without accountId"))
            }
            [] => Err(self.api.permanent(format!(
                "no Atlassian account shows the email {}: either the person has none, or their profile hides the email; map their accountId as accounts.{} in the people file",
                subject.email,
                self.api.name()
            ))),
            _ => Err(self.api.permanent(format!(
                "several Atlassian accounts show the email {}: map the right accountId as accounts.{} in the people file",
                subject.email,
                self.api.name()
            ))),
        }
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        let path = format!("/rest/api/3/group/user?{}", query(&[("groupId", &gid)])?);
        let r = self
            .call(
                Method::POST,
                &path,
                Some(json!({ "accountId": account.id })),
            )
            .await?;
        if r.ok() {
            return Ok(Change::Applied);
        }
        // Jira refuses to add a member twice with a 400 saying the user is already a member; for
        // any other 400 the user's groups are read before calling it a failure.
        if r.status == StatusCode::BAD_REQUEST
            && (detail(&r.body)
                .to_ascii_lowercase()
                .contains("already a member")
                || self.in_group(&account.id, &gid).await?)
        {
            return Ok(Change::AlreadyInPlace);
        }
        Err(self.failure(&r))
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        let path = format!(
            "/rest/api/3/group/user?{}",
            query(&[("groupId", &gid), ("accountId", &account.id)])?
        );
        let r = self.call(Method::DELETE, &path, None).await?;
        if r.ok() {
            return Ok(Change::Applied);
        }
        // Removing someone who is not in the group: Jira answers 400 or 404 saying so.
        if matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND)
            && detail(&r.body)
                .to_ascii_lowercase()
                .contains("not a member")
        {
            return Ok(Change::AlreadyInPlace);
        }
        Err(self.failure(&r))
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let gid = self.group_id(target).await?;
        let mut out = Vec::new();
        let mut start = 0usize;
        loop {
            let q = query(&[
                ("groupId", &gid),
                ("includeInactiveUsers", "false"),
                ("startAt", &start.to_string()),
                ("maxResults", &PAGE.to_string()),
            ])?;
            let r = self
                .ok(Method::GET, &format!("/rest/api/3/group/member?{q}"))
                .await?;
            let page: Vec<Account> = r
                .body
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(account)
                .collect();
            let n = page.len();
            out.extend(page);
            let last = r
                .body
                .get("isLast")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if last || n == 0 {
                break;
            }
            start += n;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_join_messages_and_field_errors() {
        let body = json!({"errorMessages": ["Cannot add user. User is already a member of 'jira-admins'"],
                          "errors": {"accountId": "bad"}});
        assert_eq!(
            detail(&body),
            "Cannot add user. User is already a member of 'jira-admins'; accountId: bad"
        );
        assert_eq!(detail(&Value::Null), "");
    }
}
