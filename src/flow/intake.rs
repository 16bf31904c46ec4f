//! Filing a request: validate against the catalog, decide, route, persist (one read, one shared write).
//! Pure CPU and one write: this runs on the ack path.

use std::collections::HashMap;

use serde_json::json;

use super::FlowError;
use crate::chat::command::{DurationSpec, RequestText};
use crate::domain::{AccessDuration, AccessRequest, Catalog, RequestId, RequestState};
use crate::policy::{self, Outcome, PolicyInput};
use crate::routing;
use crate::store::decisions::DecisionRecord;
use crate::store::filing::{Filed, Filing, FilingApproval, FilingEvent, TicketLink};
use crate::store::Job;
use crate::App;

/// A request as a chat platform received it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub platform: &'static str,
    pub requester_chat_id: String,
    /// Where to answer the requester ephemerally later, if the platform has such a place.
    pub reply_channel: Option<String>,
    /// Same key, same request: platform retries and double submissions file once.
    pub idempotency_key: Option<String>,
    pub text: RequestText,
    pub ticket: Option<String>,
    /// Who the access is for when not the requester (a direct report).
    pub subject_email: Option<String>,
    /// For an extension: the grant to lengthen.
    pub extends: Option<String>,
    /// Also send the reply as a direct message (a modal closes, leaving nowhere to show it).
    pub confirm_by_dm: bool,
    /// An emergency request (`/access breakglass`): granted at once where the catalog allows it.
    pub break_glass: bool,
    /// Filed from a service desk's ticket: linked to the request in the same transaction, so
    /// the sweeper never sees the request without it (and opens a second ticket).
    pub inbound_ticket: Option<TicketLink>,
}

/// The policy id a break-glass grant is recorded under (`approved_by = policy:break-glass`).
pub const BREAK_GLASS: &str = "break-glass";

/// What to tell the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeReply {
    /// Filed and sent to these approvers (display names).
    Routed {
        id: RequestId,
        approvers: Vec<String>,
    },
    /// Filed and denied by policy.
    Denied { id: RequestId, reason: String },
    /// Filed and approved by policy: being provisioned.
    AutoApproved { id: RequestId, reason: String },
    /// Already filed by an earlier delivery.
    Duplicate { id: RequestId, state: RequestState },
    /// Not filed: what to change. Nothing was stored.
    Invalid(String),
}

impl IntakeReply {
    /// What to tell the requester, in words (user input escaped).
    pub fn message(&self) -> String {
        match self {
            IntakeReply::Routed { id, approvers } => format!(
                "Request {id} sent to {} for approval. I'll message you when they decide.",
                crate::chat::escape(&join_names(approvers))
            ),
            IntakeReply::AutoApproved { id, reason } => format!(
                ":white_check_mark: Request {id} approved automatically: {}. Access is being granted; I'll message you when it is active.",
                crate::chat::escape(reason)
            ),
            IntakeReply::Denied { id, reason } => {
                format!(
                    ":no_entry: Request {id} denied: {}",
                    crate::chat::escape(reason)
                )
            }
            IntakeReply::Duplicate { id, state } => {
                format!(
                    "Request {id} was already received; it is {}.",
                    state.describe()
                )
            }
            IntakeReply::Invalid(msg) => msg.clone(),
        }
    }
}

fn join_names(names: &[String]) -> String {
    match names {
        [] => "the app's owners".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// An approver as cards reach them: a stand-in when the approver delegated while away.
struct Routed {
    email: String,
    name: String,
    chat_id: Option<String>,
    on_behalf_of: Option<String>,
}

/// Replaces approvers who are away by their delegates (never the requester or the subject).
fn route_with_delegations(
    app: &App,
    platform: &str,
    approvers: &[routing::Approver],
    delegations: &HashMap<String, (String, i64)>,
    requester: &str,
    subject: &str,
) -> Vec<Routed> {
    let mut out: Vec<Routed> = Vec::new();
    for a in approvers {
        let (email, name, on_behalf_of) = match delegations.get(&a.email) {
            Some((delegate, until))
                if !delegate.eq_ignore_ascii_case(requester)
                    && !delegate.eq_ignore_ascii_case(subject) =>
            {
                let name = app
                    .directory
                    .by_email(delegate)
                    .map(|p| p.display_name().to_string())
                    .unwrap_or_else(|| delegate.clone());
                let why = format!(
                    "On behalf of {} (away until {})",
                    a.name,
                    crate::clock::format_utc(*until)
                );
                (delegate.clone(), name, Some(why))
            }
            _ => (a.email.clone(), a.name.clone(), None),
        };
        if out.iter().any(|o| o.email.eq_ignore_ascii_case(&email)) {
            continue;
        }
        let chat_id = app
            .directory
            .by_email(&email)
            .and_then(|p| app.directory.chat_id(platform, p))
            .map(str::to_string);
        out.push(Routed {
            email,
            name,
            chat_id,
            on_behalf_of,
        });
    }
    out
}

/// Who owns what is asked for: the app's owners, or for a bundle the approvers its steps name.
fn owners_of<'a>(
    catalog_app: &'a crate::domain::App,
    ent: &'a crate::domain::Entitlement,
) -> Vec<&'a str> {
    if ent.is_bundle() {
        ent.steps
            .iter()
            .flat_map(|s| s.approvers.iter().chain(&s.backup))
            .filter(|w| w.contains('@'))
            .map(String::as_str)
            .collect()
    } else {
        catalog_app.owners.iter().map(String::as_str).collect()
    }
}

