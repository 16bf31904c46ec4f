//! People: humans (and accountable non-human identities) that request, approve and hold access.

use serde::Deserialize;

/// Whether a person may still hold access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    #[default]
    Active,
    /// On leave: keeps grants, may not approve.
    Suspended,
    /// Gone: may neither hold, request nor approve access.
    Terminated,
}

/// A person as the directory knows them. `email` is the identity shared with every SaaS app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Slack user id (`U…` or `W…`).
    #[serde(default)]
    pub slack_id: Option<String>,
    /// Microsoft Teams / Entra object id.
    #[serde(default)]
    pub teams_id: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// The manager's email.
    #[serde(default)]
    pub manager: Option<String>,
    #[serde(default)]
    pub status: PersonStatus,
    /// Account ids in apps that do not find people by email, by connector instance name
    /// (`accounts = { github = "ada-lovelace" }`).
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, String>,
}

impl Person {
    /// The name to show: the display name, else the email.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.email)
    }

    /// Whether the person is active (may hold and approve access).
    pub fn is_active(&self) -> bool {
        self.status == PersonStatus::Active
    }
}
