//! Access ending before its time: a revoke by the holder, an owner or IT, and offboarding a
//! person who left (every grant revoked, every open request cancelled, no new requests).

use serde_json::json;

use super::FlowError;
use crate::chat::escape;
use crate::domain::{GrantId, RequestId, RequestState};
use crate::store::audit::NewAuditEvent;
use crate::store::Job;
use crate::App;

/// Who may revoke a grant: its holder, an owner of its app, or IT.
pub fn may_revoke(app: &App, actor_email: &str, holder: &str, app_id: &str) -> bool {
    actor_email.eq_ignore_ascii_case(holder)
        || app.config.lifecycle.is_it_admin(actor_email)
        || app
            .catalog
            .app(app_id)
            .is_some_and(|a| a.owners.iter().any(|o| o.eq_ignore_ascii_case(actor_email)))
}

/// Queues the revocation of one grant (active → revoking, with its revoke job). The caller has
/// checked who may. Returns what to tell the person.
pub async fn revoke(
    app: &App,
    actor: &str,
    grant_text: &str,
    reason: &str,
) -> Result<String, FlowError> {
    let Some(gid) = GrantId::parse(grant_text) else {
        return Ok(format!(
            "`{}` is not a grant id (they look like G-3FJ8Q2NC). See `/access list`.",
            escape(grant_text)
        ));
    };
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    let Some(g) = tx.claim_grant_for_revoke(&gid).await? else {
        let state = tx.grant(&gid).await?.map(|g| g.state);
        return Ok(match state {
            None => format!("There is no grant {gid}."),
            Some(s) => format!("Grant {gid} is {s}: nothing to revoke."),
        });
    };
    tx.audit(
        now,
        NewAuditEvent {
            actor,
            action: "grant.revoke_requested",
            request_id: Some(&g.request_id),
            grant_id: Some(&g.id),
            detail: json!({"reason": reason}),
        },
    )
    .await?;
    let job = Job::Revoke {
        grant_id: g.id.clone(),
        by: Some(actor.to_string()),
        reason: Some(reason.to_string()),
    };
    tx.enqueue(&job, now, app.config.jobs.max_attempts).await?;
    tx.commit().await?;
    Ok(format!(
        "Revoking {}/{} for {} (grant {gid}). The holder will be told when the app confirms.",
        g.app,
        g.entitlement,
        escape(&g.subject_email)
    ))
}

/// Marks a request that could not be provisioned `failed` (compare-and-set from provisioning),
/// audits it as `actor` with `detail`, and tells the requester "… was approved, but {why}.".
/// Returns whether this call did it.
pub(crate) async fn fail_provisioning(
    tx: &mut crate::store::Tx,
    id: &RequestId,
    actor: &str,
    detail: serde_json::Value,
    why: &str,
    now: i64,
    max_attempts: i64,
) -> Result<bool, crate::store::StoreError> {
    if !tx
        .move_request(id, RequestState::Provisioning, RequestState::Failed, now)
        .await?
    {
        return Ok(false);
    }
    tx.audit(
        now,
        NewAuditEvent {
            actor,
            action: "request.failed",
            request_id: Some(id.as_str()),
            grant_id: None,
            detail,
        },
    )
    .await?;
    if let Some(req) = tx.request(id).await? {
        let job = Job::Notify {
            platform: req.platform.clone(),
            to: req.requester_chat_id.clone(),
            text: format!(
                ":warning: Your request {id} for *{}/{}* was approved, but {why}.",
                req.app, req.entitlement
            ),
            ephemeral_channel: None,
        };
        tx.enqueue(&job, now, max_attempts).await?;
    }
    Ok(true)
}

/// What offboarding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffboardReport {
    pub email: String,
    /// Grants being revoked (their revoke jobs are queued).
    pub revoking: Vec<String>,
    /// Requests cancelled.
    pub cancelled: Vec<String>,
}

impl OffboardReport {
    /// The report in words, for IT.
    pub fn text(&self) -> String {
        format!(
            ":wave: Offboarding {}: revoking {} grant(s) ({}), cancelled {} open request(s) ({}). Failures, if any, follow here.",
            escape(&self.email),
            self.revoking.len(),
            if self.revoking.is_empty() { "none".into() } else { self.revoking.join(", ") },
            self.cancelled.len(),
            if self.cancelled.is_empty() { "none".into() } else { self.cancelled.join(", ") },
        )
    }
}

