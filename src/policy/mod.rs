//! Policy: may this request go ahead, and how.
//!
//! The walking skeleton decides with built-in, named rules over the catalog and the directory;
//! each decision keeps the ids of the rules that determined it, so cards, replies and the audit
//! can say why. (Cedar policies replace the built-ins behind this same [`Decision`] type.)

use serde::{Deserialize, Serialize};

use crate::domain::{AccessDuration, App, Entitlement, Person};

/// What policy decided about a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Refused; the reason is shown to the requester.
    Deny,
    /// Granted with no human.
    AutoApprove,
    /// Needs named approvers.
    NeedsApproval,
}

/// A decision and the policies behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// Ids of the policies that determined the outcome.
    pub policy_ids: Vec<String>,
    /// Their reasons, in words.
    pub reasons: Vec<String>,
}

impl Decision {
    fn deny(policy: &str, reason: String) -> Self {
        Self {
            outcome: Outcome::Deny,
            policy_ids: vec![policy.to_string()],
            reasons: vec![reason],
        }
    }

    /// "reason (policy id)", joined, for people and the audit.
    pub fn explain(&self) -> String {
        self.reasons
            .iter()
            .zip(&self.policy_ids)
            .map(|(r, p)| format!("{r} (policy {p})"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What policy looks at.
pub struct PolicyInput<'a> {
    pub requester: &'a Person,
    pub subject: &'a Person,
    pub app: &'a App,
    pub entitlement: &'a Entitlement,
    pub duration: Option<AccessDuration>,
}

/// Decides with the built-in rules: the subject and requester must be active, and every other
/// request goes to the app's owners.
pub fn decide(input: &PolicyInput<'_>) -> Decision {
    if !input.requester.is_active() {
        return Decision::deny(
            "requester-must-be-active",
            format!("{} is not active in the directory", input.requester.email),
        );
    }
    if !input.subject.is_active() {
        return Decision::deny(
            "subject-must-be-active",
            format!("{} is not active in the directory", input.subject.email),
        );
    }
    Decision {
        outcome: Outcome::NeedsApproval,
        policy_ids: vec!["owners-approve".to_string()],
        reasons: vec![format!(
            "{}/{} ({} risk) is approved by an owner of {}",
            input.app.id, input.entitlement.id, input.entitlement.risk, input.app.name
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Catalog, PersonStatus};

    fn person(email: &str, status: PersonStatus) -> Person {
        Person {
            email: email.into(),
            name: None,
            slack_id: None,
            teams_id: None,
            department: None,
            title: None,
            manager: None,
            status,
        }
    }

    #[test]
    fn inactive_subjects_are_denied_with_the_rule_named() {
        let cat = Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\nowners=['o@x.io']\n[[apps.entitlements]]\nid='e'\n",
            None,
        )
        .unwrap();
        let app = &cat.apps[0];
        let active = person("a@x.io", PersonStatus::Active);
        let gone = person("g@x.io", PersonStatus::Terminated);
        let d = decide(&PolicyInput {
            requester: &active,
            subject: &gone,
            app,
            entitlement: &app.entitlements[0],
            duration: None,
        });
        assert_eq!(d.outcome, Outcome::Deny);
        assert_eq!(d.policy_ids, ["subject-must-be-active"]);
        assert!(d.explain().contains("g@x.io is not active"));
        let ok = decide(&PolicyInput {
            requester: &active,
            subject: &active,
            app,
            entitlement: &app.entitlements[0],
            duration: None,
        });
        assert_eq!(ok.outcome, Outcome::NeedsApproval);
    }
}
