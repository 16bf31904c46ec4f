//! Google Workspace: group membership through the Admin SDK Directory API (members insert/delete).
//!
//! Config (`[connectors.<name>]`, `type = "google"`): `credentials_file`/`credentials_env` (the
//! service account's JSON key), `admin_email` (the Workspace admin the service account acts as,
//! by domain-wide delegation), `api_url` (default `https://admin.googleapis.com`), `timeout_secs`.
//! Scope (grant it to the service account's client id in the Admin console):
//! `https://www.googleapis.com/auth/admin.directory.group.member`. The access token is cached until
//! a minute before it expires.
//!
//! Targets: the group's email (or id). Accounts: the person's email, or the mapped
//! `accounts.<connector>` from the people file.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{segment, str_field, Api, Reply, TokenCache};
use super::jwt::{now_secs, SigningKey};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

const SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.group.member";
const FIX: &str = "check domain-wide delegation: the service account's client id needs the scope https://www.googleapis.com/auth/admin.directory.group.member, and admin_email must be an admin who may manage this group";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    credentials_env: Option<String>,
    credentials_file: Option<std::path::PathBuf>,
    admin_email: String,
    #[serde(default = "default_api_url")]
    api_url: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_api_url() -> String {
    "https://admin.googleapis.com".into()
}

fn default_timeout() -> u64 {
    10
}

/// The fields of a service account key grantry uses.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

/// A Google Workspace domain.
pub struct GoogleConnector {
    api: Api,
    client_email: String,
    key: SigningKey,
    key_id: Option<String>,
    token_uri: String,
    admin_email: String,
    cached: TokenCache,
}

impl GoogleConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let json = SecretSource {
            env: s.credentials_env.clone(),
            file: s.credentials_file.clone(),
        }
        .load(
            &format!("connectors.{name} credentials"),
            "GOOGLE_CREDENTIALS",
        )
        .map_err(|e| e.to_string())?;
        if json.is_empty() {
            return Err(
                "set credentials_file or credentials_env (the service account's JSON key)".into(),
            );
        }
        let key: ServiceAccountKey = serde_json::from_str(json.expose()).map_err(|_| {
            "the credentials are not a service account JSON key (client_email, private_key)"
                .to_string()
        })?;
        Ok(Self {
            api: Api::new(
                "Google",
                name,
                &s.api_url,
                Duration::from_secs(s.timeout_secs),
            ),
            client_email: key.client_email,
            key: SigningKey::from_pem(&key.private_key)?,
            key_id: key.private_key_id,
            token_uri: key.token_uri,
            admin_email: s.admin_email,
            cached: TokenCache::new(60),
        })
    }

    /// An access token for the admin, by the JWT bearer grant (RFC 7523).
    async fn token(&self) -> Result<Secret, ConnectorError> {
        self.cached
            .get(|| async {
                let now = now_secs();
                let assertion = self
                    .key
                    .sign(
                        &json!({"iss": self.client_email, "sub": self.admin_email, "scope": SCOPE,
                        "aud": self.token_uri, "iat": now, "exp": now + 3600}),
                        self.key_id.as_deref(),
                    )
                    .map_err(|e| self.api.permanent(e))?;
                let rb = self.api.http.post(&self.token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ]);
                let r = self.api.send(&Method::POST, "/token", rb).await?;
                if !r.ok() {
                    let detail = str_field(&r.body, "error_description")
                        .or_else(|| str_field(&r.body, "error"))
                        .unwrap_or_default()
                        .to_string();
                    return Err(match self.api.failure(&r, &detail, "") {
                        e @ ConnectorError::Transient { .. } => e,
                        _ => self
                            .api
                            .permanent(format!("the token endpoint refused: {detail} ({FIX})")),
                    });
                }
                let token = str_field(&r.body, "access_token")
                    .ok_or_else(|| self.api.permanent("the token answer has no access_token"))?;
                let ttl = r
                    .body
                    .get("expires_in")
                    .and_then(Value::as_i64)
                    .unwrap_or(3600);
                Ok((Secret::new(token), now + ttl))
            })
            .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        allowed: &[StatusCode],
    ) -> Result<Reply, ConnectorError> {
        let token = self.token().await?;
        let mut rb = self
            .api
            .request(method.clone(), path)
            .bearer_auth(token.expose());
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = self.api.send(&method, path, rb).await?;
        if r.ok() || allowed.contains(&r.status) {
            return Ok(r);
        }
        let detail = r
            .body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Err(self.api.failure(&r, &detail, FIX))
    }

    fn members_path(group: &str) -> String {
        format!("/admin/directory/v1/groups/{}/members", segment(group))
    }

    async fn has_member(&self, group: &str, member: &str) -> Result<bool, ConnectorError> {
        let path = format!(
            "/admin/directory/v1/groups/{}/hasMember/{}",
            segment(group),
            segment(member)
        );
        let r = self.call(Method::GET, &path, None, &[]).await?;
        Ok(r.body
            .get("isMember")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }
}

#[async_trait]
impl Connector for GoogleConnector {
    fn kind(&self) -> &'static str {
        "google"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        let id = subject
            .mapped_id
            .unwrap_or(subject.email)
            .to_ascii_lowercase();
        Ok(Account {
            id: id.clone(),
            login: Some(id),
        })
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        if self.has_member(target, &account.id).await? {
            return Ok(Change::AlreadyInPlace);
        }
        let r = self
            .call(
                Method::POST,
                &Self::members_path(target),
                Some(json!({"email": account.id, "role": "MEMBER"})),
                &[StatusCode::CONFLICT],
            )
            .await?;
        Ok(if r.status == StatusCode::CONFLICT {
            Change::AlreadyInPlace
        } else {
            Change::Applied
        })
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        if !self.has_member(target, &account.id).await? {
            return Ok(Change::AlreadyInPlace);
        }
        let path = format!("{}/{}", Self::members_path(target), segment(&account.id));
        let r = self
            .call(Method::DELETE, &path, None, &[StatusCode::NOT_FOUND])
            .await?;
        Ok(if r.status == StatusCode::NOT_FOUND {
            Change::AlreadyInPlace
        } else {
            Change::Applied
        })
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut path = format!("{}?maxResults=200", Self::members_path(target));
            if let Some(t) = &page_token {
                path.push_str(&format!("&pageToken={}", segment(t)));
            }
            let r = self.call(Method::GET, &path, None, &[]).await?;
            out.extend(
                r.body
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| {
                        let email = str_field(m, "email")?.to_ascii_lowercase();
                        Some(Account {
                            id: email.clone(),
                            login: Some(email),
                        })
                    }),
            );
            match str_field(&r.body, "nextPageToken") {
                Some(t) if !t.is_empty() && Some(t) != page_token.as_deref() => {
                    page_token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(out)
    }
}
