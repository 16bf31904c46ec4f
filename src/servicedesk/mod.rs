//! Service desks: the team's ticket keeps the record of an access request.
//!
//! For a catalog app with `service_desk = "<name>"`, a ticket is opened in that desk when a
//! request is filed, written to as it is decided and provisioned, and resolved when the access
//! is active or the request ends (`flow::tickets` decides what to write; the job queue writes
//! it, so a desk that is down never holds access governance up: tickets catch up). A ticket
//! filed in the desk can also enter grantry (`POST /hooks/servicedesk/<name>`): the ticket
//! stays the record, grantry governs the outcome. One file per desk behind [`ServiceDesk`]; the
//! registry below is the only place naming them.

pub mod freshservice;
pub mod jsm;
pub mod servicenow;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{ConnectorConfig, Secret, SecretSource};
pub use crate::connectors::ConnectorError as DeskError;

/// What a new ticket says: the request's structured fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub request_id: String,
    pub requester: String,
    pub subject: String,
    pub app: String,
    pub entitlement: String,
    /// `4h`, or `permanent`.
    pub duration: String,
    pub reason: String,
    /// One line for the ticket's title.
    pub summary: String,
    /// The fields and the request's state, as plain text lines.
    pub description: String,
}

/// A ticket in the desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    /// The desk's key (`IT-42`, a ServiceNow sys_id, a Freshservice id).
    pub key: String,
    /// Where a person opens it.
    pub url: Option<String>,
}

/// An access ticket filed in the desk, as its webhook delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTicket {
    pub ticket: TicketRef,
    /// Who filed it (their email).
    pub requester_email: String,
    /// The request in the `/access` words, e.g. `github readers for 4h because onboarding`.
    pub text: String,
}

/// One service desk's API.
#[async_trait]
pub trait ServiceDesk: Send + Sync {
    /// The desk type, e.g. `jsm`.
    fn kind(&self) -> &'static str;
    /// Opens a ticket for a request.
    async fn create(&self, ticket: &NewTicket) -> Result<TicketRef, DeskError>;
    /// Adds a note the requester can read.
    async fn comment(&self, key: &str, text: &str) -> Result<(), DeskError>;
    /// Resolves (closes) the ticket with a last note.
    async fn resolve(&self, key: &str, text: &str) -> Result<(), DeskError>;
    /// Reads the desk's webhook payload for a ticket filed there.
    fn parse_inbound(&self, body: &Value) -> Result<InboundTicket, String>;
}

/// Why a desk could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("service desk '{name}': {message}")]
pub struct DeskConfigError {
    pub name: String,
    pub message: String,
}

/// Every desk type the registry knows.
pub const KINDS: &[&str] = &["jsm", "servicenow", "freshservice"];

/// One configured desk and the secret its inbound webhook must present.
#[derive(Clone)]
pub struct DeskEntry {
    pub desk: Arc<dyn ServiceDesk>,
    /// `Authorization: Bearer <secret>` on `POST /hooks/servicedesk/<name>`; None: inbound off.
    pub inbound_secret: Option<Secret>,
}

/// The configured desks, by name.
#[derive(Clone, Default)]
pub struct ServiceDesks {
    by_name: HashMap<String, DeskEntry>,
}

impl ServiceDesks {
    /// Builds every `[service_desks.<name>]`.
    pub fn from_config(
        configs: &BTreeMap<String, ConnectorConfig>,
    ) -> Result<Self, DeskConfigError> {
        let mut by_name = HashMap::new();
        for (name, cfg) in configs {
            let err = |message: String| DeskConfigError {
                name: name.clone(),
                message,
            };
            let s = &cfg.settings;
            let desk: Arc<dyn ServiceDesk> = match cfg.kind.as_str() {
                "jsm" => Arc::new(jsm::Jsm::from_settings(name, s).map_err(err)?),
                "servicenow" => {
                    Arc::new(servicenow::ServiceNow::from_settings(name, s).map_err(err)?)
                }
                "freshservice" => {
                    Arc::new(freshservice::Freshservice::from_settings(name, s).map_err(err)?)
                }
                other => {
                    return Err(err(format!(
                        "unknown type '{other}' (known: {})",
                        KINDS.join(", ")
                    )))
                }
            };
            let inbound =
                secret(name, s, "inbound_secret", "GRANTRY_DESK_INBOUND_SECRET").map_err(err)?;
            by_name.insert(
                name.clone(),
                DeskEntry {
                    desk,
                    inbound_secret: (!inbound.is_empty()).then_some(inbound),
                },
            );
        }
        Ok(Self { by_name })
    }

