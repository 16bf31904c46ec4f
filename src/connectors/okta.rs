//! Okta: group membership (`PUT`/`DELETE /api/v1/groups/{groupId}/users/{userId}`).
//!
//! Config (`[connectors.<name>]`, `type = "okta"`): `org_url` (e.g. `https://acme.okta.com`),
//! `timeout_secs`, and one way to authenticate: `token_env`/`token_file` (an API token, sent as
//! `SSWS`), or OAuth 2.0 for a service app: `client_id`, `private_key_env`/`private_key_file`
//! (PEM; private_key_jwt), optional `key_id`; scopes `okta.users.read okta.groups.manage`.
//!
//! Targets: an Okta group id (`00g…`) or the group's exact name. Accounts: the person's Okta user
//! id from the people file (`accounts.<connector>`), else the user whose login or email is theirs.
//! Rate limits: a 429 waits until `X-Rate-Limit-Reset`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::api::{segment, str_field, Api, Reply, TokenCache};
use super::jwt::{now_secs, SigningKey};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

const PAGE: usize = 200;
const SCOPES: &str = "okta.users.read okta.groups.manage";
const FIX: &str = "check the API token's admin role (Group Membership Admin or higher) or the service app's scopes okta.users.read and okta.groups.manage";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    org_url: String,
    token_env: Option<String>,
    token_file: Option<std::path::PathBuf>,
    client_id: Option<String>,
    private_key_env: Option<String>,
    private_key_file: Option<std::path::PathBuf>,
    key_id: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

enum Auth {
    Ssws(Secret),
    OAuth {
        client_id: String,
        key: Box<SigningKey>,
        key_id: Option<String>,
        cached: TokenCache,
    },
}

/// An Okta organization.
pub struct OktaConnector {
    api: Api,
    org_url: String,
    auth: Auth,
    group_ids: Mutex<HashMap<String, String>>,
}