fn did_you_mean(options: Vec<&str>) -> String {
    match options.as_slice() {
        [] => String::new(),
        [one] => format!(" Did you mean `{one}`?"),
        many => format!(
            " Did you mean one of {}?",
            many.iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Files a request. Invalid input changes nothing.
pub async fn submit(app: &App, s: Submission) -> Result<IntakeReply, FlowError> {
    let Some(requester) = app.directory.by_chat_id(s.platform, &s.requester_chat_id) else {
        return Ok(IntakeReply::Invalid(
            "I don't know who you are yet: your account is not in grantry's directory. Ask IT to add you to the people file.".into(),
        ));
    };
    let t = &s.text;
    let Some(catalog_app) = app.catalog.app(&t.app) else {
        let names = Catalog::closest(app.catalog.apps.iter().map(|a| a.id.as_str()), &t.app);
        return Ok(IntakeReply::Invalid(format!(
            "There is no app `{}` in the catalog.{}",
            crate::chat::escape(&t.app),
            did_you_mean(names)
        )));
    };
    let Some(ent) = catalog_app.entitlement(&t.entitlement) else {
        let mut names = Catalog::closest(
            catalog_app.entitlements.iter().map(|e| e.id.as_str()),
            &t.entitlement,
        );
        if names.is_empty() {
            names = catalog_app
                .entitlements
                .iter()
                .map(|e| e.id.as_str())
                .take(5)
                .collect();
        }
        return Ok(IntakeReply::Invalid(format!(
            "{} has no entitlement `{}`.{}",
            catalog_app.name,
            crate::chat::escape(&t.entitlement),
            did_you_mean(names)
        )));
    };
    let duration: Option<AccessDuration> = match t.duration {
        None => Some(ent.default_duration),
        Some(DurationSpec::Permanent) if ent.allow_permanent => None,
        Some(DurationSpec::Permanent) => {
            return Ok(IntakeReply::Invalid(format!(
                "{}/{} cannot be held permanently. Ask for a duration{}.",
                catalog_app.id,
                ent.id,
                ent.max_duration
                    .map(|m| format!(" up to {m}"))
                    .unwrap_or_default()
            )))
        }
        Some(DurationSpec::For(d)) => match ent.max_duration {
            Some(max) if d > max => {
                return Ok(IntakeReply::Invalid(format!(
                    "{d} is longer than the {max} allowed for {}/{}. Ask for {max} or less.",
                    catalog_app.id, ent.id
                )))
            }
            _ => Some(d),
        },
    };
    let break_glass_cap = match (s.break_glass, ent.break_glass) {
        (false, _) => None,
        (true, Some(cap)) => Some(cap),
        (true, None) => {
            return Ok(IntakeReply::Invalid(format!(
                "{}/{} has no break-glass access in the catalog: ask for it the usual way, `/access {} {} for <duration> because <reason>`.",
                catalog_app.id, ent.id, catalog_app.id, ent.id
            )))
        }
    };
    // Break-glass is short whatever was asked: at most the catalog's cap.
    let duration = match break_glass_cap {
        Some(cap) => Some(duration.map_or(cap, |d| d.min(cap))),
        None => duration,
    };
    let min = app.config.requests.min_reason_chars;
    let reason = t.reason.clone().unwrap_or_default();
    if reason.chars().count() < min {
        return Ok(IntakeReply::Invalid(format!(
            "Say why you need it: add `because <reason>` (at least {min} characters), e.g. `/access {} {} for {} because incident INC-42`.",
            catalog_app.id,
            ent.id,
            duration.map(|d| d.to_string()).unwrap_or_else(|| "permanent".into())
        )));
    }
    if let Some(problem) = crate::domain::reason_problem(&reason) {
        return Ok(IntakeReply::Invalid(problem));
    }
    // A ticket as typed, or a desk's key and link: each is stored, shown and sent back to the desk.
    let linked = s
        .inbound_ticket
        .iter()
        .flat_map(|l| std::iter::once(&l.key).chain(&l.url));
    if let Some(problem) = s
        .ticket
        .iter()
        .chain(linked)
        .find_map(|t| crate::domain::ticket_problem(t))
    {
        return Ok(IntakeReply::Invalid(problem));
    }

    let subject = match s.subject_email.as_deref() {
        None => requester,
        Some(e) if e.eq_ignore_ascii_case(&requester.email) => requester,
        Some(e) => match app.directory.by_email(e) {
            Some(p) if p.manager.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(&requester.email)) => p,
            // Grant on behalf: an owner of the app, or IT, for anyone.
            Some(p)
                if owners_of(catalog_app, ent).iter().any(|o| o.eq_ignore_ascii_case(&requester.email))
                    || app.config.lifecycle.is_it_admin(&requester.email) =>
            {
                p
            }
            _ => {
                return Ok(IntakeReply::Invalid(format!(
                    "You can request access for yourself or your direct reports (owners of {} and IT: for anyone); {} is not your report in the directory.",
                    catalog_app.id,
                    crate::chat::escape(e)
                )))
            }
        },
    };
    // Step 0's approvers come from the catalog and the directory; the store is read once for
    // what the decision and the routing need (offboarding, held grants, delegations).
    let approvers = routing::step_approvers(
        catalog_app,
        &ent.steps[0],
        &requester.email,
        &subject.email,
        &app.directory,
    );
    let approver_emails: Vec<&str> = approvers.iter().map(|a| a.email.as_str()).collect();
    let mut facts = app
        .store
        .intake_facts(
            &[&requester.email, &subject.email],
            &subject.email,
            &approver_emails,
            app.now_ms(),
        )
        .await?;
    for who in [&requester.email, &subject.email] {
        if facts.is_offboarded(who) {
            return Ok(IntakeReply::Invalid(format!(
                "{} has left the company (offboarded): no new access can be requested.",
                crate::chat::escape(who)
            )));
        }
    }
    let held = std::mem::take(&mut facts.held);
    let hour_utc = (app.now_ms().div_euclid(3_600_000)).rem_euclid(24);
    // Memory only (a snapshot refreshed in the background): never the provider on the ack path.
    let on_call_level = app.on_call.level_of(&subject.email, app.now_ms());
    let mut decision = policy::decide_in(
        &app.policy,
        &app.catalog,
        &PolicyInput {
            requester,
            subject,
            app: catalog_app,
            entitlement: ent,
            duration,
            reason_length: reason.chars().count(),
            has_ticket: s.ticket.is_some(),
            held,
            hour_utc,
            on_call_level,
        },
    );
    // Break-glass skips the approvers, never the policies that refuse (`request` forbids).
    if let (Some(cap), false) = (break_glass_cap, decision.outcome == Outcome::Deny) {
        decision = policy::Decision {
            outcome: Outcome::AutoApprove,
            policy_ids: vec![BREAK_GLASS.into()],
            reasons: vec![format!(
                "break-glass: emergency access for at most {cap}; IT is alerted and the owners review it afterwards"
            )],
        };
    }
    // Every step must be able to complete before the request is filed; step 0 is asked now.
    let short_step = ent.steps.iter().enumerate().find_map(|(k, step)| {
        let n = routing::step_approvers(
            catalog_app,
            step,
            &requester.email,
            &subject.email,
            &app.directory,
        )
        .len();
        (n < step.need as usize).then_some((k, n, step.need))
    });
    if decision.outcome == Outcome::NeedsApproval {
        if let Some((k, n, need)) = short_step {
            decision = policy::Decision {
                outcome: Outcome::Deny,
                policy_ids: vec!["needs-an-approver".into()],
                reasons: vec![format!(
                    "approval step {} of {}/{} needs {need} approver(s) other than you and only {n} can: ask IT to add approvers",
                    k + 1,
                    catalog_app.id,
                    ent.id
                )],
            };
        }
    }
    let now = app.now_ms();
    let state = match decision.outcome {
        Outcome::Deny => RequestState::Denied,
        Outcome::AutoApprove => RequestState::Provisioning,
        Outcome::NeedsApproval => RequestState::PendingApproval,
    };
    let request = AccessRequest {
        id: RequestId::generate(),
        platform: s.platform.to_string(),
        requester_chat_id: s.requester_chat_id.clone(),
        requester_email: requester.email.clone(),
        subject_email: subject.email.clone(),
        app: catalog_app.id.clone(),
        entitlement: ent.id.clone(),
        duration,
        reason,
        ticket: s.ticket.clone(),
        extends_grant: s.extends.clone(),
        state,
        created_at_ms: now,
        updated_at_ms: now,
    };

    let id = request.id.as_str();
    let mut events = vec![FilingEvent {
        actor: requester.email.clone(),
        action: "request.submitted".into(),
        detail: json!({
            "platform": s.platform, "chat_user": s.requester_chat_id, "subject": subject.email,
            "app": request.app, "entitlement": request.entitlement,
            "duration": duration.map(|d| d.to_string()), "reason": request.reason, "ticket": request.ticket,
            "extends_grant": request.extends_grant,
        }),
    }];
    let decision_record = DecisionRecord {
        request_id: id.to_string(),
        kind: "policy".into(),
        outcome: match decision.outcome {
            Outcome::Deny => "deny",
            Outcome::AutoApprove => "auto_approve",
            Outcome::NeedsApproval => "needs_approval",
        }
        .into(),
        actor: "policy".into(),
        policy_ids: json!(decision.policy_ids).to_string(),
        reasons: json!(decision.reasons).to_string(),
        at: now,
    };
    // What the decision saw beyond the request itself, for the audit.
    let mut decision_detail =
        json!({"policy_ids": decision.policy_ids, "reasons": decision.reasons});
    if app.on_call.is_on() {
        decision_detail["on_call_level"] = json!(on_call_level);
    }
    if break_glass_cap.is_some() {
        decision_detail["break_glass"] = json!(true);
    }
    let policy_event = |action: &str, detail: serde_json::Value| FilingEvent {
        actor: "policy".into(),
        action: action.into(),
        detail,
    };
    let mut approvals = Vec::new();
    let mut jobs = Vec::new();
    let reply = match state {
        RequestState::Denied => {
            events.push(policy_event("request.denied", decision_detail));
            IntakeReply::Denied {
                id: request.id.clone(),
                reason: decision.explain(),
            }
        }
        RequestState::Provisioning => {
            events.push(policy_event("request.auto_approved", decision_detail));
            jobs.push(Job::Provision {
                request_id: id.to_string(),
            });
            if decision.policy_ids.iter().any(|p| p == BREAK_GLASS) {
                let alert = format!(
                    ":rotating_light: *BREAK-GLASS* {id}: {} took *{}/{}*{} for {}: {}. The owners will review it.",
                    crate::chat::escape(&requester.email),
                    request.app,
                    request.entitlement,
                    if subject.email == requester.email {
                        String::new()
                    } else {
                        format!(" for {}", crate::chat::escape(&subject.email))
                    },
                    duration.map(|d| d.to_string()).unwrap_or_default(),
                    crate::chat::escape(&request.reason)
                );
                jobs.extend(app.status_notice(alert));
            }
            IntakeReply::AutoApproved {
                id: request.id.clone(),
                reason: decision.explain(),
            }
        }
        _ => {
            let routed = route_with_delegations(
                app,
                s.platform,
                &approvers,
                &facts.delegations,
                &requester.email,
                &subject.email,
            );
            let mut detail = decision_detail;
            detail["approvers"] = json!(routed.iter().map(|a| &a.email).collect::<Vec<_>>());
            detail["delegations"] = json!(routed
                .iter()
                .filter_map(|a| a.on_behalf_of.as_ref())
                .collect::<Vec<_>>());
            events.push(policy_event("request.routed", detail));
            let names = routed.iter().map(|a| a.name.clone()).collect();
            approvals = routed
                .into_iter()
                .map(|a| FilingApproval {
                    email: a.email,
                    name: a.name,
                    chat_user_id: a.chat_id,
                    on_behalf_of: a.on_behalf_of,
                })
                .collect();
            IntakeReply::Routed {
                id: request.id.clone(),
                approvers: names,
            }
        }
    };
    if s.confirm_by_dm {
        jobs.push(Job::Notify {
            platform: s.platform.to_string(),
            to: s.requester_chat_id.clone(),
            text: reply.message(),
            ephemeral_channel: None,
        });
    }
    let filing = Filing {
        request,
        idempotency_key: s.idempotency_key,
        reply_channel: s.reply_channel,
        decision: decision_record,
        events,
        approvals,
        jobs,
        max_attempts: app.config.jobs.max_attempts,
        ticket: s.inbound_ticket,
    };
    Ok(match app.store.file(filing).await? {
        Filed::Created => reply,
        Filed::Duplicate { id, state } => IntakeReply::Duplicate { id, state },
    })
}
