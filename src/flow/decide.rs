//! An approver's click: authorise the clicker from the store (never from the payload), move the
//! request in one compare-and-set, and enqueue what follows, all in one transaction.
//! Every refusal is audited and changes nothing else.

use serde_json::json;

use super::FlowError;
use crate::domain::{RequestId, RequestState};
use crate::store::audit::NewAuditEvent;
use crate::store::decisions::DecisionRecord;
use crate::store::{Job, Tx};
use crate::App;

/// Approve or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Approve,
    Deny,
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
    Denied(RequestId),
    /// Refused, audited, nothing changed; the text was sent to the clicker.
    Refused(String),
}

/// Applies a click.
pub async fn decide(app: &App, click: Click) -> Result<DecideReply, FlowError> {
    let now = app.now_ms();
    let max_attempts = app.config.jobs.max_attempts;
    let clicker_person = app
        .directory
        .by_chat_id(click.platform, &click.clicker_chat_id);
    let actor = clicker_person
        .map(|p| p.email.clone())
        .unwrap_or_else(|| format!("{}:{}", click.platform, click.clicker_chat_id));
    let mut tx = app.store.begin().await?;

    let Some(id) = RequestId::parse(&click.request_id) else {
        return refuse(
            app,
            tx,
            &click,
            &actor,
            None,
            "unknown_request",
            "That button does not belong to a grantry request.".into(),
        )
        .await;
    };
    let Some(req) = tx.request(&id).await? else {
        return refuse(
            app,
            tx,
            &click,
            &actor,
            Some(&id),
            "unknown_request",
            format!("There is no request {id}."),
        )
        .await;
    };
    let is_self = req.requester_chat_id == click.clicker_chat_id && req.platform == click.platform
        || clicker_person.is_some_and(|p| {
            p.email.eq_ignore_ascii_case(&req.requester_email)
                || p.email.eq_ignore_ascii_case(&req.subject_email)
        });
    if is_self {
        return refuse(
            app,
            tx,
            &click,
            &actor,
            Some(&id),
            "self_approval",
            format!("You cannot decide your own request {id}: another approver must."),
        )
        .await;
    }
    let Some(approval) = tx
        .approval_for_chat_user(&id, click.platform, &click.clicker_chat_id)
        .await?
    else {
        return refuse(app, tx, &click, &actor, Some(&id), "not_an_approver",
            format!("You are not an approver of {id}, so your click changed nothing. Its approvers have been asked.")).await;
    };
    if app
        .directory
        .by_email(&approval.approver_email)
        .is_some_and(|p| !p.is_active())
    {
        return refuse(
            app,
            tx,
            &click,
            &actor,
            Some(&id),
            "approver_inactive",
            format!("You can no longer approve requests, so {id} is unchanged."),
        )
        .await;
    }
    let actor = approval.approver_email.clone();
    let (to, outcome, action) = match click.choice {
        Choice::Approve => (RequestState::Approved, "approved", "request.approved"),
        Choice::Deny => (RequestState::Rejected, "rejected", "request.rejected"),
    };
    if !tx
        .move_request(&id, RequestState::PendingApproval, to, now)
        .await?
    {
        // Another click (on this replica or another) decided first: say what it decided.
        let state = tx.request(&id).await?.map_or(req.state, |r| r.state);
        return refuse(
            app,
            tx,
            &click,
            &actor,
            Some(&id),
            "already_decided",
            format!("{id} is already {}: nothing changed.", state.describe()),
        )
        .await;
    }
    tx.insert_decision(&DecisionRecord {
        request_id: id.to_string(),
        kind: "approver".into(),
        outcome: outcome.into(),
        actor: actor.clone(),
        policy_ids: "[]".into(),
        reasons: "[]".into(),
        at: now,
    })
    .await?;
    tx.close_approvals(&id, approval.id, outcome, now).await?;
    tx.audit(now, NewAuditEvent {
        actor: &actor,
        action,
        request_id: Some(id.as_str()),
        grant_id: None,
        detail: json!({"approval_id": approval.id, "step": approval.step, "platform": click.platform, "chat_user": click.clicker_chat_id}),
    })
    .await?;
    tx.enqueue(
        &Job::UpdateApprovalCards {
            request_id: id.to_string(),
        },
        now,
        max_attempts,
    )
    .await?;
    let reply = match click.choice {
        Choice::Approve => {
            tx.move_request(&id, RequestState::Approved, RequestState::Provisioning, now)
                .await?;
            tx.audit(
                now,
                NewAuditEvent {
                    actor: "system",
                    action: "request.provisioning",
                    request_id: Some(id.as_str()),
                    grant_id: None,
                    detail: json!({"app": req.app, "entitlement": req.entitlement}),
                },
            )
            .await?;
            tx.enqueue(
                &Job::Provision {
                    request_id: id.to_string(),
                },
                now,
                max_attempts,
            )
            .await?;
            DecideReply::Approved(id.clone())
        }
        Choice::Deny => {
            tx.enqueue(&Job::Notify {
                platform: req.platform.clone(),
                to: req.requester_chat_id.clone(),
                text: format!(
                    ":no_entry: Your request {id} for *{}/{}* was denied by {}. You can ask again with more context, or talk to them.",
                    req.app, req.entitlement, crate::chat::escape(&approval.approver_name)
                ),
                ephemeral_channel: None,
            }, now, max_attempts)
            .await?;
            DecideReply::Denied(id.clone())
        }
    };
    tx.commit().await?;
    Ok(reply)
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
    tx.audit(now, NewAuditEvent {
        actor,
        action: "approval.refused",
        request_id: id.map(RequestId::as_str),
        grant_id: None,
        detail: json!({
            "why": why, "choice": format!("{:?}", click.choice).to_lowercase(),
            "platform": click.platform, "chat_user": click.clicker_chat_id, "claimed_request": click.request_id,
        }),
    })
    .await?;
    tx.enqueue(
        &Job::Notify {
            platform: click.platform.to_string(),
            to: click.clicker_chat_id.clone(),
            text: text.clone(),
            ephemeral_channel: click.channel.clone(),
        },
        now,
        app.config.jobs.max_attempts,
    )
    .await?;
    tx.commit().await?;
    Ok(DecideReply::Refused(text))
}
