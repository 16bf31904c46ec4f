//! An approver's click: authorise the clicker from the store (never from the payload), move the
//! request in one compare-and-set, and enqueue what follows, all in one transaction.
//! Every refusal is audited and changes nothing else.

use std::borrow::Cow;

use serde_json::json;

use super::FlowError;
use crate::domain::{AccessDuration, AccessRequest, RequestId, RequestState};
use crate::store::approvals::ApprovalRecord;
use crate::store::audit::NewAuditEvent;
use crate::store::decisions::DecisionRecord;
use crate::store::filing::FilingEvent;
use crate::store::rulings::{Ruled, Ruling};
use crate::store::{self, Job, Tx};
use crate::App;

/// What the approver chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Approve,
    /// Approve, but for less time than asked (one of the entitlement's shorter durations).
    ApproveFor(AccessDuration),
    /// Deny, with the reason the requester will read.
    Deny(Option<String>),
}

/// A click on a card, as the platform received it.
#[derive(Debug, Clone)]
pub struct Click {
    pub platform: &'static str,
    pub clicker_chat_id: String,
    /// The request id the button carried (untrusted).
    pub request_id: String,
    pub choice: Choice,
    /// Where to show the clicker an ephemeral answer.
    pub channel: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideReply {
    Approved(RequestId),
    /// One approval of a step that needs more, or a step done with another to come.
    StepApproved(RequestId),
    Denied(RequestId),
    /// Refused, audited, nothing changed; the text was sent to the clicker.
    Refused(String),
}

/// Whether a click may go ahead.
enum Gate {
    Allowed {
        req: Box<AccessRequest>,
        approval: ApprovalRecord,
    },
    Refused {
        id: Option<RequestId>,
        why: &'static str,
        text: String,
    },
}

fn refused(id: Option<&RequestId>, why: &'static str, text: String) -> Gate {
    Gate::Refused {
        id: id.cloned(),
        why,
        text,
    }
}

/// The checks every click passes, read inside the deciding transaction.
async fn gate(app: &App, tx: &mut Tx, click: &Click) -> Result<Gate, FlowError> {
    let Some(id) = RequestId::parse(&click.request_id) else {
        let text = "That button does not belong to a grantry request.".to_string();
        return Ok(refused(None, "unknown_request", text));
    };
    tx.lock_request(&id).await?;
    let Some(req) = tx.request(&id).await? else {
        return Ok(refused(
            Some(&id),
            "unknown_request",
            format!("There is no request {id}."),
        ));
    };
    if let Some(refusal) = refuse_own(app, click, &req) {
        return Ok(refusal);
    }
    let pending = tx
        .pending_approval_for_chat_user(&id, click.platform, &click.clicker_chat_id)
        .await?;
    let Some(approval) = pending else {
        let had = tx
            .approval_for_chat_user(&id, click.platform, &click.clicker_chat_id)
            .await?;
        if had.is_some() {
            let text = if req.state == RequestState::PendingApproval {
                format!("You already decided on {id}; it now waits for its other approvers.")
            } else {
                format!("{id} is already {}: nothing changed.", req.state.describe())
            };
            return Ok(refused(Some(&id), "already_decided", text));
        }
        let text = format!(
            "You are not an approver of {id}, so your click changed nothing. Its approvers have been asked."
        );
        return Ok(refused(Some(&id), "not_an_approver", text));
    };
    if let Some(refusal) = refuse_slot(app, click, &req, &approval) {
        return Ok(refusal);
    }
    Ok(Gate::Allowed {
        req: Box::new(req),
        approval,
    })
}

/// The refusal of a click on the clicker's own request (as requester or subject), if it is one.
fn refuse_own(app: &App, click: &Click, req: &AccessRequest) -> Option<Gate> {
    let clicker = app
        .directory
        .by_chat_id(click.platform, &click.clicker_chat_id);
    let own = req.requester_chat_id == click.clicker_chat_id && req.platform == click.platform
        || clicker.is_some_and(|p| {
            p.email.eq_ignore_ascii_case(&req.requester_email)
                || p.email.eq_ignore_ascii_case(&req.subject_email)
        });
    let id = &req.id;
    own.then(|| {
        let text = format!("You cannot decide your own request {id}: another approver must.");
        refused(Some(id), "self_approval", text)
    })
}

/// The refusal of a click by the holder of a pending slot, if any: an approver no longer active,
/// a request no longer waiting, an approval the `approve` policies forbid.
fn refuse_slot(
    app: &App,
    click: &Click,
    req: &AccessRequest,
    approval: &ApprovalRecord,
) -> Option<Gate> {
    let id = &req.id;
    if app
        .directory
        .by_email(&approval.approver_email)
        .is_some_and(|p| !p.is_active())
    {
        let text = format!("You can no longer approve requests, so {id} is unchanged.");
        return Some(refused(Some(id), "approver_inactive", text));
    }
    if req.state != RequestState::PendingApproval {
        let text = format!("{id} is already {}: nothing changed.", req.state.describe());
        return Some(refused(Some(id), "already_decided", text));
    }
    if !matches!(click.choice, Choice::Deny(_)) {
        if let Err(d) = may_approve(app, req, &approval.approver_email) {
            let text = format!(
                "You may not approve {id}: {}. It waits for its other approvers.",
                d.explain()
            );
            return Some(refused(Some(id), "policy_forbids_approval", text));
        }
    }
    None
}

/// The Cedar `approve` check for one approver of `req` (people missing from the directory are
/// left to the other checks).
fn may_approve(
    app: &App,
    req: &AccessRequest,
    approver: &str,
) -> Result<(), crate::policy::Decision> {
    let (Some(me), Some(requester), Some(subject)) = (
        app.directory.by_email(approver),
        app.directory.by_email(&req.requester_email),
        app.directory.by_email(&req.subject_email),
    ) else {
        return Ok(());
    };
    let Some(catalog_app) = app.catalog.app(&req.app) else {
        return Ok(());
    };
    let Some(ent) = catalog_app.entitlement(&req.entitlement) else {
        return Ok(());
    };
    let input = crate::policy::PolicyInput {
        requester,
        subject,
        app: catalog_app,
        entitlement: ent,
        duration: req.duration,
        reason_length: req.reason.chars().count(),
        has_ticket: req.ticket.is_some(),
        held: Vec::new(),
        hour_utc: (app.now_ms().div_euclid(3_600_000)).rem_euclid(24),
        on_call_level: 0,
    };
    app.policy.may_approve(me, &input)
}

fn actor_of(app: &App, click: &Click) -> String {
    app.directory
        .by_chat_id(click.platform, &click.clicker_chat_id)
        .map(|p| p.email.clone())
        .unwrap_or_else(|| format!("{}:{}", click.platform, click.clicker_chat_id))
}

/// For a click that first opens a form (Deny asks for a reason): refuses it now, audited,
/// when it could not succeed. Returns the refusal text, or `None` when the form may open.
pub async fn precheck(app: &App, click: &Click) -> Result<Option<String>, FlowError> {
    let mut tx = app.store.begin().await?;
    match gate(app, &mut tx, click).await? {
        Gate::Allowed { .. } => Ok(None),
        Gate::Refused { id, why, text } => {
            let actor = actor_of(app, click);
            refuse(app, tx, click, &actor, id.as_ref(), why, text.clone()).await?;
            Ok(Some(text))
        }
    }
}

/// Applies a click: at once where it can be ([`decide_at_once`]), else in a transaction of its
/// own.
pub async fn decide(app: &App, click: Click) -> Result<DecideReply, FlowError> {
    if let Some(reply) = decide_at_once(app, &click).await? {
        return Ok(reply);
    }
    decide_in_turn(app, click).await
}

/// A click that completes its request's route (its only or last step, one approval needed),
/// checked on a read of the request and the clicker's slot and written by the filer with other
/// clicks ([`store::rulings`]): one commit for all of them. `None`, nothing written, when the
/// click must go the long way ([`decide_in_turn`]): anything it would refuse (refused and
/// audited there), a step that is not the route's last or needs more approvals, or a request
/// or slot that changed since the read (the filer's compare-and-set lost).
async fn decide_at_once(app: &App, click: &Click) -> Result<Option<DecideReply>, FlowError> {
    let Some(id) = RequestId::parse(&click.request_id) else {
        return Ok(None);
    };
    let read = app
        .store
        .read_for_click(&id, click.platform, &click.clicker_chat_id)
        .await?;
    let Some((req, Some(approval))) = read else {
        return Ok(None);
    };
    let completes = {
        let steps = route_steps(app, &req);
        let k = approval.step as usize;
        k + 1 >= steps.len() && steps.get(k).is_none_or(|s| s.need <= 1)
    };
    if !completes
        || refuse_own(app, click, &req).is_some()
        || refuse_slot(app, click, &req, &approval).is_some()
        || matches!(click.choice, Choice::ApproveFor(d) if !may_shorten(app, &req, d))
    {
        return Ok(None);
    }
    let (ruling, reply) = ruling(app, &req, &approval, click, app.now_ms());
    Ok(match app.store.file_ruling(ruling).await? {
        Ruled::Written => Some(reply),
        Ruled::Lost => None,
    })
}

/// Applies a click in a transaction of its own: the gate's reads, the compare-and-set, then its
/// writes, one after the other.
async fn decide_in_turn(app: &App, click: Click) -> Result<DecideReply, FlowError> {
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    let (req, approval) = match gate(app, &mut tx, &click).await? {
        Gate::Allowed { req, approval } => (req, approval),
        Gate::Refused { id, why, text } => {
            let actor = actor_of(app, &click);
            return refuse(app, tx, &click, &actor, id.as_ref(), why, text).await;
        }
    };
    let id = req.id.clone();
    let actor = approval.approver_email.clone();
    if let Choice::ApproveFor(d) = &click.choice {
        if !may_shorten(app, &req, *d) {
            let text =
                format!("{d} is not a shorter duration {id} can be approved for: nothing changed.");
            return refuse(app, tx, &click, &actor, Some(&id), "bad_duration", text).await;
        }
    }
    if !matches!(click.choice, Choice::Deny(_)) {
        if let Some(reply) = approve_step(app, &mut tx, &req, &approval, &click, now).await? {
            tx.commit().await?;
            return Ok(reply);
        }
    }
    let (ruling, reply) = ruling(app, &req, &approval, &click, now);
    // The compare-and-set: a double click, a retry or another approver's click lose here.
    if !tx
        .move_request(&id, RequestState::PendingApproval, ruling.to, ruling.at_ms)
        .await?
    {
        // Another click (on this replica or another) decided first: say what it decided.
        let state = tx.request(&id).await?.map_or(req.state, |r| r.state);
        let text = format!("{id} is already {}: nothing changed.", state.describe());
        return refuse(app, tx, &click, &actor, Some(&id), "already_decided", text).await;
    }
    // What follows the compare-and-set is written together (one round trip), with
    // the audit events, after the chain's head is read.
    let mut writes = tx.batch();
    store::rulings::push_writes(&mut writes, &[&ruling])?;
    let events = ruling.audit_events();
    let timed: Vec<(i64, &NewAuditEvent<'_>)> = events.iter().map(|e| (ruling.at_ms, e)).collect();
    tx.run_with_audit(writes, &timed).await?;
    tx.commit().await?;
    Ok(reply)
}

/// The steps of `req`'s route (the catalog's, else the app's owners), borrowed from the
/// catalog where it has them.
fn route_steps<'a>(app: &'a App, req: &AccessRequest) -> Cow<'a, [crate::domain::Step]> {
    match app
        .catalog
        .app(&req.app)
        .and_then(|a| a.entitlement(&req.entitlement))
    {
        Some(e) => Cow::Borrowed(&e.steps),
        None => Cow::Owned(vec![crate::domain::Step::owners()]),
    }
}

