//! Policy: may this request go ahead, and how.
//!
//! Eligibility is checked first with built-in, named rules (the requester and the subject must be
//! active in the directory); then the Cedar policies ([`cedar::Engine`]) decide. Each decision
//! keeps the ids of the policies that determined it, so cards, replies and the audit can say why.

pub mod cedar;
mod reads;

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
    pub reason_length: usize,
    pub has_ticket: bool,
    /// The subject's active grants, as `app/entitlement`.
    pub held: Vec<String>,
    /// The hour of day, UTC (0–23).
    pub hour_utc: i64,
    /// The subject's lowest escalation level on call now (1 primary, 2 secondary…; 0 not on call).
    pub on_call_level: i64,
}

/// Decides: eligibility first, then the policies.
pub fn decide(engine: &cedar::Engine, input: &PolicyInput<'_>) -> Decision {
    match eligibility(input) {
        Some(denied) => denied,
        None => engine.decide(input),
    }
}

/// Decides a request for `input.entitlement` of `input.app`; a bundle is decided as each of its
/// members would be ([`combine`]) and then needs its own approval steps, not theirs.
pub fn decide_in(
    engine: &cedar::Engine,
    catalog: &crate::domain::Catalog,
    input: &PolicyInput<'_>,
) -> Decision {
    let ent = input.entitlement;
    if !ent.is_bundle() {
        return decide(engine, input);
    }
    let parts = catalog
        .provisioned(input.app, ent)
        .into_iter()
        .map(|(a, e)| {
            let member = PolicyInput {
                app: a,
                entitlement: e,
                held: input.held.clone(),
                ..*input
            };
            (format!("{}/{}", a.id, e.id), decide(engine, &member))
        })
        .collect();
    let mut d = combine(parts);
    if d.outcome == Outcome::NeedsApproval {
        d.policy_ids.push(APPROVAL_STEPS.into());
        d.reasons.push(format!(
            "bundle {} ({}) needs approval: {} step(s) from the catalog",
            ent.id,
            ent.members.join(", "),
            ent.steps.len()
        ));
    }
    d
}

/// A bundle's decision from its members' (each decided as its own request, labelled
/// `app/entitlement`): one denial denies the bundle and names the member; all auto-approved
/// approve it; otherwise it goes to the bundle's approvers. Policy ids are kept, each once.
pub fn combine(parts: Vec<(String, Decision)>) -> Decision {
    let pick = |o: Outcome| -> Vec<&(String, Decision)> {
        parts.iter().filter(|(_, d)| d.outcome == o).collect()
    };
    let denied = pick(Outcome::Deny);
    let (outcome, chosen) = if !denied.is_empty() {
        (Outcome::Deny, denied)
    } else if parts.iter().all(|(_, d)| d.outcome == Outcome::AutoApprove) && !parts.is_empty() {
        (Outcome::AutoApprove, parts.iter().collect())
    } else {
        (Outcome::NeedsApproval, pick(Outcome::NeedsApproval))
    };
    let mut out = Decision {
        outcome,
        policy_ids: Vec::new(),
        reasons: Vec::new(),
    };
    for (label, d) in chosen {
        for (id, reason) in d.policy_ids.iter().zip(&d.reasons) {
            // The members' own approval steps do not apply: the bundle's do (the caller adds them).
            if id == APPROVAL_STEPS || out.policy_ids.contains(id) {
                continue;
            }
            out.policy_ids.push(id.clone());
            out.reasons.push(format!("{label}: {reason}"));
        }
    }
    out
}

/// The policy id under which the catalog's approval steps are cited.
pub const APPROVAL_STEPS: &str = "approval-steps";