    /// The desk named `name`.
    pub fn get(&self, name: &str) -> Option<&DeskEntry> {
        self.by_name.get(name)
    }

    /// Whether any desk is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The configured names.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
}

/// A secret from `<key>_env` or `<key>_file` in a desk's settings, else from `default_env`
/// (empty when none is set).
pub(crate) fn secret(
    name: &str,
    settings: &toml::Table,
    key: &str,
    default_env: &'static str,
) -> Result<Secret, String> {
    let text = |k: String| {
        settings
            .get(&k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let source = SecretSource {
        env: text(format!("{key}_env")),
        file: text(format!("{key}_file")).map(std::path::PathBuf::from),
    };
    source
        .load(&format!("service_desks.{name} {key}"), default_env)
        .map_err(|e| e.to_string())
}

/// `Basic base64(user:password)`.
pub(crate) fn basic(user: &str, password: &Secret) -> Secret {
    use base64::Engine as _;
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()))
    ))
}

/// The first string found at any of these JSON pointers.
pub(crate) fn first_str(body: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| {
        let v = body.pointer(p)?;
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    })
}

/// The `/access` words of an inbound ticket: its title when that reads as a request with a
/// reason, else the first line of its description that does.
pub(crate) fn request_text(candidates: &[Option<String>]) -> Result<String, String> {
    for c in candidates.iter().flatten() {
        for line in std::iter::once(c.as_str()).chain(c.lines()) {
            let line = strip_html(line);
            let line = line.trim().trim_start_matches("/access").trim();
            if crate::chat::command::parse(line)
                .ok()
                .is_some_and(|cmd| {
                    matches!(cmd, crate::chat::command::AccessCommand::Request(r) if r.reason.is_some())
                })
            {
                return Ok(line.to_string());
            }
        }
    }
    Err("the ticket does not say what is asked: its title or a line of its description must read like `github readers for 4h because <reason>`".into())
}

fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ")
}

/// One JSON call to a desk with its `Authorization`; a failure carries the desk's own error text
/// (found at `detail_at`, a JSON pointer) and, for 401/403, `fix`.
pub(crate) async fn call(
    api: &crate::connectors::api::Api,
    auth: &Secret,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    detail_at: &str,
    fix: &str,
) -> Result<Value, DeskError> {
    let mut rb = api
        .request(method.clone(), path)
        .header("Authorization", auth.expose())
        .header("Accept", "application/json");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let reply = api.send(&method, path, rb).await?;
    if reply.ok() {
        return Ok(reply.body);
    }
    let detail = reply
        .body
        .pointer(detail_at)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Err(api.failure(&reply, &detail, fix))
}

/// Reads a desk's `[service_desks.<name>]` settings into its typed settings.
pub(crate) fn settings<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    let mut t = table.clone();
    // Shared keys every desk accepts, read by the registry.
    t.remove("inbound_secret_env");
    t.remove("inbound_secret_file");
    toml::Value::Table(t)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_text_comes_from_the_title_or_a_description_line() {
        assert_eq!(
            request_text(&[Some("github readers for 4h because onboarding".into())]).unwrap(),
            "github readers for 4h because onboarding"
        );
        assert_eq!(
            request_text(&[
                Some("Need GitHub please".into()),
                Some("<p>Hi IT</p>\n<p>/access github readers for 1d because the audit</p>".into())
            ])
            .unwrap(),
            "github readers for 1d because the audit"
        );
        assert!(request_text(&[Some("help".into()), None]).is_err());
    }
}
