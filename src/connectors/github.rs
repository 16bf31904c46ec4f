//! GitHub: organization team membership, and the organization's admin role.
//!
//! Config (`[connectors.<name>]`, `type = "github"`): `org`, `api_url` (default
//! `https://api.github.com`; GitHub Enterprise Server: `https://HOST/api/v3`), `timeout_secs`, and
//! one way to authenticate: `token_env`/`token_file` (a fine-grained or classic token), or a GitHub
//! App: `app_id`, `installation_id`, `private_key_env`/`private_key_file` (the App's PEM key; the
//! installation token is cached until five minutes before it expires).
//!
//! Targets: `<team-slug>` or `team:<team-slug>` (member), `team:<team-slug>:maintainer`, and
//! `org:admin` (the organization's owner role; revoking demotes to member).
//! Accounts: the person's GitHub login from the people file (`accounts.<connector> = "login"`),
//! else the one user GitHub finds with that email.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{segment, str_field, Api, Reply, TokenCache};
use super::jwt::{now_secs, SigningKey};
use super::{Account, Change, Connector, ConnectorError, Subject};
use crate::config::{Secret, SecretSource};

const PAGE: usize = 100;
const FIX: &str = "check the token: it needs the organization's Members read/write permission (a GitHub App: Organization members: write)";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    org: String,
    #[serde(default = "default_api_url")]
    api_url: String,
    token_env: Option<String>,
    token_file: Option<std::path::PathBuf>,
    app_id: Option<String>,
    installation_id: Option<String>,
    private_key_env: Option<String>,
    private_key_file: Option<std::path::PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

fn default_timeout() -> u64 {
    10
}

enum Auth {
    Token(Secret),
    App {
        app_id: String,
        installation_id: String,
        key: Box<SigningKey>,
        cached: TokenCache,
    },
}

/// What a catalog target names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Team { slug: String, role: &'static str },
    OrgAdmin,
}

fn parse_target(t: &str) -> Result<Target, String> {
    if t == "org:admin" {
        return Ok(Target::OrgAdmin);
    }
    let rest = t.strip_prefix("team:").unwrap_or(t);
    let (slug, role) = match rest.split_once(':') {
        None => (rest, "member"),
        Some((s, "maintainer")) => (s, "maintainer"),
        Some((s, "member")) => (s, "member"),
        Some(_) => {
            return Err(format!(
            "target {t:?}: expected <team-slug>, team:<slug>, team:<slug>:maintainer or org:admin"
        ))
        }
    };
    if slug.is_empty() {
        return Err(format!("target {t:?} names no team"));
    }
    Ok(Target::Team {
        slug: slug.to_string(),
        role,
    })
}

/// A GitHub organization.
pub struct GitHubConnector {
    api: Api,
    org: String,
    auth: Auth,
}

