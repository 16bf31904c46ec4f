//! Manual: for apps with no API. Granting or revoking posts a task to IT's channel with **Done**
//! and **Could not do it** buttons; the ledger waits: a grant becomes active, or a revoke final,
//! only when someone in IT (or an owner of the app) confirms. See `flow::fulfilment`.
//!
//! Config (`[connectors.<name>]`, `type = "manual"`): `channel` (where tasks go; default the
//! status channel), `instructions` (optional text shown on every task, e.g. where the admin console
//! is). Accounts: the person's email, or the mapped `accounts.<connector>`.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Account, Change, Connector, ConnectorError, Subject};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    channel: Option<String>,
    instructions: Option<String>,
}

/// A person in IT, asked through chat.
pub struct ManualConnector {
    channel: Option<String>,
    instructions: Option<String>,
}

impl ManualConnector {
    /// Builds the connector from its config table.
    pub fn from_settings(_name: &str, settings: &toml::Table) -> Result<Self, String> {
        let s: Settings = toml::Value::Table(settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        Ok(Self {
            channel: s.channel,
            instructions: s.instructions,
        })
    }
}

#[async_trait]
impl Connector for ManualConnector {
    fn kind(&self) -> &'static str {
        "manual"
    }

    fn manual_task(&self) -> Option<super::ManualTask> {
        Some(super::ManualTask {
            channel: self.channel.clone(),
            instructions: self.instructions.clone(),
        })
    }

    async fn resolve_account(&self, subject: &Subject<'_>) -> Result<Account, ConnectorError> {
        let id = subject.mapped_id.unwrap_or(subject.email).to_string();
        Ok(Account {
            id,
            login: Some(subject.email.to_string()),
        })
    }

    async fn grant(&self, _account: &Account, _target: &str) -> Result<Change, ConnectorError> {
        Ok(Change::NeedsPerson)
    }

    async fn revoke(&self, _account: &Account, _target: &str) -> Result<Change, ConnectorError> {
        Ok(Change::NeedsPerson)
    }

    async fn list_members(&self, _target: &str) -> Result<Vec<Account>, ConnectorError> {
        Err(ConnectorError::permanent(
            "a manual app cannot list its members: reconcile it with an access review instead",
        ))
    }
}
