//! Writing a request's progress to its service-desk ticket: create it if it is not there yet,
//! then say what changed, and resolve it when the access is active or the request ends.
//! Each step is recorded once done, so a retry after a desk outage picks up where it stopped.

use super::JobError;
use crate::domain::{AccessRequest, RequestId, RequestState};
use crate::servicedesk::NewTicket;
use crate::App;

/// Whether a ticket is resolved when its request reaches `state`.
fn resolves(state: RequestState) -> bool {
    matches!(
        state,
        RequestState::Active
            | RequestState::Denied
            | RequestState::Rejected
            | RequestState::Cancelled
            | RequestState::TimedOut
            | RequestState::Expired
            | RequestState::Revoked
    )
}

/// Syncs the ticket of `request_id` with the request's current state.
pub(super) async fn sync(app: &App, request_id: &str) -> Result<(), JobError> {
    let id = RequestId::from_stored(request_id.to_string());
    let (Some(req), Some(ticket)) = (
        app.store.request(&id).await?,
        app.store.ticket(request_id).await?,
    ) else {
        return Ok(());
    };
    let desk = app.service_desks.get(&ticket.desk).ok_or_else(|| {
        JobError::permanent(format!("service desk '{}' is not configured", ticket.desk))
    })?;
    let (key, fresh) = match &ticket.ticket_key {
        Some(k) => (k.clone(), false),
        None => {
            let t = desk.desk.create(&new_ticket(app, &req).await?).await?;
            app.store
                .set_ticket_created(request_id, &t.key, t.url.as_deref(), app.now_ms())
                .await?;
            (t.key, true)
        }
    };
    if ticket.synced_state.as_deref() == Some(req.state.as_str()) {
        app.store
            .set_ticket_synced(
                request_id,
                req.state.as_str(),
                ticket.resolved != 0,
                app.now_ms(),
            )
            .await?;
        return Ok(());
    }
    // A ticket just opened already says it is waiting for approval.
    let said = if fresh && req.state == RequestState::PendingApproval {
        false
    } else {
        let text = progress(app, &req).await?;
        if resolves(req.state) && ticket.resolved == 0 {
            desk.desk.resolve(&key, &text).await?;
            true
        } else {
            desk.desk.comment(&key, &text).await?;
            ticket.resolved != 0
        }
    };
    let resolved = said || ticket.resolved != 0;
    app.store
        .set_ticket_synced(request_id, req.state.as_str(), resolved, app.now_ms())
        .await?;
    Ok(())
}

async fn new_ticket(app: &App, req: &AccessRequest) -> Result<NewTicket, JobError> {
    let duration = req
        .duration
        .map(|d| d.to_string())
        .unwrap_or_else(|| "permanent".into());
    let summary = format!(
        "Access request {}: {}/{} for {}",
        req.id, req.app, req.entitlement, req.subject_email
    );
    let mut description = format!(
        "Requester: {}\nFor: {}\nApp: {}\nEntitlement: {}\nDuration: {duration}\nReason: {}\nRequest: {} (grantry)\n",
        req.requester_email, req.subject_email, req.app, req.entitlement, req.reason, req.id
    );
    description.push_str(&progress(app, req).await?);
    Ok(NewTicket {
        request_id: req.id.to_string(),
        requester: req.requester_email.clone(),
        subject: req.subject_email.clone(),
        app: req.app.clone(),
        entitlement: req.entitlement.clone(),
        duration,
        reason: req.reason.clone(),
        summary,
        description,
    })
}

/// What the request's state means, in one paragraph for the ticket.
async fn progress(app: &App, req: &AccessRequest) -> Result<String, JobError> {
    let decisions = app.store.decisions(&req.id).await?;
    let policy = decisions.iter().find(|d| d.kind == "policy");
    let cited = |d: &crate::store::decisions::DecisionRecord| {
        let ids: Vec<String> = serde_json::from_str(&d.policy_ids).unwrap_or_default();
        let reasons: Vec<String> = serde_json::from_str(&d.reasons).unwrap_or_default();
        if ids.is_empty() {
            return reasons.join("; ");
        }
        reasons
            .iter()
            .zip(&ids)
            .map(|(r, p)| format!("{r} (policy {p})"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let approver = decisions
        .iter()
        .rev()
        .find(|d| d.kind == "approver")
        .map(|d| (d.actor.clone(), d.outcome.clone(), cited(d)));
    let text = match req.state {
        RequestState::Submitted => "Received.".to_string(),
        RequestState::PendingApproval => {
            let names: Vec<String> = app
                .store
                .approvals(&req.id)
                .await?
                .into_iter()
                .filter(|a| a.state == "pending")
                .map(|a| a.approver_name)
                .collect();
            format!("Waiting for approval from {}.", names.join(", "))
        }
        RequestState::Denied => format!(
            "Denied by policy: {}.",
            policy.map(cited).unwrap_or_default()
        ),
        RequestState::Rejected => match approver {
            Some((who, _, why)) if !why.is_empty() => format!("Denied by {who}: {why}."),
            Some((who, _, _)) => format!("Denied by {who}."),
            None => "Denied.".into(),
        },
        RequestState::Approved | RequestState::Provisioning => match approver {
            Some((who, _, _)) => format!("Approved by {who}; the access is being granted."),
            None => format!(
                "Approved by policy: {}; the access is being granted.",
                policy.map(cited).unwrap_or_default()
            ),
        },
        RequestState::Active => {
            let grants = app.store.grants_for_request(req.id.as_str()).await?;
            let until = grants
                .first()
                .and_then(|g| g.expires_at)
                .map(|t| format!("until {}", crate::clock::format_utc(t)))
                .unwrap_or_else(|| "with no end date".into());
            let by = grants
                .first()
                .and_then(|g| g.approved_by.clone())
                .unwrap_or_default();
            format!(
                "Access granted {until} ({}), approved by {by}. grantry removes it when it ends.",
                grants
                    .iter()
                    .map(|g| format!("{}/{} grant {}", g.app, g.entitlement, g.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        RequestState::Failed => {
            "Approved, but granting it failed: IT has been told and will follow up.".into()
        }
        RequestState::Cancelled => "Cancelled by the requester.".into(),
        RequestState::TimedOut => "No approver decided in time: the request was closed.".into(),
        RequestState::Expired => "The access expired and was removed.".into(),
        RequestState::Revoked => "The access was revoked and removed.".into(),
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_resolve_when_access_is_active_or_the_request_ends() {
        assert!(resolves(RequestState::Active));
        assert!(resolves(RequestState::Denied));
        assert!(!resolves(RequestState::PendingApproval));
        assert!(!resolves(RequestState::Failed), "IT still has to act");
    }
}
