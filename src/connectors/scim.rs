//! SCIM 2.0 (RFC 7643/7644): users found by filter, group membership by PATCH.
//!
//! Config (`[connectors.<name>]`, `type = "scim"`): `base_url` (e.g. `https://idp.example.com/scim/v2`),
//! `token_env` or `token_file` (a bearer token), `timeout_secs` (default 10), and `profile`: the
//! app's quirks ([`Profile`]): `generic` (the default, RFC 7644 as written), `notion`, `atlassian`,
//! `salesforce` or `slack`. A profile changes only how users and groups are found, the PATCH forms
//! sent and the page size; everything else is the same code.

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
    #[serde(default = "default_profile")]
    profile: String,
}

fn default_profile() -> String {
    "generic".into()
}

/// How a member is added to or removed from a group in one PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberOp {
    /// `{"op", "path": "members", "value": [{"value": id}]}` (RFC 7644 §3.5.2.1 for add).
    ValueArray,
    /// `{"op": "remove", "path": "members[value eq \"id\"]"}` (RFC 7644 §3.5.2.2).
    PathFilter,
    /// `{"op", "path": "members", "value": {"members": [{"value": id}]}}` (Salesforce's form).
    MembersObject,
}

/// How groups named by `displayName` are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupLookup {
    /// `GET /Groups?filter=displayName eq "…"`.
    Filter,
    /// Every group, page by page (`startIndex`, `count`), for apps without a group filter.
    List,
}

/// One app's SCIM quirks. Each app's source is cited in [`Profile::named`] and docs/connectors.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name in the config.
    pub name: &'static str,
    /// User filters tried in order, each followed by the quoted email (`userName eq`).
    user_filters: &'static [&'static str],
    /// What those filters compare, for messages.
    user_label: &'static str,
    add: MemberOp,
    remove: MemberOp,
    groups: GroupLookup,
    /// Group searches and lists ask for `excludedAttributes=members`, so that finding a group does
    /// not download every member.
    lookup_excludes_members: bool,
    /// The query of the group read that lists its members (`attributes=members`), if any.
    members_query: Option<&'static str>,
    /// The largest page (`count`) the app serves.
    page_size: usize,
}

/// RFC 7644 as written: what scim2-server and most service providers accept.
const GENERIC: Profile = Profile {
    name: "generic",
    user_label: "userName or email",
    user_filters: &["userName eq", "emails.value eq"],
    add: MemberOp::ValueArray,
    remove: MemberOp::PathFilter,
    groups: GroupLookup::Filter,
    lookup_excludes_members: false,
    members_query: Some("attributes=members"),
    page_size: 100,
};

impl Profile {
    /// Every profile's name.
    pub const NAMES: &'static [&'static str] =
        &["generic", "notion", "atlassian", "salesforce", "slack"];

    /// The profile with this name.
    pub fn named(name: &str) -> Option<Profile> {
        Some(match name {
            "generic" => GENERIC,
            // Notion (https://www.notion.so/help/provision-users-and-groups-with-scim and
            // https://developers.notion.com/reference/scim-api): members are found by their email
            // as userName, groups by name; members added and removed with a value array (the
            // remove form IdPs send to Notion; the help page does not show one); 100 a page.
            "notion" => Profile {
                name: "notion",
                user_label: "userName",
                user_filters: &["userName eq"],
                add: MemberOp::ValueArray,
                remove: MemberOp::ValueArray,
                groups: GroupLookup::Filter,
                lookup_excludes_members: false,
                members_query: None,
                page_size: 100,
            },
            // Atlassian Guard user provisioning
            // (https://developer.atlassian.com/cloud/admin/user-provisioning/rest/): users may be
            // filtered only with one `eq` on userName or externalId; groups by displayName; the
            // group PATCH manages membership.
            "atlassian" => Profile {
                name: "atlassian",
                user_label: "userName",
                user_filters: &["userName eq"],
                add: MemberOp::ValueArray,
                remove: MemberOp::PathFilter,
                groups: GroupLookup::Filter,
                lookup_excludes_members: true,
                members_query: None,
                page_size: 100,
            },
            // Salesforce SCIM (https://help.salesforce.com/s/articleView?id=xcloud.identity_scim_manage_groups.htm):
            // users by userName (a Salesforce username, often but not always the email: map
            // the others); the documented add and remove both carry `{"members": [...]}` as the
            // value; groups are listed (public groups and roles), not filtered.
            "salesforce" => Profile {
                name: "salesforce",
                user_label: "userName",
                user_filters: &["userName eq"],
                add: MemberOp::MembersObject,
                remove: MemberOp::MembersObject,
                groups: GroupLookup::List,
                lookup_excludes_members: false,
                members_query: None,
                page_size: 100,
            },
            // Slack SCIM 2.0 (https://docs.slack.dev/reference/scim-api/scim-api-2 and
            // https://api.slack.com/scim): userName is the Slack handle, so users are found by
            // email; groups by displayName; members added and removed with a value array; pages
            // of up to 1000.
            "slack" => Profile {
                name: "slack",
                user_label: "email",
                user_filters: &["email eq", "emails.value eq"],
                add: MemberOp::ValueArray,
                remove: MemberOp::ValueArray,
                groups: GroupLookup::Filter,
                lookup_excludes_members: false,
                members_query: None,
                page_size: 1000,
            },
            _ => return None,
        })
    }
}

