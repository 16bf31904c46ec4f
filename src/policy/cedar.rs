//! Cedar policies: `.cedar` files in `[policy] dir`, evaluated for two actions.
//!
//! - `Grantry::Action::"request"`: may this subject ask for this entitlement at all? Default
//!   deny: the shipped `baseline.cedar` permits every request; `forbid` policies refuse.
//! - `Grantry::Action::"auto_approve"`: may it be granted with no human? Nothing is unless a
//!   `permit` says so.
//!
//! Principal `Grantry::Person::"<email>"` (attributes `email`, `department`, `title`, `status`,
//! `manager`), resource `Grantry::Entitlement::"<app>/<entitlement>"` (`app`, `id`, `risk`,
//! `risk_level` 1–4, `kind`, `conflicts`: a set of `app/entitlement`), context `duration_minutes`
//! (0 when permanent), `permanent`, `reason_length`, `has_ticket`, `held` (the subject's active
//! grants as `app/entitlement`), `hour_utc`, `for_someone_else`, `on_call_level` (the subject's
//! lowest escalation level on call now: 1 primary, 2 secondary…; 0 when not on call or when no
//! `[oncall]` provider is configured).
//! A decision keeps the ids (`@id`) and reasons (`@reason`) of the policies that determined it.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid,
    PolicyId, PolicySet, Request,
};
use serde_json::json;

use super::{Decision, Outcome, PolicyInput};
use crate::domain::Risk;

/// Why the policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// The loaded policy set with each policy's id and reason.
pub struct Engine {
    set: PolicySet,
    reasons: HashMap<String, String>,
    /// Where the policies came from, for messages.
    pub source: String,
}

/// The policies used when no policy folder exists: every request goes to its approvers, and a
/// request that would hold two conflicting entitlements is refused.
pub const BASELINE: &str = r#"@id("anyone-may-ask")
@reason("anyone active may ask; approvers decide")
permit(principal, action == Grantry::Action::"request", resource);

@id("separation-of-duties")
@reason("it would combine entitlements the catalog declares in conflict")
forbid(principal, action == Grantry::Action::"request", resource)
when { resource.conflicts.containsAny(context.held) };
"#;

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(kind).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn risk_level(r: Risk) -> i64 {
    match r {
        Risk::Low => 1,
        Risk::Medium => 2,
        Risk::High => 3,
        Risk::Critical => 4,
    }
}

