//! ServiceNow: the Table API (`/api/now/table/<table>`, default `sc_req_item`).
//!
//! Create: `POST /api/now/table/<table>` with `short_description`, `description` and
//! `correlation_id` = the request id (looked up first with `GET …?sysparm_query=correlation_id=…`,
//! so a retry after a lost answer finds the record instead of opening a second); notes:
//! `PATCH /api/now/table/<table>/<sys_id>` with `comments` (customer-visible) or `work_notes`;
//! resolve: the same PATCH with `state` = `resolved_state` (default `3`, Closed Complete) and
//! `close_notes`. Auth: Basic (an integration user) or an OAuth bearer token.
//! Inbound: a Business Rule's REST message with the record's fields (`sys_id`, `number`,
//! `short_description`, `description`, and the requester's email as `requested_for_email`,
//! `opened_by_email` or `caller_email`), flat or under `record`.

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
    /// `https://<instance>.service-now.com`
    instance_url: String,
    #[serde(default = "default_table")]
    table: String,
    /// Basic auth user; absent: `password` is an OAuth bearer token.
    username: Option<String>,
    // Read by `super::secret`; listed so that unknown keys are refused.
    #[allow(dead_code)]
    password_env: Option<String>,
    #[allow(dead_code)]
    password_file: Option<String>,
    /// The `state` value that resolves a record of `table`.
    #[serde(default = "default_resolved")]
    resolved_state: String,
    /// `comments` (the requester sees them) or `work_notes` (agents only).
    #[serde(default = "default_notes")]
    notes_field: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_table() -> String {
    "sc_req_item".into()
}
fn default_resolved() -> String {
    "3".into()
}
fn default_notes() -> String {
    "comments".into()
}
fn default_timeout() -> u64 {
    10
}

/// A ServiceNow instance's table.
pub struct ServiceNow {
    api: Api,
    instance_url: String,
    auth: Secret,
    table: String,
    resolved_state: String,
    notes_field: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ServiceNow {
    /// Builds it from `[service_desks.<name>]`.
    pub fn from_settings(name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = super::settings(settings)?;
        if !valid_name(&s.table) || !valid_name(&s.notes_field) {
            return Err("table and notes_field are ServiceNow names (letters, digits, _)".into());
        }
        let password = super::secret(name, settings, "password", "SERVICENOW_PASSWORD")?;
        if password.is_empty() {
            return Err("set password_env or password_file, or SERVICENOW_PASSWORD (the integration user's password, or an OAuth token)".into());
        }
        let auth = match &s.username {
            Some(u) => super::basic(u, &password),
            None => Secret::new(format!("Bearer {}", password.expose())),
        };
        Ok(Self {
            api: Api::new(
                "ServiceNow",
                name,
                &s.instance_url,
                Duration::from_secs(s.timeout_secs),
            ),
            instance_url: s.instance_url.trim_end_matches('/').to_string(),
            auth,
            table: s.table,
            resolved_state: s.resolved_state,
            notes_field: s.notes_field,
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
            "/error/message",
            "the integration user needs the itil role (read, create and write on the table)",
        )
        .await
    }

    fn url_of(&self, sys_id: &str) -> String {
        format!(
            "{}/nav_to.do?uri={}.do?sys_id={sys_id}",
            self.instance_url, self.table
        )
    }
}

fn sys_id_path(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

#[async_trait]
impl ServiceDesk for ServiceNow {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    async fn create(&self, t: &NewTicket) -> Result<TicketRef, DeskError> {
        let table = format!("/api/now/table/{}", self.table);
        // The request id is grantry's own (R- and base32): safe in a query.
        let lookup = format!(
            "{table}?sysparm_query=correlation_id={}&sysparm_limit=1&sysparm_fields=sys_id,number",
            t.request_id
        );
        let found = self.call(Method::GET, &lookup, None).await?;
        let existing = found
            .pointer("/result/0/sys_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let sys_id = match existing {
            Some(id) => id,
            None => {
                let body = json!({
                    "short_description": t.summary,
                    "description": t.description,
                    "correlation_id": t.request_id,
                    "correlation_display": "grantry",
                });
                let v = self.call(Method::POST, &table, Some(body)).await?;
                v.pointer("/result/sys_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| self.api.permanent("the created record has no sys_id"))?
                    .to_string()
            }
        };
        Ok(TicketRef {
            url: Some(self.url_of(&sys_id)),
            key: sys_id,
        })
    }

    async fn comment(&self, key: &str, text: &str) -> Result<(), DeskError> {
        let path = format!("/api/now/table/{}/{}", self.table, sys_id_path(key));
        let mut body = serde_json::Map::new();
        body.insert(self.notes_field.clone(), json!(text));
        self.call(Method::PATCH, &path, Some(Value::Object(body)))
            .await?;
        Ok(())
    }

    async fn resolve(&self, key: &str, text: &str) -> Result<(), DeskError> {
        let path = format!("/api/now/table/{}/{}", self.table, sys_id_path(key));
        let mut body = serde_json::Map::new();
        body.insert(self.notes_field.clone(), json!(text));
        body.insert("state".into(), json!(self.resolved_state));
        body.insert("close_notes".into(), json!(text));
        self.call(Method::PATCH, &path, Some(Value::Object(body)))
            .await?;
        Ok(())
    }

    fn parse_inbound(&self, body: &Value) -> Result<InboundTicket, String> {
        let record = body.get("record").unwrap_or(body);
        let key = super::first_str(record, &["/sys_id"]).ok_or("the payload has no sys_id")?;
        let email = super::first_str(
            record,
            &["/requested_for_email", "/opened_by_email", "/caller_email"],
        )
        .ok_or("the payload names no requester: send requested_for_email (or opened_by_email, caller_email)")?;
        let text = super::request_text(&[
            super::first_str(record, &["/short_description"]),
            super::first_str(record, &["/description"]),
        ])?;
        Ok(InboundTicket {
            ticket: TicketRef {
                url: Some(self.url_of(&key)),
                key,
            },
            requester_email: email,
            text,
        })
    }
}
