//! Salesforce: permission set assignments (`PermissionSetAssignment`) and permission set license
//! assignments (`PermissionSetLicenseAssign`) through the REST API's SObject and query resources
//! (<https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_permissionsetassignment.htm>).
//!
//! Config (`[connectors.<name>]`, `type = "salesforce"`): `instance_url` (the org's My Domain,
//! `https://acme.my.salesforce.com`; every API call goes there, whatever the token answer says),
//! `api_version` (default `v60.0`), `match` (`email`, the default, or `username`: which `User`
//! field the person's email is compared with), `token_lifetime_secs` (Salesforce's token answer
//! has no lifetime; default 900, the shortest session timeout an org can set; a refused token is
//! fetched again once anyway), `timeout_secs`, `client_id` (the connected app's consumer key) and
//! one OAuth 2.0 flow:
//! - client credentials: `client_secret_env`/`client_secret_file`; the token comes from
//!   `{instance_url}/services/oauth2/token` and acts as the app's "Run As" user;
//! - JWT bearer: `username` (the integration user) and `private_key_env`/`private_key_file` (PEM,
//!   whose certificate is uploaded to the connected app), `login_url` (the assertion's audience and
//!   token endpoint; default `https://login.salesforce.com`, sandboxes `https://test.salesforce.com`).
//!
//! Targets: a permission set's API name (`PermissionSet.Name`), or `license:<DeveloperName>` for a
//! permission set license. Accounts: the Salesforce user id mapped in the people file
//! (`accounts.<connector>`), else the one active user whose `Email` (or `Username`) is theirs.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::api::{str_field, Api, Reply, TokenCache};
use super::jwt::{now_secs, SigningKey};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

const FIX: &str = "the integration user needs the permissions API Enabled, View Setup and Configuration and Assign Permission Sets (Manage Users for permission set licenses), and the connected app must allow it";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    instance_url: String,
    #[serde(default = "default_login_url")]
    login_url: String,
    #[serde(default = "default_api_version")]
    api_version: String,
    #[serde(default, rename = "match")]
    match_on: MatchOn,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<std::path::PathBuf>,
    username: Option<String>,
    private_key_env: Option<String>,
    private_key_file: Option<std::path::PathBuf>,
    #[serde(default = "default_token_lifetime")]
    token_lifetime_secs: i64,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_login_url() -> String {
    "https://login.salesforce.com".into()
}
fn default_api_version() -> String {
    "v60.0".into()
}
fn default_token_lifetime() -> i64 {
    900
}
fn default_timeout() -> u64 {
    10
}

/// Which `User` field the person's email is compared with.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum MatchOn {
    #[default]
    Email,
    Username,
}

enum Flow {
    ClientCredentials {
        secret: Secret,
    },
    JwtBearer {
        username: String,
        key: Box<SigningKey>,
        login_url: String,
    },
}

/// What a catalog target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PermissionSet,
    License,
}

impl Kind {
    fn parse(target: &str) -> (Kind, &str) {
        match target.strip_prefix("license:") {
            Some(name) => (Kind::License, name),
            None => (Kind::PermissionSet, target),
        }
    }
    /// The assignment object and its field naming the entitlement.
    fn assignment(self) -> (&'static str, &'static str) {
        match self {
            Kind::PermissionSet => ("PermissionSetAssignment", "PermissionSetId"),
            Kind::License => ("PermissionSetLicenseAssign", "PermissionSetLicenseId"),
        }
    }
    /// The entitlement object and its unique name field.
    fn entitlement(self) -> (&'static str, &'static str) {
        match self {
            Kind::PermissionSet => ("PermissionSet", "Name"),
            Kind::License => ("PermissionSetLicense", "DeveloperName"),
        }
    }
}

/// A Salesforce org.
pub struct SalesforceConnector {
    api: Api,
    instance_url: String,
    api_version: String,
    match_on: MatchOn,
    client_id: String,
    flow: Flow,
    token_lifetime_secs: i64,
    cached: TokenCache,
    ids: Mutex<HashMap<String, String>>,
}

/// Quotes a string literal for SOQL: backslash escapes for `\`, quotes and control characters.
pub(crate) fn soql_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `errorCode: message` of each entry of a Salesforce error body (a JSON array).
fn detail(body: &Value) -> String {
    match body.as_array() {
        Some(errors) => errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    str_field(e, "errorCode").unwrap_or("ERROR"),
                    str_field(e, "message").unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => body.as_str().unwrap_or_default().to_string(),
    }
}

