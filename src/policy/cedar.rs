//! Cedar policies: `.cedar` files in `[policy] dir`, evaluated for three actions.
//!
//! - `Grantry::Action::"request"`: may this subject ask for this entitlement at all? Default
//!   deny: the shipped `baseline.cedar` permits every request; `forbid` policies refuse.
//! - `Grantry::Action::"auto_approve"`: may it be granted with no human? Nothing is unless a
//!   `permit` says so.
//! - `Grantry::Action::"approve"`: may this approver (the principal, for this one check)
//!   approve it? Only when some policy names `approve` (the baseline permits the catalog's
//!   approvers); a `forbid` narrows who may (e.g. by department or risk). Context also carries
//!   `subject_email`, `subject_department` and `requester_email`.
//!
//! Principal `Grantry::Person::"<email>"` (attributes `email`, `department`, `title`, `status`,
//! `manager`), resource `Grantry::Entitlement::"<app>/<entitlement>"` (`app`, `id`, `risk`,
//! `risk_level` 1–4, `kind`, `conflicts`: a set of `app/entitlement`), context `duration_minutes`
//! (0 when permanent), `permanent`, `reason_length`, `has_ticket`, `held` (the subject's active
//! grants as `app/entitlement`), `hour_utc`, `for_someone_else`, `on_call_level` (the subject's
//! lowest escalation level on call now: 1 primary, 2 secondary…; 0 when not on call or when no
//! `[oncall]` provider is configured).
//! A decision keeps the ids (`@id`) and reasons (`@reason`) of the policies that determined it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid,
    PolicyId, PolicySet, Request,
};

use super::reads::Reads;
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

/// The actions grantry asks Cedar about.
const ACTIONS: [&str; 3] = ["request", "auto_approve", "approve"];

/// One decision's principal, resource, entities and context.
struct Prepared {
    principal: EntityUid,
    resource: EntityUid,
    entities: Entities,
    context: Context,
}

/// The loaded policy set with each policy's id and reason.
pub struct Engine {
    set: PolicySet,
    /// Each action's uid and the policies it can match (by their scope's action), so a decision
    /// evaluates only those: `request`, `auto_approve`, `approve`.
    by_action: HashMap<&'static str, (EntityUid, PolicySet)>,
    /// The actions Cedar allows whatever the request: some `permit` of theirs has no condition
    /// and no principal or resource in its scope, and no `forbid` can match them.
    always_allowed: HashSet<&'static str>,
    /// The attributes and context keys some policy reads: a decision builds only those.
    reads: Reads,
    /// `Grantry::Person` and `Grantry::Entitlement`, parsed once (Cedar parses a type name with its
    /// policy parser: a few microseconds each time).
    person_type: EntityTypeName,
    entitlement_type: EntityTypeName,
    reasons: HashMap<String, String>,
    /// Where the policies came from, for messages.
    pub source: String,
}

/// The policies used when no policy folder exists: every request goes to its approvers, and a
/// request that would hold two conflicting entitlements is refused.
pub const BASELINE: &str = r#"@id("anyone-may-ask")
@reason("anyone active may ask; approvers decide")
permit(principal, action == Grantry::Action::"request", resource);

@id("anyone-listed-may-approve")
@reason("the catalog's approvers decide")
permit(principal, action == Grantry::Action::"approve", resource);

@id("separation-of-duties")
@reason("it would combine entitlements the catalog declares in conflict")
forbid(principal, action == Grantry::Action::"request", resource)
when { resource.conflicts.containsAny(context.held) };
"#;

/// Whether `set` (one action's policies) allows every request: Cedar allows when some `permit`
/// matches and no `forbid` does, and a `permit` with no condition, whose scope names no principal
/// and no resource, matches every request of its action.
fn allows_everything(set: &PolicySet) -> bool {
    use cedar_policy::{Effect, PrincipalConstraint, ResourceConstraint};
    set.policies().all(|p| p.effect() != Effect::Forbid)
        && set.policies().any(|p| {
            p.effect() == Effect::Permit
                && !p.has_non_scope_constraint()
                && matches!(p.principal_constraint(), PrincipalConstraint::Any)
                && matches!(p.resource_constraint(), ResourceConstraint::Any)
        })
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(kind)?,
        EntityId::new(id),
    ))
}

fn type_name(kind: &str) -> Result<EntityTypeName, String> {
    EntityTypeName::from_str(kind).map_err(|e| e.to_string())
}

fn risk_level(r: Risk) -> i64 {
    match r {
        Risk::Low => 1,
        Risk::Medium => 2,
        Risk::High => 3,
        Risk::Critical => 4,
    }
}