impl GitHubConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let auth = match (&s.app_id, &s.installation_id) {
            (Some(app_id), Some(installation_id)) => {
                let pem = SecretSource {
                    env: s.private_key_env.clone(),
                    file: s.private_key_file.clone(),
                }
                .load(
                    &format!("connectors.{name} private key"),
                    "GITHUB_APP_PRIVATE_KEY",
                )
                .map_err(|e| e.to_string())?;
                if pem.is_empty() {
                    return Err("a GitHub App needs private_key_file or private_key_env".into());
                }
                Auth::App {
                    app_id: app_id.clone(),
                    installation_id: installation_id.clone(),
                    key: Box::new(SigningKey::from_pem(pem.expose())?),
                    cached: TokenCache::new(300),
                }
            }
            (None, None) => {
                let token = SecretSource {
                    env: s.token_env.clone(),
                    file: s.token_file.clone(),
                }
                .load(&format!("connectors.{name} token"), "GITHUB_TOKEN")
                .map_err(|e| e.to_string())?;
                if token.is_empty() {
                    return Err(
                        "set token_env/token_file, or app_id + installation_id + private_key_file"
                            .into(),
                    );
                }
                Auth::Token(token)
            }
            _ => return Err("a GitHub App needs both app_id and installation_id".into()),
        };
        Ok(Self {
            api: Api::new(
                "GitHub",
                name,
                &s.api_url,
                Duration::from_secs(s.timeout_secs),
            ),
            org: s.org,
            auth,
        })
    }

    async fn token(&self) -> Result<Secret, ConnectorError> {
        match &self.auth {
            Auth::Token(t) => Ok(t.clone()),
            Auth::App {
                app_id,
                installation_id,
                key,
                cached,
            } => {
                cached
                    .get(|| async {
                        let now = now_secs();
                        let jwt = key
                            .sign(
                                &json!({"iat": now - 60, "exp": now + 540, "iss": app_id}),
                                None,
                            )
                            .map_err(|e| self.api.permanent(e))?;
                        let path = format!(
                            "/app/installations/{}/access_tokens",
                            segment(installation_id)
                        );
                        let rb = self
                            .api
                            .request(Method::POST, &path)
                            .header("Accept", "application/vnd.github+json, application/json")
                            .header("X-GitHub-Api-Version", "2022-11-28")
                            .bearer_auth(jwt);
                        let r = self.api.send(&Method::POST, &path, rb).await?;
                        if !r.ok() {
                            return Err(self.api.failure(
                                &r,
                                &message(&r),
                                "check app_id, installation_id and the App's private key",
                            ));
                        }
                        let token = str_field(&r.body, "token").ok_or_else(|| {
                            self.api
                                .permanent("the installation token answer has no token")
                        })?;
                        let until = str_field(&r.body, "expires_at")
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .map(|d| d.timestamp())
                            .unwrap_or(now + 3600);
                        Ok((Secret::new(token), until))
                    })
                    .await
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, ConnectorError> {
        let token = self.token().await?;
        let mut rb = self
            .api
            .request(method.clone(), path)
            .header("Accept", "application/vnd.github+json, application/json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .bearer_auth(token.expose());
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.api.send(&method, path, rb).await
    }

    /// Like `call`, but any non-2xx except the listed statuses is an error.
    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        allowed: &[StatusCode],
    ) -> Result<Reply, ConnectorError> {
        let r = self.call(method, path, body).await?;
        if r.ok() || allowed.contains(&r.status) {
            return Ok(r);
        }
        Err(self.api.failure(&r, &message(&r), FIX))
    }

    fn team_membership_path(&self, slug: &str, login: &str) -> String {
        format!(
            "/orgs/{}/teams/{}/memberships/{}",
            segment(&self.org),
            segment(slug),
            segment(login)
        )
    }

    fn org_membership_path(&self, login: &str) -> String {
        format!(
            "/orgs/{}/memberships/{}",
            segment(&self.org),
            segment(login)
        )
    }

    /// The membership's (state, role), or None when there is none.
    async fn membership(&self, path: &str) -> Result<Option<(String, String)>, ConnectorError> {
        let r = self
            .call_ok(Method::GET, path, None, &[StatusCode::NOT_FOUND])
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some((
            str_field(&r.body, "state").unwrap_or("active").to_string(),
            str_field(&r.body, "role").unwrap_or("member").to_string(),
        )))
    }

    async fn logins(&self, path_without_page: &str) -> Result<Vec<Account>, ConnectorError> {
        let mut out = Vec::new();
        for page in 1.. {
            let sep = if path_without_page.contains('?') {
                '&'
            } else {
                '?'
            };
            let path = format!("{path_without_page}{sep}per_page={PAGE}&page={page}");
            let r = self.call_ok(Method::GET, &path, None, &[]).await?;
            let items = r.body.as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items.iter().filter_map(|u| {
                str_field(u, "login").map(|l| Account {
                    id: l.to_string(),
                    login: Some(l.to_string()),
                })
            }));
            if n < PAGE {
                break;
            }
        }
        Ok(out)
    }

    fn target(&self, t: &str) -> Result<Target, ConnectorError> {
        parse_target(t).map_err(|e| self.api.permanent(e))
    }
}