impl OktaConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let auth = match &s.client_id {
            Some(client_id) => {
                let pem = SecretSource {
                    env: s.private_key_env.clone(),
                    file: s.private_key_file.clone(),
                }
                .load(
                    &format!("connectors.{name} private key"),
                    "OKTA_PRIVATE_KEY",
                )
                .map_err(|e| e.to_string())?;
                if pem.is_empty() {
                    return Err("OAuth needs private_key_file or private_key_env".into());
                }
                Auth::OAuth {
                    client_id: client_id.clone(),
                    key: Box::new(SigningKey::from_pem(pem.expose())?),
                    key_id: s.key_id.clone(),
                    cached: TokenCache::new(60),
                }
            }
            None => {
                let token = SecretSource {
                    env: s.token_env.clone(),
                    file: s.token_file.clone(),
                }
                .load(&format!("connectors.{name} token"), "OKTA_API_TOKEN")
                .map_err(|e| e.to_string())?;
                if token.is_empty() {
                    return Err(
                        "set token_env/token_file (an API token), or client_id + private_key_file"
                            .into(),
                    );
                }
                Auth::Ssws(token)
            }
        };
        let org_url = s.org_url.trim_end_matches('/').to_string();
        Ok(Self {
            api: Api::new("Okta", name, &org_url, Duration::from_secs(s.timeout_secs)),
            org_url,
            auth,
            group_ids: Mutex::new(HashMap::new()),
        })
    }

    async fn authorization(&self) -> Result<String, ConnectorError> {
        match &self.auth {
            Auth::Ssws(t) => Ok(format!("SSWS {}", t.expose())),
            Auth::OAuth {
                client_id,
                key,
                key_id,
                cached,
            } => {
                cached.get(|| async {
                let now = now_secs();
                let token_url = format!("{}/oauth2/v1/token", self.org_url);
                let assertion = key
                    .sign(
                        &json!({"iss": client_id, "sub": client_id, "aud": token_url,
                                "iat": now, "exp": now + 300,
                                "jti": format!("{:032x}", rand::random::<u128>())}),
                        key_id.as_deref(),
                    )
                    .map_err(|e| self.api.permanent(e))?;
                let path = "/oauth2/v1/token";
                let rb = self.api.request(Method::POST, path).form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", SCOPES),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ]);
                let r = self.api.send(&Method::POST, path, rb).await?;
                if !r.ok() {
                    let detail = str_field(&r.body, "error_description")
                        .unwrap_or_default()
                        .to_string();
                    return Err(match self.api.failure(&r, &detail, "") {
                        e @ ConnectorError::Transient { .. } => e,
                        _ => self.api.permanent(format!(
                            "{} answered {}: {detail} (check client_id, the registered public key and the granted scopes {SCOPES})",
                            r.what, r.status
                        )),
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
                .map(|t| format!("Bearer {}", t.expose()))
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        allowed: &[StatusCode],
    ) -> Result<Reply, ConnectorError> {
        let auth = self.authorization().await?;
        let rb = self
            .api
            .request(method.clone(), path)
            .header("Accept", "application/json")
            .header("Authorization", auth);
        let r = self.api.send(&method, path, rb).await?;
        if r.ok() || allowed.contains(&r.status) {
            return Ok(r);
        }
        let detail = str_field(&r.body, "errorSummary")
            .unwrap_or_default()
            .to_string();
        Err(self.api.failure(&r, &detail, FIX))
    }

    async fn group_id(&self, target: &str) -> Result<String, ConnectorError> {
        if target.starts_with("00g") && !target.contains(' ') {
            return Ok(target.to_string());
        }
        if let Some(id) = self.group_ids.lock().await.get(target) {
            return Ok(id.clone());
        }
        let q = serde_urlencoded::to_string([(
            "search",
            format!("profile.name eq {}", Value::String(target.into())),
        )])
        .map_err(|e| self.api.permanent(e))?;
        let r = self
            .call(Method::GET, &format!("/api/v1/groups?{q}"), &[])
            .await?;
        let id = r
            .body
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g.pointer("/profile/name").and_then(Value::as_str) == Some(target))
            .and_then(|g| str_field(g, "id"))
            .ok_or_else(|| {
                self.api.permanent(format!(
                    "no group named {target:?}: create it or fix the catalog's target"
                ))
            })?
            .to_string();
        self.group_ids
            .lock()
            .await
            .insert(target.to_string(), id.clone());
        Ok(id)
    }

    async fn holds(&self, user_id: &str, group_id: &str) -> Result<bool, ConnectorError> {
        let r = self
            .call(
                Method::GET,
                &format!("/api/v1/users/{}/groups", segment(user_id)),
                &[],
            )
            .await?;
        Ok(r.body
            .as_array()
            .into_iter()
            .flatten()
            .any(|g| str_field(g, "id") == Some(group_id)))
    }
}

fn account(user: &Value) -> Option<Account> {
    Some(Account {
        id: str_field(user, "id")?.to_string(),
        login: user
            .pointer("/profile/login")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The `after` cursor of a `Link: <…?after=X…>; rel="next"` header.
fn next_cursor(r: &Reply) -> Option<String> {
    r.headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| {
            let url = l.split(['<', '>']).nth(1)?;
            let query = url.split_once('?')?.1;
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "after")
                .map(|(_, v)| v)
        })
}

#[async_trait]
impl Connector for OktaConnector {
    fn kind(&self) -> &'static str {
        "okta"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        let user = if let Some(id) = subject.mapped_id {
            let r = self
                .call(
                    Method::GET,
                    &format!("/api/v1/users/{}", segment(id)),
                    &[StatusCode::NOT_FOUND],
                )
                .await?;
            if r.status == StatusCode::NOT_FOUND {
                return Err(self.api.permanent(format!(
                    "the people file maps {} to Okta user {id:?}, which does not exist: fix the mapping",
                    subject.email
                )));
            }
            r.body
        } else {
            let email = Value::String(subject.email.to_string());
            let q = serde_urlencoded::to_string([(
                "search",
                format!("profile.login eq {email} or profile.email eq {email}"),
            )])
            .map_err(|e| self.api.permanent(e))?;
            let r = self
                .call(Method::GET, &format!("/api/v1/users?{q}"), &[])
                .await?;
            r.body
                .as_array()
                .and_then(|a| a.first().cloned())
                .ok_or_else(|| {
                    self.api.permanent(format!(
                        "no Okta user has login or email {}: the person has no Okta account yet",
                        subject.email
                    ))
                })?
        };
        if str_field(&user, "status") == Some("DEPROVISIONED") {
            return Err(self
                .api
                .permanent(format!("{} is deactivated in Okta", subject.email)));
        }
        account(&user).ok_or_else(|| self.api.permanent("a user without id"))
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        if self.holds(&account.id, &gid).await? {
            return Ok(Change::AlreadyInPlace);
        }
        let path = format!(
            "/api/v1/groups/{}/users/{}",
            segment(&gid),
            segment(&account.id)
        );
        self.call(Method::PUT, &path, &[]).await?;
        Ok(Change::Applied)
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        let gid = self.group_id(target).await?;
        if !self.holds(&account.id, &gid).await? {
            return Ok(Change::AlreadyInPlace);
        }
        let path = format!(
            "/api/v1/groups/{}/users/{}",
            segment(&gid),
            segment(&account.id)
        );
        let r = self
            .call(Method::DELETE, &path, &[StatusCode::NOT_FOUND])
            .await?;
        Ok(if r.status == StatusCode::NOT_FOUND {
            Change::AlreadyInPlace
        } else {
            Change::Applied
        })
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        let gid = self.group_id(target).await?;
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/groups/{}/users?limit={PAGE}", segment(&gid));
            if let Some(a) = &after {
                path.push_str(&format!("&after={}", segment(a)));
            }
            let r = self.call(Method::GET, &path, &[]).await?;
            out.extend(r.body.as_array().into_iter().flatten().filter_map(account));
            match next_cursor(&r) {
                Some(c) if Some(&c) != after.as_ref() => after = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }
}