fn has_code(body: &Value, code: &str) -> bool {
    body.as_array()
        .into_iter()
        .flatten()
        .any(|e| str_field(e, "errorCode") == Some(code))
}

impl SalesforceConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let flow = match &s.username {
            Some(username) => {
                let pem = SecretSource {
                    env: s.private_key_env.clone(),
                    file: s.private_key_file.clone(),
                }
                .load(
                    &format!("connectors.{name} private key"),
                    "SALESFORCE_PRIVATE_KEY",
                )
                .map_err(|e| e.to_string())?;
                if pem.is_empty() {
                    return Err(
                        "the JWT bearer flow (username) needs private_key_file or private_key_env"
                            .into(),
                    );
                }
                Flow::JwtBearer {
                    username: username.clone(),
                    key: Box::new(SigningKey::from_pem(pem.expose())?),
                    login_url: s.login_url.trim_end_matches('/').to_string(),
                }
            }
            None => {
                let secret = SecretSource {
                    env: s.client_secret_env.clone(),
                    file: s.client_secret_file.clone(),
                }
                .load(
                    &format!("connectors.{name} client secret"),
                    "SALESFORCE_CLIENT_SECRET",
                )
                .map_err(|e| e.to_string())?;
                if secret.is_empty() {
                    return Err("set client_secret_env/client_secret_file (client credentials), or username + private_key_file (JWT bearer)".into());
                }
                Flow::ClientCredentials { secret }
            }
        };
        let version = s.api_version.trim_start_matches('v');
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!("api_version {:?} is not like v60.0", s.api_version));
        }
        if s.token_lifetime_secs < 120 {
            return Err("token_lifetime_secs must be at least 120".into());
        }
        let instance_url = s.instance_url.trim_end_matches('/').to_string();
        Ok(Self {
            api: Api::new(
                "Salesforce",
                name,
                &instance_url,
                Duration::from_secs(s.timeout_secs),
            ),
            instance_url,
            api_version: format!("v{version}"),
            match_on: s.match_on,
            client_id: s.client_id,
            flow,
            token_lifetime_secs: s.token_lifetime_secs,
            cached: TokenCache::new(60),
            ids: Mutex::new(HashMap::new()),
        })
    }

    async fn token(&self) -> Result<Secret, ConnectorError> {
        self.cached
            .get(|| async {
                let now = now_secs();
                let (url, form): (String, Vec<(&str, String)>) = match &self.flow {
                    Flow::ClientCredentials { secret } => (
                        format!("{}/services/oauth2/token", self.instance_url),
                        vec![
                            ("grant_type", "client_credentials".into()),
                            ("client_id", self.client_id.clone()),
                            ("client_secret", secret.expose().to_string()),
                        ],
                    ),
                    Flow::JwtBearer {
                        username,
                        key,
                        login_url,
                    } => {
                        let assertion = key
                            .sign(
                                &json!({"iss": self.client_id, "sub": username,
                                        "aud": login_url, "exp": now + 180}),
                                None,
                            )
                            .map_err(|e| self.api.permanent(e))?;
                        (
                            format!("{login_url}/services/oauth2/token"),
                            vec![("grant_type", JWT_BEARER.into()), ("assertion", assertion)],
                        )
                    }
                };
                let path = "/services/oauth2/token";
                let rb = self
                    .api
                    .http
                    .post(&url)
                    .header("Accept", "application/json")
                    .form(&form);
                let r = self.api.send(&Method::POST, path, rb).await?;
                if !r.ok() {
                    let detail = str_field(&r.body, "error_description")
                        .or_else(|| str_field(&r.body, "error"))
                        .unwrap_or_default()
                        .to_string();
                    return Err(match self.api.failure(&r, &detail, "") {
                        e @ ConnectorError::Transient { .. } => e,
                        _ => self.api.permanent(format!(
                            "{} answered {}: {detail} (check client_id, the connected app's OAuth policies and, for the JWT bearer flow, that the user is pre-authorized and the certificate matches the key)",
                            r.what, r.status
                        )),
                    });
                }
                let token = str_field(&r.body, "access_token")
                    .ok_or_else(|| self.api.permanent("the token answer has no access_token"))?;
                Ok((Secret::new(token), now + self.token_lifetime_secs))
            })
            .await
    }

    /// One call with the cached token; a 401 (expired or revoked session) fetches a new token and
    /// tries once more.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ConnectorError> {
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let mut rb = self
                .api
                .request(method.clone(), path)
                .header("Accept", "application/json")
                .bearer_auth(token.expose());
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let r = self.api.send(&method, path, rb).await?;
            if r.status == StatusCode::UNAUTHORIZED && !retried {
                self.cached.invalidate(&token).await;
                retried = true;
                continue;
            }
            return Ok(r);
        }
    }

    fn failure(&self, r: &Reply) -> ConnectorError {
        let d = detail(&r.body);
        // Salesforce reports an exhausted API request limit as 403 REQUEST_LIMIT_EXCEEDED.
        if has_code(&r.body, "REQUEST_LIMIT_EXCEEDED") {
            return ConnectorError::Transient {
                message: format!(
                    "{}: {} answered {}: {d}",
                    self.api.label(),
                    r.what,
                    r.status
                ),
                retry_after: crate::outbound::retry_after(&r.headers),
            };
        }
        self.api.failure(r, &d, FIX)
    }

    fn data(&self, rest: &str) -> String {
        format!("/services/data/{}{rest}", self.api_version)
    }

    /// Every record a SOQL query returns, following `nextRecordsUrl` on this instance only.
    async fn query(&self, soql: &str) -> Result<Vec<Value>, ConnectorError> {
        let q = serde_urlencoded::to_string([("q", soql)])
            .map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let mut path = self.data(&format!("/query?{q}"));
        let mut out = Vec::new();
        loop {
            let r = self.call(Method::GET, &path, None).await?;
            if !r.ok() {
                return Err(self.failure(&r));
            }
            out.extend(
                r.body
                    .get("records")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            let done = r.body.get("done").and_then(Value::as_bool).unwrap_or(true);
            match str_field(&r.body, "nextRecordsUrl") {
                Some(next) if !done && next.starts_with("/services/data/") => {
                    path = next.to_string()
                }
                Some(_) if !done => {
                    return Err(self
                        .api
                        .permanent("a query's nextRecordsUrl is not a path on this instance"))
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// The id of the permission set (or license) a target names; cached.
    async fn entitlement_id(&self, kind: Kind, name: &str) -> Result<String, ConnectorError> {
        let key = format!("{kind:?}:{name}");
        if let Some(id) = self.ids.lock().await.get(&key) {
            return Ok(id.clone());
        }
        let (object, field) = kind.entitlement();
        let rows = self
            .query(&format!(
                "SELECT Id FROM {object} WHERE {field} = {}",
                soql_string(name)
            ))
            .await?;
        let id = match rows.as_slice() {
            [one] => str_field(one, "Id")
                .ok_or_else(|| self.api.permanent(format!("a {object} without Id")))?
                .to_string(),
            [] => {
                return Err(self.api.permanent(format!(
                    "no {object} with {field} {name:?}: fix the catalog's target"
                )))
            }
            _ => {
                return Err(self.api.permanent(format!(
                    "several {object} records have {field} {name:?} (managed packages?): fix the catalog's target"
                )))
            }
        };
        self.ids.lock().await.insert(key, id.clone());
        Ok(id)
    }

    /// The ids of the account's assignments of this entitlement.
    async fn assignment_ids(
        &self,
        kind: Kind,
        assignee: &str,
        entitlement: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let (object, field) = kind.assignment();
        let rows = self
            .query(&format!(
                "SELECT Id FROM {object} WHERE AssigneeId = {} AND {field} = {}",
                soql_string(assignee),
                soql_string(entitlement)
            ))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| str_field(r, "Id").map(str::to_string))
            .collect())
    }
}

fn user_account(u: &Value) -> Option<Account> {
    Some(Account {
        id: str_field(u, "Id")?.to_string(),
        login: str_field(u, "Username").map(str::to_string),
    })
}

#[async_trait]
impl Connector for SalesforceConnector {
    fn kind(&self) -> &'static str {
        "salesforce"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        if let Some(id) = subject.mapped_id {
            let rows = self
                .query(&format!(
                    "SELECT Id, Username, IsActive FROM User WHERE Id = {}",
                    soql_string(id)
                ))
                .await?;
            let user = rows.first().ok_or_else(|| {
                self.api.permanent(format!(
                    "the people file maps {} to Salesforce user {id:?}, which does not exist: fix the mapping",
                    subject.email
                ))
            })?;
            if user.get("IsActive").and_then(Value::as_bool) == Some(false) {
                return Err(self
                    .api
                    .permanent(format!("{} is inactive in Salesforce", subject.email)));
            }
            return user_account(user).ok_or_else(|| self.api.permanent("a user without Id"));
        }
        let field = match self.match_on {
            MatchOn::Email => "Email",
            MatchOn::Username => "Username",
        };
        let rows = self
            .query(&format!(
                "SELECT Id, Username FROM User WHERE {field} = {} AND IsActive = true",
                soql_string(subject.email)
            ))
            .await?;
        match rows.as_slice() {
            [one] => user_account(one).ok_or_else(|| self.api.permanent("a user without Id")),
            [] => Err(self.api.permanent(format!(
                "no active Salesforce user has {field} {}: the person has no Salesforce user yet (or map their user id as accounts.{} in the people file)",
                subject.email,
                self.api.name()
            ))),
            _ => Err(self.api.permanent(format!(
                "several active Salesforce users have {field} {}: map the right user id as accounts.{} in the people file",
                subject.email,
                self.api.name()
            ))),
        }
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let (kind, name) = Kind::parse(target);
        let eid = self.entitlement_id(kind, name).await?;
        let (object, field) = kind.assignment();
        let mut body = json!({ "AssigneeId": account.id });
        body[field] = Value::String(eid.clone());
        let r = self
            .call(
                Method::POST,
                &self.data(&format!("/sobjects/{object}")),
                Some(&body),
            )
            .await?;
        if r.ok() {
            return Ok(Change::Applied);
        }
        // The assignment exists already: Salesforce refuses the duplicate (DUPLICATE_VALUE; for
        // any other 400 the assignment is looked up before calling it a failure).
        if r.status == StatusCode::BAD_REQUEST
            && (has_code(&r.body, "DUPLICATE_VALUE")
                || !self
                    .assignment_ids(kind, &account.id, &eid)
                    .await?
                    .is_empty())
        {
            return Ok(Change::AlreadyInPlace);
        }
        Err(self.failure(&r))
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let (kind, name) = Kind::parse(target);
        let eid = self.entitlement_id(kind, name).await?;
        let (object, _) = kind.assignment();
        let ids = self.assignment_ids(kind, &account.id, &eid).await?;
        if ids.is_empty() {
            return Ok(Change::AlreadyInPlace);
        }
        let mut change = Change::AlreadyInPlace;
        for id in ids {
            let path = self.data(&format!("/sobjects/{object}/{}", super::api::segment(&id)));
            let r = self.call(Method::DELETE, &path, None).await?;
            if r.ok() {
                change = Change::Applied;
            } else if r.status != StatusCode::NOT_FOUND {
                return Err(self.failure(&r));
            }
        }
        Ok(change)
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let (kind, name) = Kind::parse(target);
        let eid = self.entitlement_id(kind, name).await?;
        let (object, field) = kind.assignment();
        let rows = self
            .query(&format!(
                "SELECT AssigneeId, Assignee.Username FROM {object} WHERE {field} = {}",
                soql_string(&eid)
            ))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Account {
                    id: str_field(r, "AssigneeId")?.to_string(),
                    login: r
                        .pointer("/Assignee/Username")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(soql_string("ada@example.com"), "'ada@example.com'");
        assert_eq!(soql_string("o'brien@x.io"), r"'o\'brien@x.io'");
        assert_eq!(soql_string(r"a\' OR Id != '"), r"'a\\\' OR Id != \''");
        assert_eq!(soql_string("a\nb\"c"), r#"'a\nb\"c'"#);
    }

    #[test]
    fn targets_name_a_permission_set_or_a_license() {
        assert_eq!(Kind::parse("Sales_Ops"), (Kind::PermissionSet, "Sales_Ops"));
        assert_eq!(
            Kind::parse("license:SalesConsoleUser"),
            (Kind::License, "SalesConsoleUser")
        );
    }

    #[test]
    fn error_details_name_codes() {
        let body = json!([{"message": "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
                           "errorCode": "DUPLICATE_VALUE", "fields": []}]);
        assert!(has_code(&body, "DUPLICATE_VALUE"));
        assert!(detail(&body).starts_with("DUPLICATE_VALUE: duplicate value found"));
    }
}