/// The built-in rules: the subject and requester must be active. `None` when both are.
pub fn eligibility(input: &PolicyInput<'_>) -> Option<Decision> {
    if !input.requester.is_active() {
        return Some(Decision::deny(
            "requester-must-be-active",
            format!("{} is not active in the directory", input.requester.email),
        ));
    }
    if !input.subject.is_active() {
        return Some(Decision::deny(
            "subject-must-be-active",
            format!("{} is not active in the directory", input.subject.email),
        ));
    }
    None
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
            accounts: Default::default(),
        }
    }

    fn input<'a>(
        requester: &'a Person,
        subject: &'a Person,
        app: &'a crate::domain::App,
        held: &[&str],
    ) -> PolicyInput<'a> {
        PolicyInput {
            requester,
            subject,
            app,
            entitlement: &app.entitlements[0],
            duration: None,
            reason_length: 20,
            has_ticket: false,
            held: held.iter().map(|h| h.to_string()).collect(),
            hour_utc: 12,
            on_call_level: 0,
        }
    }

    fn catalog() -> Catalog {
        Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\nowners=['o@x.io']\n[[apps.entitlements]]\nid='e'\nrisk='low'\nconflicts=['a/f']\n[[apps.entitlements]]\nid='f'\n",
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_bundle_is_denied_by_any_member_and_auto_approved_only_when_all_are() {
        let d = |o: Outcome, id: &str| Decision {
            outcome: o,
            policy_ids: vec![id.into()],
            reasons: vec![format!("because {id}")],
        };
        let denied = combine(vec![
            ("a/x".into(), d(Outcome::AutoApprove, "routine")),
            ("b/y".into(), d(Outcome::Deny, "no-contractors")),
        ]);
        assert_eq!(denied.outcome, Outcome::Deny);
        assert_eq!(
            denied.explain(),
            "b/y: because no-contractors (policy no-contractors)"
        );
        let auto = combine(vec![
            ("a/x".into(), d(Outcome::AutoApprove, "routine")),
            ("b/y".into(), d(Outcome::AutoApprove, "routine")),
        ]);
        assert_eq!(
            (auto.outcome, auto.policy_ids),
            (Outcome::AutoApprove, vec!["routine".to_string()])
        );
        let mixed = combine(vec![
            ("a/x".into(), d(Outcome::AutoApprove, "routine")),
            ("b/y".into(), d(Outcome::NeedsApproval, APPROVAL_STEPS)),
        ]);
        assert_eq!(mixed.outcome, Outcome::NeedsApproval);
        assert!(
            mixed.policy_ids.is_empty(),
            "members' own steps are not cited"
        );
    }

    #[test]
    fn inactive_subjects_are_denied_with_the_rule_named() {
        let cat = catalog();
        let engine =
            cedar::Engine::from_texts(&[("b".into(), cedar::BASELINE.into())], "test").unwrap();
        let active = person("a@x.io", PersonStatus::Active);
        let gone = person("g@x.io", PersonStatus::Terminated);
        let d = decide(&engine, &input(&active, &gone, &cat.apps[0], &[]));
        assert_eq!(d.outcome, Outcome::Deny);
        assert_eq!(d.policy_ids, ["subject-must-be-active"]);
        assert!(d.explain().contains("g@x.io is not active"));
        let ok = decide(&engine, &input(&active, &active, &cat.apps[0], &[]));
        assert_eq!(ok.outcome, Outcome::NeedsApproval);
    }

    #[test]
    fn the_shipped_oncall_policy_approves_primary_and_secondary_for_listed_entitlements_only() {
        let cat = Catalog::parse(
            "[[apps]]\nid='github'\nconnector='c'\nowners=['o@x.io']\n[[apps.entitlements]]\nid='platform-admins'\nrisk='high'\n[[apps.entitlements]]\nid='readers'\nrisk='low'\n",
            None,
        )
        .unwrap();
        let engine = cedar::Engine::from_texts(
            &[
                ("baseline".into(), cedar::BASELINE.into()),
                (
                    "oncall".into(),
                    include_str!("../../examples/policies/oncall.cedar").into(),
                ),
            ],
            "test",
        )
        .unwrap();
        let p = person("p@x.io", PersonStatus::Active);
        let app = &cat.apps[0];
        let outcome = |ent: usize, level: i64| {
            let mut i = input(&p, &p, app, &[]);
            i.entitlement = &app.entitlements[ent];
            i.duration = Some(AccessDuration::parse("4h").unwrap());
            i.on_call_level = level;
            decide(&engine, &i)
        };
        let d = outcome(0, 1);
        assert_eq!(
            (d.outcome, d.policy_ids),
            (Outcome::AutoApprove, vec!["oncall-prod-access".to_string()])
        );
        assert_eq!(outcome(0, 2).outcome, Outcome::AutoApprove);
        for (ent, level) in [(0, 0), (0, 3), (1, 1)] {
            assert_eq!(
                outcome(ent, level).outcome,
                Outcome::NeedsApproval,
                "{ent} {level}"
            );
        }
    }

    #[test]
    fn cedar_policies_deny_with_their_reason_and_auto_approve_by_id() {
        let cat = catalog();
        let extra = r#"
@id("sales-no-a") @reason("sales cannot hold a")
forbid(principal, action == Grantry::Action::"request", resource) when { principal.department == "Sales" && resource.app == "a" };
@id("low-risk-for-platform") @reason("low-risk access for Platform")
permit(principal, action == Grantry::Action::"auto_approve", resource) when { resource.risk == "low" && principal.department == "Platform" };
"#;
        let engine = cedar::Engine::from_texts(
            &[
                ("baseline".into(), cedar::BASELINE.into()),
                ("extra".into(), extra.into()),
            ],
            "test",
        )
        .unwrap();
        let mut sales = person("s@x.io", PersonStatus::Active);
        sales.department = Some("Sales".into());
        let d = decide(&engine, &input(&sales, &sales, &cat.apps[0], &[]));
        assert_eq!(
            (d.outcome.clone(), d.policy_ids.clone()),
            (Outcome::Deny, vec!["sales-no-a".to_string()])
        );
        assert_eq!(d.explain(), "sales cannot hold a (policy sales-no-a)");
        let mut plat = person("p@x.io", PersonStatus::Active);
        plat.department = Some("Platform".into());
        let d = decide(&engine, &input(&plat, &plat, &cat.apps[0], &[]));
        assert_eq!(
            (d.outcome, d.policy_ids),
            (
                Outcome::AutoApprove,
                vec!["low-risk-for-platform".to_string()]
            )
        );
        // Separation of duties: holding a/f conflicts with a/e.
        let d = decide(&engine, &input(&plat, &plat, &cat.apps[0], &["a/f"]));
        assert_eq!(
            (d.outcome, d.policy_ids),
            (Outcome::Deny, vec!["separation-of-duties".to_string()])
        );
    }
}