/// Whether `req` may be approved for `d`: shorter than asked, and one of the entitlement's
/// durations.
fn may_shorten(app: &App, req: &AccessRequest, d: AccessDuration) -> bool {
    req.duration.is_some_and(|asked| d < asked)
        && app
            .catalog
            .app(&req.app)
            .and_then(|a| a.entitlement(&req.entitlement))
            .is_some_and(|e| e.duration_choices().contains(&Some(d)))
}

/// What the click decides, written after its compare-and-set (an approval goes straight on to
/// provisioning: the request is never seen `approved` by anyone else, and both moves are
/// audited), and what the clicker is told.
fn ruling(
    app: &App,
    req: &AccessRequest,
    approval: &ApprovalRecord,
    click: &Click,
    now: i64,
) -> (Ruling, DecideReply) {
    let id = &req.id;
    let actor = &approval.approver_email;
    let (to, outcome, action) = match click.choice {
        Choice::Approve | Choice::ApproveFor(_) => {
            (RequestState::Provisioning, "approved", "request.approved")
        }
        Choice::Deny(_) => (RequestState::Rejected, "rejected", "request.rejected"),
    };
    let reason = match &click.choice {
        Choice::Deny(Some(r)) => Some(r.clone()),
        _ => None,
    };
    let shorter = match click.choice {
        Choice::ApproveFor(d) => Some(d),
        _ => None,
    };
    let decision = DecisionRecord {
        request_id: id.to_string(),
        kind: "approver".into(),
        outcome: outcome.into(),
        actor: actor.clone(),
        policy_ids: "[]".into(),
        reasons: json!(reason.iter().collect::<Vec<_>>()).to_string(),
        at: now,
    };
    let detail = json!({
        "approval_id": approval.id, "step": approval.step, "platform": click.platform,
        "chat_user": click.clicker_chat_id, "reason": reason,
        "on_behalf_of": approval.on_behalf_of,
        "approved_for": shorter.map(|d| d.to_string()),
        "asked_for": req.duration.map(|d| d.to_string()),
    });
    let mut events = vec![FilingEvent {
        actor: actor.clone(),
        action: action.into(),
        detail,
    }];
    let mut jobs = vec![Job::UpdateApprovalCards {
        request_id: id.to_string(),
    }];
    let reply = match click.choice {
        Choice::Approve | Choice::ApproveFor(_) => {
            events.push(FilingEvent {
                actor: "system".into(),
                action: "request.provisioning".into(),
                detail: json!({"app": req.app, "entitlement": req.entitlement}),
            });
            jobs.push(Job::Provision {
                request_id: id.to_string(),
            });
            DecideReply::Approved(id.clone())
        }
        Choice::Deny(_) => {
            let why = reason
                .as_deref()
                .map(|r| format!(" Their reason: \"{}\".", crate::chat::escape(r)))
                .unwrap_or_default();
            let text = format!(
                ":no_entry: Your request {id} for *{}/{}* was denied by {}.{why} You can ask again with more context, or talk to them.",
                req.app,
                req.entitlement,
                crate::chat::escape(&approval.approver_name)
            );
            jobs.push(Job::Notify {
                platform: req.platform.clone(),
                to: req.requester_chat_id.clone(),
                text,
                ephemeral_channel: None,
            });
            DecideReply::Denied(id.clone())
        }
    };
    let ruling = Ruling {
        request_id: id.clone(),
        approval_id: approval.id,
        to,
        outcome,
        shorter,
        decision,
        events,
        jobs,
        at_ms: now,
        max_attempts: app.config.jobs.max_attempts,
    };
    (ruling, reply)
}

