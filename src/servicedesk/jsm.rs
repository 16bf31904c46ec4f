//! Jira Service Management (Atlassian Cloud): the request REST API (`/rest/servicedeskapi`).
//!
//! Create: `POST /rest/servicedeskapi/request` (`serviceDeskId`, `requestTypeId`,
//! `requestFieldValues.summary/description`); notes: `POST …/request/{key}/comment` (`public`);
//! resolve: `GET …/request/{key}/transition`, then `POST` the one named like `resolve_transition`
//! with an `additionalComment`. Auth: an API token (Basic email:token) or an OAuth bearer token.
//! Inbound: Jira's `jira:issue_created` webhook (`issue.key`, `issue.fields.summary`,
//! `description`, `reporter.emailAddress`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{DeskError, InboundTicket, NewTicket, ServiceDesk, TicketRef};
use crate::config::Secret;
use crate::connectors::api::Api;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `https://<site>.atlassian.net`
    base_url: String,
    service_desk_id: String,
    request_type_id: String,
    /// The account the API token belongs to (Basic auth); absent: `token` is an OAuth bearer.
    email: Option<String>,
    // Read by `super::secret`; listed so that unknown keys are refused.
    #[allow(dead_code)]
    token_env: Option<String>,
    #[allow(dead_code)]
    token_file: Option<String>,
    /// Transition names to resolve with, tried in order (case-insensitive, "contains").
    #[serde(default = "default_resolve")]
    resolve_transition: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_resolve() -> Vec<String> {
    ["resolve", "done", "close", "complete"]
        .map(String::from)
        .to_vec()
}

fn default_timeout() -> u64 {
    10
}

/// A Jira Service Management project.
pub struct Jsm {
    api: Api,
    base_url: String,
    auth: Secret,
    service_desk_id: String,
    request_type_id: String,
    resolve_transition: Vec<String>,
}

impl Jsm {
    /// Builds it from `[service_desks.<name>]`.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = super::settings(settings)?;
        let token = super::secret(name, settings, "token", "JSM_API_TOKEN")?;
        if token.is_empty() {
            return Err(
                "set token_env or token_file, or JSM_API_TOKEN (an Atlassian API token or OAuth token)".into(),
            );
        }
        let auth = match &s.email {
            Some(email) => super::basic(email, &token),
            None => Secret::new(format!("Bearer {}", token.expose())),
        };
        Ok(Self {
            api: Api::new(
                "Jira Service Management",
                name,
                &s.base_url,
                Duration::from_secs(s.timeout_secs),
            ),
            base_url: s.base_url.trim_end_matches('/').to_string(),
            auth,
            service_desk_id: s.service_desk_id,
            request_type_id: s.request_type_id,
            resolve_transition: s.resolve_transition,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DeskError> {
        super::call(
            &self.api,
            &self.auth,
            method,
            path,
            body,
            "/errorMessage",
            "the account needs the Service Desk Team role (agent) in the project",
        )
        .await
    }
}

fn key_path(key: &str) -> String {
    // Keys are `ABC-123` or numeric ids: nothing to escape, but refuse anything else.
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[async_trait]
impl ServiceDesk for Jsm {
    fn kind(&self) -> &'static str {
        "jsm"
    }

    async fn create(&self, t: &NewTicket) -> Result<TicketRef, DeskError> {
        let body = json!({
            "serviceDeskId": self.service_desk_id,
            "requestTypeId": self.request_type_id,
            "requestFieldValues": {"summary": t.summary, "description": t.description},
        });
        let v = self
            .call(Method::POST, "/rest/servicedeskapi/request", Some(body))
            .await?;
        let key = v
            .get("issueKey")
            .and_then(Value::as_str)
            .ok_or_else(|| self.api.permanent("the created request has no issueKey"))?;
        let url = v
            .pointer("/_links/web")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/browse/{key}", self.base_url));
        Ok(TicketRef {
            key: key.to_string(),
            url: Some(url),
        })
    }

    async fn comment(&self, key: &str, text: &str) -> Result<(), DeskError> {
        let path = format!("/rest/servicedeskapi/request/{}/comment", key_path(key));
        self.call(
            Method::POST,
            &path,
            Some(json!({"body": text, "public": true})),
        )
        .await?;
        Ok(())
    }

    async fn resolve(&self, key: &str, text: &str) -> Result<(), DeskError> {
        let path = format!("/rest/servicedeskapi/request/{}/transition", key_path(key));
        let v = self.call(Method::GET, &path, None).await?;
        let values = v
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let found = self.resolve_transition.iter().find_map(|want| {
            values.iter().find(|t| {
                t.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.to_lowercase().contains(&want.to_lowercase()))
            })
        });
        let Some(id) = found.and_then(|t| t.get("id")).and_then(Value::as_str) else {
            // Already resolved (no such transition left) or a workflow without one: say so on
            // the ticket rather than fail the request's record.
            return self.comment(key, text).await;
        };
        self.call(
            Method::POST,
            &path,
            Some(json!({"id": id, "additionalComment": {"body": text}})),
        )
        .await?;
        Ok(())
    }

    fn parse_inbound(&self, body: &Value) -> Result<InboundTicket, String> {
        let key = super::first_str(body, &["/issue/key"])
            .ok_or("the payload has no issue.key (send Jira's issue_created webhook)")?;
        let email = super::first_str(body, &["/issue/fields/reporter/emailAddress", "/user/emailAddress"])
            .ok_or("the payload has no reporter.emailAddress (the reporter's email is hidden by their privacy settings?)")?;
        let text = super::request_text(&[
            super::first_str(body, &["/issue/fields/summary"]),
            super::first_str(body, &["/issue/fields/description"]),
        ])?;
        Ok(InboundTicket {
            ticket: TicketRef {
                url: Some(format!("{}/browse/{key}", self.base_url)),
                key,
            },
            requester_email: email,
            text,
        })
    }
}