impl Engine {
    /// Parses policy texts, `(name, text)` each; ids come from `@id` (else `<name>-<n>`).
    pub fn from_texts(texts: &[(String, String)], source: &str) -> Result<Self, PolicyError> {
        let mut set = PolicySet::new();
        let mut reasons = HashMap::new();
        for (name, text) in texts {
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                path: name.clone(),
                message: format!("{e:?}"),
            })?;
            for (n, p) in parsed.policies().enumerate() {
                let id = p
                    .annotation("id")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{name}-{n}"));
                let reason = p.annotation("reason").unwrap_or(&id).to_string();
                set.add(p.new_id(PolicyId::new(&id)))
                    .map_err(|e| PolicyError::Parse {
                        path: name.clone(),
                        message: format!("policy {id}: {e}"),
                    })?;
                reasons.insert(id, reason);
            }
        }
        Ok(Self {
            set,
            reasons,
            source: source.to_string(),
        })
    }

    /// Loads every `*.cedar` file in `dir` (sorted by name); the baseline when `dir` does not exist.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        if !dir.is_dir() {
            return Self::from_texts(&[("baseline".into(), BASELINE.into())], "built-in baseline");
        }
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| PolicyError::Read {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect();
        files.sort();
        let mut texts = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| PolicyError::Read {
                path: f.display().to_string(),
                message: e.to_string(),
            })?;
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            texts.push((name, text));
        }
        Self::from_texts(&texts, &dir.display().to_string())
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Whether no policy is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evaluate(
        &self,
        input: &PolicyInput<'_>,
        action: &str,
    ) -> Result<(bool, Vec<String>), String> {
        let subject = input.subject;
        let ent_id = format!("{}/{}", input.app.id, input.entitlement.id);
        let person = |p: &crate::domain::Person| {
            json!({
                "uid": {"type": "Grantry::Person", "id": p.email},
                "attrs": {
                    "email": p.email,
                    "department": p.department.clone().unwrap_or_default(),
                    "title": p.title.clone().unwrap_or_default(),
                    "manager": p.manager.clone().unwrap_or_default(),
                    "status": format!("{:?}", p.status).to_ascii_lowercase(),
                },
                "parents": []
            })
        };
        let entities = Entities::from_json_value(
            json!([
                person(subject),
                {
                    "uid": {"type": "Grantry::Entitlement", "id": ent_id},
                    "attrs": {
                        "app": input.app.id, "id": input.entitlement.id,
                        "risk": input.entitlement.risk.to_string(),
                        "risk_level": risk_level(input.entitlement.risk),
                        "kind": format!("{:?}", input.entitlement.kind).to_ascii_lowercase(),
                        "conflicts": input.entitlement.conflicts,
                    },
                    "parents": []
                }
            ]),
            None,
        )
        .map_err(|e| e.to_string())?;
        let context = Context::from_json_value(
            json!({
                "duration_minutes": input.duration.map(|d| d.minutes() as i64).unwrap_or(0),
                "permanent": input.duration.is_none(),
                "reason_length": input.reason_length as i64,
                "has_ticket": input.has_ticket,
                "held": input.held,
                "hour_utc": input.hour_utc,
                "for_someone_else": !input.requester.email.eq_ignore_ascii_case(&subject.email),
                "on_call_level": input.on_call_level,
            }),
            None,
        )
        .map_err(|e| e.to_string())?;
        let request = Request::new(
            uid("Grantry::Person", &subject.email)?,
            uid("Grantry::Action", action)?,
            uid("Grantry::Entitlement", &ent_id)?,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        if let Some(err) = response.diagnostics().errors().next() {
            tracing::warn!(error = %err, action, "a policy failed to evaluate (treated as not matching)");
        }
        let ids = response
            .diagnostics()
            .reason()
            .map(|p| p.to_string())
            .collect();
        Ok((response.decision() == CedarDecision::Allow, ids))
    }

    fn reasons_of(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .map(|i| self.reasons.get(i).cloned().unwrap_or_else(|| i.clone()))
            .collect()
    }

    /// Decides: `request` denied → Deny with the forbidding policies; `auto_approve` allowed →
    /// AutoApprove with the permitting ones; else NeedsApproval.
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        match self.evaluate(input, "request") {
            Err(e) => Decision {
                outcome: Outcome::Deny,
                policy_ids: vec!["policy-error".into()],
                reasons: vec![format!("the policies could not be evaluated ({e}); ask IT")],
            },
            Ok((false, ids)) if ids.is_empty() => Decision {
                outcome: Outcome::Deny,
                policy_ids: vec!["default-deny".into()],
                reasons: vec!["no policy permits this request".into()],
            },
            Ok((false, ids)) => Decision {
                outcome: Outcome::Deny,
                reasons: self.reasons_of(&ids),
                policy_ids: ids,
            },
            Ok((true, allowed_by)) => match self.evaluate(input, "auto_approve") {
                Ok((true, ids)) => Decision {
                    outcome: Outcome::AutoApprove,
                    reasons: self.reasons_of(&ids),
                    policy_ids: ids,
                },
                _ => {
                    // The policies that let the request in, then the catalog's approval steps.
                    let mut reasons = self.reasons_of(&allowed_by);
                    reasons.push(format!(
                        "{}/{} ({} risk) needs approval: {} step(s) from the catalog",
                        input.app.id,
                        input.entitlement.id,
                        input.entitlement.risk,
                        input.entitlement.steps.len()
                    ));
                    let mut policy_ids = allowed_by;
                    policy_ids.push("approval-steps".into());
                    Decision {
                        outcome: Outcome::NeedsApproval,
                        policy_ids,
                        reasons,
                    }
                }
            },
        }
    }
}