/// GitHub's `message` field, if any.
fn message(r: &Reply) -> String {
    str_field(&r.body, "message")
        .map(str::to_string)
        .or_else(|| r.body.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[async_trait]
impl Connector for GitHubConnector {
    fn kind(&self) -> &'static str {
        "github"
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        if let Some(login) = subject.mapped_id {
            let path = format!("/users/{}", segment(login));
            let r = self
                .call_ok(Method::GET, &path, None, &[StatusCode::NOT_FOUND])
                .await?;
            if r.status == StatusCode::NOT_FOUND {
                return Err(self.api.permanent(format!(
                    "the people file maps {} to GitHub login {login:?}, which does not exist: fix the mapping",
                    subject.email
                )));
            }
            let login = str_field(&r.body, "login").unwrap_or(login).to_string();
            return Ok(Account {
                id: login.clone(),
                login: Some(login),
            });
        }
        let q = serde_urlencoded::to_string([("q", format!("{} in:email", subject.email))])
            .map_err(|e| self.api.permanent(e))?;
        let r = self
            .call_ok(Method::GET, &format!("/search/users?{q}"), None, &[])
            .await?;
        let items = r
            .body
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match items.as_slice() {
            [one] => {
                let login = str_field(one, "login")
                    .ok_or_else(|| self.api.permanent("a search result without login"))?;
                Ok(Account { id: login.to_string(), login: Some(login.to_string()) })
            }
            [] => Err(self.api.permanent(format!(
                "no GitHub user has the public email {}: add accounts.{} = \"<login>\" to their entry in the people file",
                subject.email,
                self.api.name()
            ))),
            _ => Err(self.api.permanent(format!(
                "{} GitHub users match {}: map the right login in the people file (accounts.{})",
                items.len(),
                subject.email,
                self.api.name()
            ))),
        }
    }

    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        match self.target(target)? {
            Target::Team { slug, role } => {
                let path = self.team_membership_path(&slug, &account.id);
                if let Some((_, held)) = self.membership(&path).await? {
                    if held == role || (role == "member" && held == "maintainer") {
                        return Ok(Change::AlreadyInPlace);
                    }
                }
                self.call_ok(Method::PUT, &path, Some(json!({"role": role})), &[])
                    .await?;
                Ok(Change::Applied)
            }
            Target::OrgAdmin => {
                let path = self.org_membership_path(&account.id);
                if let Some((_, role)) = self.membership(&path).await? {
                    if role == "admin" {
                        return Ok(Change::AlreadyInPlace);
                    }
                }
                self.call_ok(Method::PUT, &path, Some(json!({"role": "admin"})), &[])
                    .await?;
                Ok(Change::Applied)
            }
        }
    }

    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError> {
        match self.target(target)? {
            Target::Team { slug, .. } => {
                let path = self.team_membership_path(&slug, &account.id);
                if self.membership(&path).await?.is_none() {
                    return Ok(Change::AlreadyInPlace);
                }
                let r = self
                    .call_ok(Method::DELETE, &path, None, &[StatusCode::NOT_FOUND])
                    .await?;
                Ok(if r.status == StatusCode::NOT_FOUND {
                    Change::AlreadyInPlace
                } else {
                    Change::Applied
                })
            }
            Target::OrgAdmin => {
                let path = self.org_membership_path(&account.id);
                match self.membership(&path).await? {
                    Some((_, role)) if role == "admin" => {
                        self.call_ok(Method::PUT, &path, Some(json!({"role": "member"})), &[])
                            .await?;
                        Ok(Change::Applied)
                    }
                    _ => Ok(Change::AlreadyInPlace),
                }
            }
        }
    }

    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError> {
        match self.target(target)? {
            Target::Team { slug, role } => {
                let role = if role == "maintainer" {
                    "maintainer"
                } else {
                    "all"
                };
                self.logins(&format!(
                    "/orgs/{}/teams/{}/members?role={role}",
                    segment(&self.org),
                    segment(&slug)
                ))
                .await
            }
            Target::OrgAdmin => {
                self.logins(&format!("/orgs/{}/members?role=admin", segment(&self.org)))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("platform-admins").unwrap(),
            Target::Team {
                slug: "platform-admins".into(),
                role: "member"
            }
        );
        assert_eq!(
            parse_target("team:sre:maintainer").unwrap(),
            Target::Team {
                slug: "sre".into(),
                role: "maintainer"
            }
        );
        assert_eq!(parse_target("org:admin").unwrap(), Target::OrgAdmin);
        assert!(parse_target("team:sre:owner").is_err());
        assert!(parse_target("team:").is_err());
    }
}
