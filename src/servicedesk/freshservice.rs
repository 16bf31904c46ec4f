//! Freshservice: the v2 API (`/api/v2/tickets`).
//!
//! Create: `POST /api/v2/tickets` (`subject`, `description` as HTML, `email` of the requester,
//! `priority`, `status` 2 = Open, `source`); notes: `POST /api/v2/tickets/{id}/notes` (`body`,
//! `private: false`); resolve: a note, then `PUT /api/v2/tickets/{id}` with `status` 4 = Resolved.
//! Auth: Basic with the API key as user and `X` as password. Inbound: a Workflow Automator
//! webhook with the ticket placeholders (`ticket_id`, `ticket_subject`, `ticket_description`,
//! `ticket_requester_email`), flat or under `freshdesk_webhook`.

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
    /// `https://<domain>.freshservice.com`
    base_url: String,
    // Read by `super::secret`; listed so that unknown keys are refused.
    #[allow(dead_code)]
    api_key_env: Option<String>,
    #[allow(dead_code)]
    api_key_file: Option<String>,
    /// 1 low … 4 urgent.
    #[serde(default = "default_priority")]
    priority: u8,
    /// The `source` of created tickets (2 = portal).
    #[serde(default = "default_source")]
    source: u8,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_priority() -> u8 {
    2
}
fn default_source() -> u8 {
    2
}
fn default_timeout() -> u64 {
    10
}

/// Freshservice's status for a resolved ticket.
const RESOLVED: u8 = 4;
/// … and an open one.
const OPEN: u8 = 2;

/// A Freshservice helpdesk.
pub struct Freshservice {
    api: Api,
    base_url: String,
    auth: Secret,
    priority: u8,
    source: u8,
}

impl Freshservice {
    /// Builds it from `[service_desks.<name>]`.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = super::settings(settings)?;
        let key = super::secret(name, settings, "api_key", "FRESHSERVICE_API_KEY")?;
        if key.is_empty() {
            return Err(
                "set api_key_env or api_key_file, or FRESHSERVICE_API_KEY (an agent's API key)"
                    .into(),
            );
        }
        if !(1..=4).contains(&s.priority) {
            return Err("priority is 1 (low) to 4 (urgent)".into());
        }
        Ok(Self {
            api: Api::new(
                "Freshservice",
                name,
                &s.base_url,
                Duration::from_secs(s.timeout_secs),
            ),
            base_url: s.base_url.trim_end_matches('/').to_string(),
            auth: super::basic(key.expose(), &Secret::new("X")),
            priority: s.priority,
            source: s.source,
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
            "/description",
            "the API key's agent needs a role that may create and edit tickets",
        )
        .await
    }
}

fn id_path(id: &str) -> String {
    id.chars().filter(char::is_ascii_digit).collect()
}

/// Plain text as Freshservice's HTML description.
fn html(text: &str) -> String {
    text.lines()
        .map(|l| {
            format!(
                "<div>{}</div>",
                l.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            )
        })
        .collect()
}

#[async_trait]
impl ServiceDesk for Freshservice {
    fn kind(&self) -> &'static str {
        "freshservice"
    }

    async fn create(&self, t: &NewTicket) -> Result<TicketRef, DeskError> {
        let body = json!({
            "subject": t.summary,
            "description": html(&t.description),
            "email": t.requester,
            "priority": self.priority,
            "status": OPEN,
            "source": self.source,
        });
        let v = self
            .call(Method::POST, "/api/v2/tickets", Some(body))
            .await?;
        let id = v
            .pointer("/ticket/id")
            .and_then(Value::as_i64)
            .ok_or_else(|| self.api.permanent("the created ticket has no id"))?;
        Ok(TicketRef {
            key: id.to_string(),
            url: Some(format!("{}/helpdesk/tickets/{id}", self.base_url)),
        })
    }

    async fn comment(&self, key: &str, text: &str) -> Result<(), DeskError> {
        let path = format!("/api/v2/tickets/{}/notes", id_path(key));
        self.call(
            Method::POST,
            &path,
            Some(json!({"body": html(text), "private": false})),
        )
        .await?;
        Ok(())
    }

    async fn resolve(&self, key: &str, text: &str) -> Result<(), DeskError> {
        self.comment(key, text).await?;
        let path = format!("/api/v2/tickets/{}", id_path(key));
        self.call(Method::PUT, &path, Some(json!({"status": RESOLVED})))
            .await?;
        Ok(())
    }

    fn parse_inbound(&self, body: &Value) -> Result<InboundTicket, String> {
        let t = body.get("freshdesk_webhook").unwrap_or(body);
        let id = super::first_str(t, &["/ticket_id"]).ok_or("the payload has no ticket_id")?;
        // Placeholders may render the id with a prefix (`#SR-12`): keep the digits.
        let key = id_path(&id);
        if key.is_empty() {
            return Err(format!("ticket_id '{id}' has no number"));
        }
        let email = super::first_str(t, &["/ticket_requester_email", "/requester_email"])
            .ok_or("the payload has no ticket_requester_email")?;
        let text = super::request_text(&[
            super::first_str(t, &["/ticket_subject"]),
            super::first_str(t, &["/ticket_description"]),
        ])?;
        Ok(InboundTicket {
            ticket: TicketRef {
                url: Some(format!("{}/helpdesk/tickets/{key}", self.base_url)),
                key,
            },
            requester_email: email,
            text,
        })
    }
}