/// One PATCH operation adding (`add`) or removing (`remove`) a member, in the profile's form.
fn member_op(op: &str, form: MemberOp, id: &str) -> Value {
    match form {
        MemberOp::ValueArray => json!({"op": op, "path": "members", "value": [{"value": id}]}),
        MemberOp::PathFilter => {
            json!({"op": op, "path": format!("members[value eq {}]", filter_string(id))})
        }
        MemberOp::MembersObject => {
            json!({"op": op, "path": "members", "value": {"members": [{"value": id}]}})
        }
    }
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
    profile: Profile,
    group_ids: Mutex<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(rename = "Resources", default)]
    resources: Vec<Value>,
    #[serde(rename = "totalResults")]
    total_results: Option<u64>,
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
        let profile = Profile::named(&s.profile).ok_or_else(|| {
            format!(
                "unknown SCIM profile {:?} (known: {})",
                s.profile,
                Profile::NAMES.join(", ")
            )
        })?;
        Ok(Self::new(
            name,
            &s.base_url,
            token,
            Duration::from_secs(s.timeout_secs),
        )
        .with_profile(profile))
    }

    /// The same connector with another app's quirks.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// A connector for `base_url` with a bearer token (empty: no Authorization header).
    pub fn new(name: &str, base_url: &str, token: Secret, timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            http: outbound::client(timeout),
            profile: GENERIC,
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

    async fn list(
        &self,
        resource: &str,
        params: &[(&str, &str)],
    ) -> Result<ListResponse, ConnectorError> {
        let q = serde_urlencoded::to_string(params)
            .map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let (_, v) = self
            .call(Method::GET, &format!("/{resource}?{q}"), None)
            .await?;
        serde_json::from_value(v).map_err(|e| {
            ConnectorError::permanent(format!(
                "SCIM {}: {resource} list is not a ListResponse: {e}",
                self.name
            ))
        })
    }

    async fn find_one(
        &self,
        resource: &str,
        filter: &str,
    ) -> Result<Option<Value>, ConnectorError> {
        let mut params = vec![("filter", filter)];
        if resource == "Groups" && self.profile.lookup_excludes_members {
            params.push(("excludedAttributes", "members"));
        }
        Ok(self
            .list(resource, &params)
            .await?
            .resources
            .into_iter()
            .next())
    }

    /// The group with this displayName, from every group page by page (apps without a filter).
    async fn find_group_by_listing(
        &self,
        display_name: &str,
    ) -> Result<Option<Value>, ConnectorError> {
        let count = self.profile.page_size.to_string();
        let mut start = 1usize;
        loop {
            let start_s = start.to_string();
            let mut params = vec![("startIndex", start_s.as_str()), ("count", count.as_str())];
            if self.profile.lookup_excludes_members {
                params.push(("excludedAttributes", "members"));
            }
            let page = self.list("Groups", &params).await?;
            let n = page.resources.len();
            if let Some(g) = page
                .resources
                .into_iter()
                .find(|g| g.get("displayName").and_then(Value::as_str) == Some(display_name))
            {
                return Ok(Some(g));
            }
            start += n;
            if n == 0 || page.total_results.is_some_and(|t| start as u64 > t) {
                return Ok(None);
            }
        }
    }

    async fn group_id(&self, display_name: &str) -> Result<String, ConnectorError> {
        if let Some(id) = self.group_ids.lock().await.get(display_name) {
            return Ok(id.clone());
        }
        let found = match self.profile.groups {
            GroupLookup::Filter => {
                self.find_one(
                    "Groups",
                    &format!("displayName eq {}", filter_string(display_name)),
                )
                .await?
            }
            GroupLookup::List => self.find_group_by_listing(display_name).await?,
        };
        let g = found.ok_or_else(|| {
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
                &match self.profile.members_query {
                    Some(q) => format!("/Groups/{group_id}?{q}"),
                    None => format!("/Groups/{group_id}"),
                },
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
        let mut user = None;
        for attr in self.profile.user_filters {
            user = self
                .find_one("Users", &format!("{attr} {}", filter_string(email)))
                .await?;
            if user.is_some() {
                break;
            }
        }
        let user = user.ok_or_else(|| {
            ConnectorError::permanent(format!(
                "SCIM {}: no user with {} {email}: the person has no account in this app yet (or map it as accounts.{} in the people file)",
                self.name,
                self.profile.user_label,
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
            "Operations": [member_op("add", self.profile.add, &account.id)]
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
            "Operations": [member_op("remove", self.profile.remove, &account.id)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_profile_exists_and_generic_is_rfc_7644() {
        for name in Profile::NAMES {
            assert_eq!(Profile::named(name).map(|p| p.name), Some(*name));
        }
        assert!(Profile::named("okta").is_none());
        assert_eq!(
            member_op("remove", GENERIC.remove, "u\"1"),
            json!({"op": "remove", "path": "members[value eq \"u\\\"1\"]"})
        );
        assert_eq!(
            member_op("add", GENERIC.add, "u1"),
            json!({"op": "add", "path": "members", "value": [{"value": "u1"}]})
        );
    }
}