/// An approval in a multi-step or N-of-M route. Records it; when it completes a step that is not
/// the last, asks the next step's approvers and returns the reply. Returns `None` when this
/// approval completes the last step (the caller then approves the request).
async fn approve_step(
    app: &App,
    tx: &mut Tx,
    req: &AccessRequest,
    approval: &ApprovalRecord,
    click: &Click,
    now: i64,
) -> Result<Option<DecideReply>, FlowError> {
    let catalog_app = app.catalog.app(&req.app);
    let steps = route_steps(app, req);
    let k = approval.step as usize;
    let need = steps.get(k).map(|s| s.need).unwrap_or(1) as i64;
    let last = k + 1 >= steps.len();
    if need <= 1 && last {
        return Ok(None);
    }
    let id = &req.id;
    tx.approve_slot(approval.id, now).await?;
    let given = tx.approved_in_step(id, approval.step).await?;
    if given >= need && last {
        return Ok(None);
    }
    let max = app.config.jobs.max_attempts;
    tx.insert_decision(&DecisionRecord {
        request_id: id.to_string(),
        kind: "step".into(),
        outcome: "approved".into(),
        actor: approval.approver_email.clone(),
        policy_ids: "[]".into(),
        reasons: "[]".into(),
        at: now,
    })
    .await?;
    tx.audit(
        now,
        NewAuditEvent {
            actor: &approval.approver_email,
            action: "request.step_approved",
            request_id: Some(id.as_str()),
            grant_id: None,
            detail: json!({"step": approval.step + 1, "of": steps.len(), "given": given, "need": need,
                           "platform": click.platform, "chat_user": click.clicker_chat_id}),
        },
    )
    .await?;
    let mut next_names = Vec::new();
    if given >= need {
        tx.close_step(id, approval.step).await?;
        if let (Some(a), Some(next)) = (catalog_app, steps.get(k + 1)) {
            let next_step = approval.step + 1;
            for ap in crate::routing::step_approvers(
                a,
                next,
                &req.requester_email,
                &req.subject_email,
                &app.directory,
            ) {
                let chat_id = app
                    .directory
                    .by_email(&ap.email)
                    .and_then(|p| app.directory.chat_id(&req.platform, p));
                let slot = tx
                    .insert_approval(&crate::store::approvals::NewApproval {
                        request_id: id,
                        step: next_step,
                        email: &ap.email,
                        name: &ap.name,
                        platform: &req.platform,
                        chat_user_id: chat_id,
                        on_behalf_of: None,
                    })
                    .await?;
                tx.enqueue(&Job::PostApprovalCard { approval_id: slot }, now, max)
                    .await?;
                next_names.push(ap.name);
            }
            tx.audit(
                now,
                NewAuditEvent {
                    actor: "system",
                    action: "request.step_completed",
                    request_id: Some(id.as_str()),
                    grant_id: None,
                    detail: json!({"step": approval.step + 1, "next_approvers": next_names}),
                },
            )
            .await?;
        }
    }
    tx.enqueue(
        &Job::UpdateApprovalCards {
            request_id: id.to_string(),
        },
        now,
        max,
    )
    .await?;
    Ok(Some(DecideReply::StepApproved(id.clone())))
}

/// Records a refused click and tells the clicker why; changes nothing else.
async fn refuse(
    app: &App,
    mut tx: Tx,
    click: &Click,
    actor: &str,
    id: Option<&RequestId>,
    why: &str,
    text: String,
) -> Result<DecideReply, FlowError> {
    let now = app.now_ms();
    let choice = match &click.choice {
        Choice::Approve | Choice::ApproveFor(_) => "approve",
        Choice::Deny(_) => "deny",
    };
    tx.audit(
        now,
        NewAuditEvent {
            actor,
            action: "approval.refused",
            request_id: id.map(RequestId::as_str),
            grant_id: None,
            detail: json!({
                "why": why, "choice": choice,
                "platform": click.platform, "chat_user": click.clicker_chat_id, "claimed_request": click.request_id,
            }),
        },
    )
    .await?;
    let notify = Job::Notify {
        platform: click.platform.to_string(),
        to: click.clicker_chat_id.clone(),
        text: text.clone(),
        ephemeral_channel: click.channel.clone(),
    };
    tx.enqueue(&notify, now, app.config.jobs.max_attempts)
        .await?;
    tx.commit().await?;
    Ok(DecideReply::Refused(text))
}