/// Offboards a person: records that they left, then revokes every active grant and cancels every
/// pending request of theirs in one transaction with their jobs; IT gets the report.
pub async fn offboard(app: &App, email: &str, by: &str) -> Result<OffboardReport, FlowError> {
    let email = email.trim().to_ascii_lowercase();
    let now = app.now_ms();
    let max = app.config.jobs.max_attempts;
    // The mark is committed before the grants are listed: a provisioning that commits its
    // grant meanwhile either is listed here or sees the mark afterwards and revokes its own
    // grant (jobs::handlers::provision), so no grant outlives an offboarding.
    let mut tx = app.store.begin().await?;
    tx.mark_offboarded(&email, by, now).await?;
    tx.commit().await?;
    let grants = app.store.active_grants_of(&email).await?;
    let pending = app.store.pending_requests_for(&email).await?;
    let mut report = OffboardReport {
        email: email.clone(),
        ..Default::default()
    };
    let mut tx = app.store.begin().await?;
    for g in grants {
        let gid = GrantId::from_stored(g.id.clone());
        if tx.claim_grant_for_revoke(&gid).await?.is_some() {
            let job = Job::Revoke {
                grant_id: g.id.clone(),
                by: Some(by.to_string()),
                reason: Some("offboarded".into()),
            };
            tx.enqueue(&job, now, max).await?;
            report.revoking.push(g.id);
        }
    }
    for r in pending {
        if tx
            .move_request(
                &r.id,
                RequestState::PendingApproval,
                RequestState::Cancelled,
                now,
            )
            .await?
        {
            tx.close_pending_approvals(&r.id).await?;
            tx.enqueue(
                &Job::UpdateApprovalCards {
                    request_id: r.id.to_string(),
                },
                now,
                max,
            )
            .await?;
            report.cancelled.push(r.id.to_string());
        }
    }
    tx.audit(now, NewAuditEvent {
        actor: by,
        action: "person.offboarded",
        request_id: None,
        grant_id: None,
        detail: json!({"email": email, "revoking": report.revoking, "cancelled": report.cancelled}),
    })
    .await?;
    if let Some(job) = app.status_notice(report.text()) {
        tx.enqueue(&job, now, max).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// IT's "try again" after a failure: a `failed` request (R-…) goes back to provisioning, a grant
/// whose revoke gave up (G-…, still `revoking`) gets a new revoke job. Audited as `actor`.
pub async fn retry(app: &App, actor: &str, id_text: &str) -> Result<String, FlowError> {
    let now = app.now_ms();
    let max = app.config.jobs.max_attempts;
    if let Some(rid) = RequestId::parse(id_text) {
        let mut tx = app.store.begin().await?;
        if !tx
            .move_request(&rid, RequestState::Failed, RequestState::Provisioning, now)
            .await?
        {
            let state = tx.request(&rid).await?.map(|r| r.state.as_str());
            return Ok(match state {
                None => format!("There is no request {rid}."),
                Some(s) => format!("Request {rid} is {s}, not failed: nothing to retry."),
            });
        }
        tx.audit(
            now,
            NewAuditEvent {
                actor,
                action: "request.retried",
                request_id: Some(rid.as_str()),
                grant_id: None,
                detail: json!({}),
            },
        )
        .await?;
        tx.enqueue(
            &Job::Provision {
                request_id: rid.to_string(),
            },
            now,
            max,
        )
        .await?;
        tx.commit().await?;
        return Ok(format!(
            "Provisioning {rid} again; the requester will be told when it is done."
        ));
    }
    if let Some(gid) = GrantId::parse(id_text) {
        let mut tx = app.store.begin().await?;
        let Some(g) = tx.grant(&gid).await? else {
            return Ok(format!("There is no grant {gid}."));
        };
        if g.state != "revoking" {
            return Ok(format!(
                "Grant {gid} is {}, not stuck revoking: nothing to retry.",
                g.state
            ));
        }
        tx.audit(
            now,
            NewAuditEvent {
                actor,
                action: "grant.revoke_retried",
                request_id: Some(&g.request_id),
                grant_id: Some(&g.id),
                detail: json!({}),
            },
        )
        .await?;
        tx.enqueue(
            &Job::Revoke {
                grant_id: g.id.clone(),
                by: Some(actor.to_string()),
                reason: Some("retried by IT".to_string()),
            },
            now,
            max,
        )
        .await?;
        tx.commit().await?;
        return Ok(format!("Revoking grant {gid} again."));
    }
    Ok(format!(
        "`{}` is neither a request id (R-…) nor a grant id (G-…).",
        escape(id_text)
    ))
}
