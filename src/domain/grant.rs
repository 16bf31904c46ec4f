//! Grants: the ledger's record of access that was really provisioned.

use std::fmt;

use super::ids::random_id;

/// The id of a grant, e.g. `G-3FJ8Q2NC`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantId(String);

impl GrantId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(random_id("G"))
    }
    /// Parses a user-typed id.
    pub fn parse(input: &str) -> Option<Self> {
        super::ids::parse_id("G", input).map(Self)
    }
    /// Wraps an id read from our own store.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a grant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    /// The app holds the access.
    Active,
    /// A revoke job is under way (expiry, offboarding, a person's revoke).
    Revoking,
    /// The connector confirmed removal.
    Revoked,
}

impl GrantState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Revoked => "revoked",
        }
    }
    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "revoking" => Self::Revoking,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}