/// The `(name, value)` pairs whose name `keep` accepts, each value built only then.
fn kept<'a, const N: usize>(
    keep: impl Fn(&str) -> bool + 'a,
    pairs: [(
        &'static str,
        &'a dyn Fn() -> cedar_policy::RestrictedExpression,
    ); N],
) -> impl Iterator<Item = (String, cedar_policy::RestrictedExpression)> + 'a {
    pairs
        .into_iter()
        .filter(move |(name, _)| keep(name))
        .map(|(name, value)| (name.to_string(), value()))
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
        let parse_error = |message| PolicyError::Parse {
            path: source.to_string(),
            message,
        };
        let mut by_action = HashMap::new();
        let mut always_allowed = HashSet::new();
        for action in ACTIONS {
            let action_uid = uid("Grantry::Action", action).map_err(parse_error)?;
            let mut subset = PolicySet::new();
            for p in set.policies() {
                let applies = match p.action_constraint() {
                    cedar_policy::ActionConstraint::Any => true,
                    cedar_policy::ActionConstraint::Eq(a) => a == action_uid,
                    cedar_policy::ActionConstraint::In(list) => list.contains(&action_uid),
                };
                if applies {
                    subset.add(p.clone()).map_err(|e| PolicyError::Parse {
                        path: source.to_string(),
                        message: e.to_string(),
                    })?;
                }
            }
            if allows_everything(&subset) {
                always_allowed.insert(action);
            }
            by_action.insert(action, (action_uid, subset));
        }
        let reads = Reads::of(&set);
        Ok(Self {
            set,
            by_action,
            always_allowed,
            reads,
            person_type: type_name("Grantry::Person").map_err(parse_error)?,
            entitlement_type: type_name("Grantry::Entitlement").map_err(parse_error)?,
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

    /// The Cedar request parts for `input`: built once per decision, used for both actions.
    fn prepare(&self, input: &PolicyInput<'_>) -> Result<Prepared, String> {
        self.prepare_for(input, input.subject)
    }

    /// As [`Engine::prepare`], with `principal` as the Cedar principal (the subject for `request`
    /// and `auto_approve`, the approver for `approve`).
    fn prepare_for(
        &self,
        input: &PolicyInput<'_>,
        principal_person: &crate::domain::Person,
    ) -> Result<Prepared, String> {
        use cedar_policy::{Entity, RestrictedExpression as X};
        let subject = principal_person;
        let ent = input.entitlement;
        let text = |s: &str| X::new_string(s.to_string());
        let principal = EntityUid::from_type_name_and_id(
            self.person_type.clone(),
            EntityId::new(&subject.email),
        );
        let resource = EntityUid::from_type_name_and_id(
            self.entitlement_type.clone(),
            EntityId::new(format!("{}/{}", input.app.id, ent.id)),
        );
        // Only what some policy reads is built (reads.rs): the answer is the same.
        let attribute = |name: &str| self.reads.attribute(name);
        let person = Entity::new(
            principal.clone(),
            kept(
                attribute,
                [
                    ("email", &|| text(&subject.email)),
                    ("department", &|| {
                        text(subject.department.as_deref().unwrap_or_default())
                    }),
                    ("title", &|| {
                        text(subject.title.as_deref().unwrap_or_default())
                    }),
                    ("manager", &|| {
                        text(subject.manager.as_deref().unwrap_or_default())
                    }),
                    ("status", &|| {
                        text(&format!("{:?}", subject.status).to_ascii_lowercase())
                    }),
                ],
            )
            .collect(),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let entitlement = Entity::new(
            resource.clone(),
            kept(
                attribute,
                [
                    ("app", &|| text(&input.app.id)),
                    ("id", &|| text(&ent.id)),
                    ("risk", &|| text(&ent.risk.to_string())),
                    ("risk_level", &|| X::new_long(risk_level(ent.risk))),
                    ("kind", &|| {
                        text(&format!("{:?}", ent.kind).to_ascii_lowercase())
                    }),
                    ("conflicts", &|| {
                        X::new_set(ent.conflicts.iter().map(|c| text(c)))
                    }),
                ],
            )
            .collect(),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let entities =
            Entities::from_entities([person, entitlement], None).map_err(|e| e.to_string())?;
        let for_someone_else = !input
            .requester
            .email
            .eq_ignore_ascii_case(&input.subject.email);
        let context = Context::from_pairs(kept(
            |name| self.reads.context_key(name),
            [
                ("duration_minutes", &|| {
                    X::new_long(input.duration.map(|d| d.minutes() as i64).unwrap_or(0))
                }),
                ("permanent", &|| X::new_bool(input.duration.is_none())),
                ("reason_length", &|| X::new_long(input.reason_length as i64)),
                ("has_ticket", &|| X::new_bool(input.has_ticket)),
                ("held", &|| X::new_set(input.held.iter().map(|h| text(h)))),
                ("hour_utc", &|| X::new_long(input.hour_utc)),
                ("for_someone_else", &|| X::new_bool(for_someone_else)),
                ("on_call_level", &|| X::new_long(input.on_call_level)),
                ("subject_email", &|| text(&input.subject.email)),
                ("subject_department", &|| {
                    text(input.subject.department.as_deref().unwrap_or_default())
                }),
                ("requester_email", &|| text(&input.requester.email)),
            ],
        ))
        .map_err(|e| e.to_string())?;
        Ok(Prepared {
            principal,
            resource,
            entities,
            context,
        })
    }

    fn evaluate(&self, p: &Prepared, action: &str) -> Result<(bool, Vec<String>), String> {
        let (action_uid, set) = self
            .by_action
            .get(action)
            .ok_or_else(|| format!("unknown action {action}"))?;
        let request = Request::new(
            p.principal.clone(),
            action_uid.clone(),
            p.resource.clone(),
            p.context.clone(),
            None,
        )
        .map_err(|e| e.to_string())?;
        let response = Authorizer::new().is_authorized(&request, set, &p.entities);
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

    /// May `approver` approve the request `input` describes (the `approve` action)? `Ok(())`
    /// when no policy speaks of `approve` (nothing restricts approvers) or one permits it and
    /// none forbids it; otherwise the refusal with the policies behind it.
    pub fn may_approve(
        &self,
        approver: &crate::domain::Person,
        input: &PolicyInput<'_>,
    ) -> Result<(), Decision> {
        if self
            .by_action
            .get("approve")
            .is_none_or(|(_, s)| s.is_empty())
        {
            return Ok(());
        }
        // What Cedar would answer, without building the entities (the baseline's case; an allow
        // gives no reasons here).
        if self.always_allowed.contains("approve") {
            return Ok(());
        }
        let outcome = self
            .prepare_for(input, approver)
            .and_then(|p| self.evaluate(&p, "approve"));
        match outcome {
            Ok((true, _)) => Ok(()),
            Ok((false, ids)) if ids.is_empty() => Err(Decision {
                outcome: Outcome::Deny,
                policy_ids: vec!["default-deny".into()],
                reasons: vec!["no policy permits you to approve this".into()],
            }),
            Ok((false, ids)) => Err(Decision {
                outcome: Outcome::Deny,
                reasons: self.reasons_of(&ids),
                policy_ids: ids,
            }),
            Err(e) => Err(Decision {
                outcome: Outcome::Deny,
                policy_ids: vec!["policy-error".into()],
                reasons: vec![format!("the policies could not be evaluated ({e}); ask IT")],
            }),
        }
    }

    fn reasons_of(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .map(|i| self.reasons.get(i).cloned().unwrap_or_else(|| i.clone()))
            .collect()
    }

    /// Decides: `request` denied → Deny with the forbidding policies; `auto_approve` allowed →
    /// AutoApprove with the permitting ones; else NeedsApproval.
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        let prepared = self.prepare(input);
        let eval = |action: &str| match &prepared {
            // No policy names the action: Cedar's answer is a deny with no reasons, so it is not
            // asked (the baseline has no `auto_approve` policy).
            Ok(_) if self.by_action.get(action).is_none_or(|(_, s)| s.is_empty()) => {
                Ok((false, Vec::new()))
            }
            Ok(p) => self.evaluate(p, action),
            Err(e) => Err(e.clone()),
        };
        match eval("request") {
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
            Ok((true, allowed_by)) => match eval("auto_approve") {
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
                    policy_ids.push(super::APPROVAL_STEPS.into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Catalog, Person, PersonStatus};

    fn person(email: &str, department: Option<&str>) -> Person {
        Person {
            email: email.into(),
            name: None,
            slack_id: None,
            teams_id: None,
            department: department.map(str::to_string),
            title: None,
            manager: None,
            status: PersonStatus::Active,
            accounts: Default::default(),
        }
    }

    fn engine(extra: &str) -> Engine {
        Engine::from_texts(
            &[("b".into(), BASELINE.into()), ("x".into(), extra.into())],
            "test",
        )
        .unwrap()
    }

    /// Cedar's own answer for `approve`, entities built and evaluated.
    fn evaluated(e: &Engine, approver: &Person, input: &PolicyInput<'_>) -> bool {
        let p = e.prepare_for(input, approver).unwrap();
        e.evaluate(&p, "approve").unwrap().0
    }

    #[test]
    fn an_approve_answered_without_cedar_is_the_answer_cedar_gives() {
        let cat = Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\nowners=['o@x.io']\n[[apps.entitlements]]\nid='e'\nrisk='high'\n",
            None,
        )
        .unwrap();
        let app = &cat.apps[0];
        let subject = person("s@x.io", Some("eng"));
        let input = PolicyInput {
            requester: &subject,
            subject: &subject,
            app,
            entitlement: &app.entitlements[0],
            duration: None,
            reason_length: 20,
            has_ticket: false,
            held: Vec::new(),
            hour_utc: 12,
            on_call_level: 0,
        };
        let owner = person("o@x.io", Some("eng"));
        let sales = person("p@x.io", Some("sales"));
        // (policies beside the baseline, answered without Cedar, may `owner` and `sales` approve)
        let cases = [
            ("", true, true, true),
            (
                "@id(\"same-dept\") forbid(principal, action == Grantry::Action::\"approve\", resource) \
                 when { principal.department != context.subject_department };",
                false,
                true,
                false,
            ),
            (
                "@id(\"any-forbid\") forbid(principal, action, resource) when { resource.risk_level > 3 };",
                false,
                true,
                true,
            ),
            (
                "@id(\"only-o\") permit(principal == Grantry::Person::\"o@x.io\", action, resource);",
                true,
                true,
                true,
            ),
        ];
        for (extra, shortcut, owner_may, sales_may) in cases {
            let e = engine(extra);
            assert_eq!(e.always_allowed.contains("approve"), shortcut, "{extra}");
            for (who, may) in [(&owner, owner_may), (&sales, sales_may)] {
                assert_eq!(evaluated(&e, who, &input), may, "{extra}: {}", who.email);
                assert_eq!(
                    e.may_approve(who, &input).is_ok(),
                    may,
                    "{extra}: {}",
                    who.email
                );
            }
        }
        // Without the baseline's unconditional permit: a scoped or conditional permit is asked.
        for only in [
            "permit(principal == Grantry::Person::\"o@x.io\", action == Grantry::Action::\"approve\", resource);",
            "permit(principal, action == Grantry::Action::\"approve\", resource) when { principal.department == \"eng\" };",
        ] {
            let e = Engine::from_texts(&[("x".into(), only.into())], "test").unwrap();
            assert!(!e.always_allowed.contains("approve"), "{only}");
            assert!(e.may_approve(&owner, &input).is_ok(), "{only}");
            assert!(e.may_approve(&sales, &input).is_err(), "{only}");
        }
        // The baseline's `request` has a forbid: never answered without Cedar.
        assert!(!engine("").always_allowed.contains("request"));
    }

    #[test]
    fn a_decision_built_from_what_policies_read_is_the_decision_built_from_everything() {
        let cat = Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\nowners=['o@x.io']\n\
             [[apps.entitlements]]\nid='low'\nrisk='low'\nconflicts=['a/high']\n\
             [[apps.entitlements]]\nid='high'\nrisk='high'\n",
            None,
        )
        .unwrap();
        let app = &cat.apps[0];
        let eng = person("s@x.io", Some("eng"));
        let sales = person("p@x.io", Some("sales"));
        let held = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let policies = [
            "",
            "@id(\"dept\") permit(principal, action == Grantry::Action::\"auto_approve\", resource) \
             when { principal.department == \"eng\" && resource.risk == \"low\" && !context.permanent };",
            "@id(\"has\") forbid(principal, action == Grantry::Action::\"request\", resource) \
             when { principal has title && resource has risk_level && resource.risk_level > 2 };",
            "@id(\"whole\") permit(principal, action == Grantry::Action::\"auto_approve\", resource) \
             when { context.reason_length > 30 && context != {\"reason_length\": context.reason_length, \"held\": context.held} };",
            "@id(\"missing\") forbid(principal, action == Grantry::Action::\"request\", resource) \
             when { principal.nickname == \"x\" };",
            "@id(\"approve\") forbid(principal, action == Grantry::Action::\"approve\", resource) \
             when { principal.department != context.subject_department };",
        ];
        for extra in policies {
            let pruned = engine(extra);
            let mut whole = engine(extra);
            whole.reads = Reads::everything();
            for (who, ent, h, duration, reason_length) in [
                (
                    &eng,
                    0,
                    held(&[]),
                    crate::domain::AccessDuration::from_minutes(60).ok(),
                    40,
                ),
                (&eng, 0, held(&["a/high"]), None, 10),
                (
                    &sales,
                    1,
                    held(&[]),
                    crate::domain::AccessDuration::from_minutes(60).ok(),
                    10,
                ),
                (&eng, 1, held(&["a/low"]), None, 50),
            ] {
                let input = PolicyInput {
                    requester: who,
                    subject: who,
                    app,
                    entitlement: &app.entitlements[ent],
                    duration,
                    reason_length,
                    has_ticket: false,
                    held: h,
                    hour_utc: 9,
                    on_call_level: 0,
                };
                assert_eq!(
                    pruned.decide(&input),
                    whole.decide(&input),
                    "{extra}: {}",
                    who.email
                );
                for approver in [&eng, &sales] {
                    assert_eq!(
                        pruned.may_approve(approver, &input),
                        whole.may_approve(approver, &input),
                        "{extra}: {} approving",
                        approver.email
                    );
                }
            }
        }
    }
}
