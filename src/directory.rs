//! The directory: who people are, read from a people file (TOML `[[people]]`).
//!
//! Maps chat user ids to people and back, so that approvers are authorised by identity
//! kept on our side, never by what a payload claims.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::domain::Person;

/// Why the people file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read people file {path}: {message}")]
    Read { path: String, message: String },
    #[error("people file {path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeopleFile {
    #[serde(default)]
    people: Vec<Person>,
}

/// An in-memory directory with lookups by email and chat id.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    people: Vec<Person>,
    by_email: HashMap<String, usize>,
    by_slack: HashMap<String, usize>,
    /// Slack ids found by email for people listed without one (see [`Directory::learn_slack_id`]).
    learned_slack: Arc<RwLock<HashMap<String, usize>>>,
}

impl Directory {
    /// A directory of these people.
    pub fn new(people: Vec<Person>) -> Self {
        let mut d = Directory::default();
        for mut p in people {
            p.email = p.email.to_ascii_lowercase();
            let i = d.people.len();
            d.by_email.insert(p.email.clone(), i);
            if let Some(s) = &p.slack_id {
                d.by_slack.insert(s.clone(), i);
            }
            d.people.push(p);
        }
        d
    }

    /// Reads a people file.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| DirectoryError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let file: PeopleFile = toml::from_str(&text).map_err(|e| DirectoryError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::new(file.people))
    }

    /// Everyone in the directory.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// The person with this email (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Person> {
        self.by_email
            .get(&email.to_ascii_lowercase())
            .map(|&i| &self.people[i])
    }

    /// The person with this chat user id on `platform`.
    pub fn by_chat_id(&self, platform: &str, id: &str) -> Option<&Person> {
        match platform {
            "slack" => self
                .by_slack
                .get(id)
                .or(self
                    .learned_slack
                    .read()
                    .ok()
                    .and_then(|l| l.get(id).copied())
                    .as_ref())
                .map(|&i| &self.people[i]),
            _ => self
                .people
                .iter()
                .find(|p| p.teams_id.as_deref() == Some(id)),
        }
    }

    /// Active people the people file gives no Slack id and none was found for yet.
    pub fn without_slack_id(&self) -> Vec<&Person> {
        let learned = self.learned_slack.read().map(|l| l.len()).unwrap_or(0);
        let found: Vec<usize> = if learned == 0 {
            Vec::new()
        } else {
            self.learned_slack
                .read()
                .map(|l| l.values().copied().collect())
                .unwrap_or_default()
        };
        self.people
            .iter()
            .enumerate()
            .filter(|(i, p)| p.is_active() && p.slack_id.is_none() && !found.contains(i))
            .map(|(_, p)| p)
            .collect()
    }

    /// Remembers that Slack user `id` is the person with `email` (found through Slack's
    /// profile); returns whether `email` is in the directory.
    pub fn learn_slack_id(&self, id: &str, email: &str) -> bool {
        let Some(&i) = self.by_email.get(&email.to_ascii_lowercase()) else {
            return false;
        };
        if let Ok(mut l) = self.learned_slack.write() {
            l.insert(id.to_string(), i);
        }
        true
    }

    /// The active people in a department.
    pub fn department(&self, department: &str) -> Vec<&Person> {
        self.people
            .iter()
            .filter(|p| p.is_active() && p.department.as_deref() == Some(department))
            .collect()
    }

    /// The active people whose manager is `email`.
    pub fn reports_of(&self, email: &str) -> Vec<&Person> {
        self.people
            .iter()
            .filter(|p| {
                p.is_active()
                    && p.manager
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(email))
            })
            .collect()
    }

    /// The person's user id on `platform`, if the directory knows it.
    pub fn chat_id<'a>(&'a self, platform: &str, person: &'a Person) -> Option<&'a str> {
        match platform {
            "slack" => person.slack_id.as_deref(),
            _ => person.teams_id.as_deref(),
        }
    }
}
