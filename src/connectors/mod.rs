//! Connectors: how access is really granted and removed in each SaaS app.
//!
//! One file per app behind [`Connector`]; the registry below is the only place that names them.
//! Grant and revoke are idempotent: granting what is held, or revoking what is gone, succeeds
//! and says so ([`Change::AlreadyInPlace`]).

pub(crate) mod api;
pub mod github;
pub mod google;
pub mod jira;
pub(crate) mod jwt;
pub mod manual;
pub mod okta;
pub mod salesforce;
pub mod scim;
pub mod slack_usergroups;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::ConnectorConfig;

/// A failure, classified so the job queue knows whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// Worth retrying (timeouts, 5xx, 429): after `retry_after` when the app said so.
    #[error("{message} (will retry)")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help; the message says what to fix.
    #[error("{message}")]
    Permanent { message: String },
}

impl ConnectorError {
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

/// The subject's account in the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The app's id for the account (SCIM user id, GitHub login, Okta user id).
    pub id: String,
    /// A human-readable login, when the app has one.
    pub login: Option<String>,
}

/// Whom to find in the app: their email, and the account id the people file maps for this
/// connector instance (`accounts.<connector> = "…"`), when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub email: &'a str,
    pub mapped_id: Option<&'a str>,
}

/// What a grant or revoke did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The app changed.
    Applied,
    /// The app already was as asked (idempotent re-grant or re-revoke).
    AlreadyInPlace,
    /// A person must make the change by hand ([`Connector::manual_task`] says where to ask);
    /// the ledger waits for their confirmation.
    NeedsPerson,
}

/// Where a connector whose changes are made by hand asks for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManualTask {
    /// The channel for tasks; None: the status channel.
    pub channel: Option<String>,
    /// Shown on every task.
    pub instructions: Option<String>,
}

/// One SaaS app's provisioning API.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector type, e.g. `scim`.
    fn kind(&self) -> &'static str;
    /// For connectors whose changes a person makes (grant and revoke answer
    /// [`Change::NeedsPerson`]): where to ask. None for every API connector.
    fn manual_task(&self) -> Option<ManualTask> {
        None
    }
    /// Finds the person's account in the app: the mapped id when given, else by email.
    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError>;
    /// Gives the account the entitlement named `target` (a group name, a team slug…).
    async fn grant(&self, account: &Account, target: &str) -> Result<Change, ConnectorError>;
    /// Removes the entitlement from the account.
    async fn revoke(&self, account: &Account, target: &str) -> Result<Change, ConnectorError>;
    /// Every account that holds the entitlement now (for reconciliation).
    async fn list_members(&self, target: &str) -> Result<Vec<Account>, ConnectorError>;
}

/// Why a connector could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("connector '{name}': {message}")]
pub struct ConnectorConfigError {
    pub name: String,
    pub message: String,
}

/// Every connector type the registry knows.
pub const KINDS: &[&str] = &[
    "scim",
    "github",
    "okta",
    "google",
    "jira",
    "salesforce",
    "slack_usergroups",
    "webhook",
    "manual",
];

/// The configured connector instances, by name.
#[derive(Clone, Default)]
pub struct Connectors {
    by_name: HashMap<String, Arc<dyn Connector>>,
}

impl Connectors {
    /// Builds every `[connectors.<name>]` instance.
    pub fn from_config(
        configs: &std::collections::BTreeMap<String, ConnectorConfig>,
    ) -> Result<Self, ConnectorConfigError> {
        let mut by_name: HashMap<String, Arc<dyn Connector>> = HashMap::new();
        for (name, cfg) in configs {
            let err = |message: String| ConnectorConfigError {
                name: name.clone(),
                message,
            };
            let s = &cfg.settings;
            let c: Arc<dyn Connector> = match cfg.kind.as_str() {
                "scim" => Arc::new(scim::ScimConnector::from_settings(name, s).map_err(err)?),
                "github" => Arc::new(github::GitHubConnector::from_settings(name, s).map_err(err)?),
                "okta" => Arc::new(okta::OktaConnector::from_settings(name, s).map_err(err)?),
                "google" => Arc::new(google::GoogleConnector::from_settings(name, s).map_err(err)?),
                "jira" => Arc::new(jira::JiraConnector::from_settings(name, s).map_err(err)?),
                "salesforce" => {
                    Arc::new(salesforce::SalesforceConnector::from_settings(name, s).map_err(err)?)
                }
                "slack_usergroups" => Arc::new(
                    slack_usergroups::SlackUserGroupsConnector::from_settings(name, s)
                        .map_err(err)?,
                ),
                "webhook" => {
                    Arc::new(webhook::WebhookConnector::from_settings(name, s).map_err(err)?)
                }
                "manual" => Arc::new(manual::ManualConnector::from_settings(name, s).map_err(err)?),
                other => {
                    return Err(err(format!(
                        "unknown connector type '{other}' (known: {})",
                        KINDS.join(", ")
                    )))
                }
            };
            by_name.insert(name.clone(), c);
        }
        Ok(Self { by_name })
    }

    /// Adds (or replaces) an instance.
    pub fn insert(&mut self, name: impl Into<String>, c: Arc<dyn Connector>) {
        self.by_name.insert(name.into(), c);
    }

    /// The instance with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.by_name.get(name)
    }

    /// Every instance's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<_> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> std::collections::BTreeMap<String, ConnectorConfig> {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_registry_builds_every_kind_and_names_the_known_ones() {
        std::env::set_var("GRANTRY_UNIT_CONNECTOR_SECRET", "s");
        let c = Connectors::from_config(&config(
            r#"
            [gh]
            type = "github"
            org = "acme"
            token_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            [ok]
            type = "okta"
            org_url = "https://acme.okta.com"
            token_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            [sg]
            type = "slack_usergroups"
            token_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            [wh]
            type = "webhook"
            url = "https://hooks.example.com/x"
            secret_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            [ji]
            type = "jira"
            site_url = "https://acme.atlassian.net"
            email = "bot@acme.example"
            token_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            [sf]
            type = "salesforce"
            instance_url = "https://acme.my.salesforce.com"
            client_id = "3MVG9"
            client_secret_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            [no]
            type = "scim"
            profile = "notion"
            base_url = "https://api.notion.com/scim/v2"
            token_env = "GRANTRY_UNIT_CONNECTOR_SECRET"
            "#,
        ))
        .unwrap();
        assert_eq!(c.names(), vec!["gh", "ji", "no", "ok", "sf", "sg", "wh"]);
        assert_eq!(c.get("ji").unwrap().kind(), "jira");
        assert_eq!(c.get("sf").unwrap().kind(), "salesforce");
        assert_eq!(c.get("gh").unwrap().kind(), "github");

        let err = Connectors::from_config(&config("[x]\ntype = \"ldap\"\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown connector type 'ldap'"), "{err}");
        assert!(err.contains("slack_usergroups"), "{err}");
        // A misspelt key is refused, not ignored.
        let err = Connectors::from_config(&config(
            "[wh]\ntype = \"webhook\"\nurl = \"https://x\"\nsecret_env = \"GRANTRY_UNIT_CONNECTOR_SECRET\"\nretries = 3\n",
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("retries"), "{err}");
        // No secret, no connector: said at startup, not at the first grant.
        let err = Connectors::from_config(&config(
            "[wh]\ntype = \"webhook\"\nurl = \"https://x\"\nsecret_env = \"GRANTRY_UNIT_NO_SUCH_VAR\"\n",
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("secret"), "{err}");
    }
}
