//! The expiry sweeper: every interval, claims the grants whose time is up and enqueues their
//! revocation in the same transaction. Driven by the stored `expires_at`, so a grant that expired
//! while the process was down is revoked at the first sweep after start.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::domain::{AccessRequest, RequestState};
use crate::store::approvals::NewApproval;
use crate::store::audit::NewAuditEvent;
use crate::store::{Job, StoreError, Tx};
use crate::App;

/// Grants claimed per transaction.
const BATCH: i64 = 500;

/// Sweeps until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(app.config.jobs.sweep_interval_ms.max(10));
    while !*stop.borrow() {
        if let Err(e) = sweep(&app).await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        if let Err(e) = warn_expiring(&app).await {
            tracing::error!(error = %e, "expiry warning sweep failed");
        }
        if let Err(e) = super::reconcile::scheduled(&app).await {
            tracing::error!(error = %e, "scheduled reconciliation failed");
        }
        if let Err(e) = crate::flow::reviews::escalate_overdue(&app).await {
            tracing::error!(error = %e, "access review escalation failed");
        }
        if let Err(e) = sweep_approvals(&app).await {
            tracing::error!(error = %e, "approval reminder sweep failed");
        }
        if let Err(e) = crate::flow::digest::scheduled(&app).await {
            tracing::error!(error = %e, "scheduled digest failed");
        }
        if let Err(e) = crate::flow::tickets::queue_due(&app).await {
            tracing::error!(error = %e, "service-desk ticket sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One sweep: claims every due grant (active → revoking) with its revoke job. Returns how many.
pub async fn sweep(app: &App) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let now = app.now_ms();
        let mut tx = app.store.begin().await?;
        let due = tx.claim_due_grants(now, BATCH).await?;
        let details: Vec<serde_json::Value> = due
            .iter()
            .map(
                |g| json!({"expires_at": g.expires_at, "app": g.app, "entitlement": g.entitlement}),
            )
            .collect();
        let events: Vec<NewAuditEvent<'_>> = due
            .iter()
            .zip(&details)
            .map(|(g, d)| NewAuditEvent {
                actor: "system:expiry",
                action: "grant.expiring",
                request_id: Some(&g.request_id),
                grant_id: Some(&g.id),
                detail: d.clone(),
            })
            .collect();
        tx.audit_many(now, &events).await?;
        let jobs: Vec<Job> = due
            .iter()
            .map(|g| Job::Revoke {
                grant_id: g.id.clone(),
                by: None,
                reason: None,
            })
            .collect();
        tx.enqueue_many(&jobs, now, app.config.jobs.max_attempts)
            .await?;
        tx.commit().await?;
        total += due.len();
        if (due.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Approvals that wait too long: after one SLA (by the entitlement's risk) the pending approvers
/// are reminded; after two, the request escalates to `approvals.escalation_approvers` and IT is
/// told; after `approvals.timeout` it times out and the requester is told. Each happens once per
/// request (a compare-and-set on the request), however many replicas sweep.
pub async fn sweep_approvals(app: &App) -> Result<(), StoreError> {
    let now = app.now_ms();
    let cfg = &app.config.approvals;
    for (req, reminded, escalated) in app.store.pending_requests(1_000).await? {
        let age = now - req.created_at_ms;
        let risk = app
            .catalog
            .app(&req.app)
            .and_then(|a| a.entitlement(&req.entitlement))
            .map(|e| e.risk.to_string())
            .unwrap_or_else(|| "medium".into());
        let sla = cfg.sla_ms(&risk);
        if age >= cfg.timeout_ms() {
            time_out(app, &req, now).await?;
        } else if age >= 2 * sla && escalated.is_none() {
            escalate(app, &req, now).await?;
        } else if age >= sla && reminded.is_none() {
            remind(app, &req, now).await?;
        }
    }
    Ok(())
}

async fn pending_approvers(
    app: &App,
    req: &AccessRequest,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(app
        .store
        .approvals(&req.id)
        .await?
        .into_iter()
        .filter(|a| a.state == "pending")
        .filter_map(|a| a.chat_user_id.map(|u| (a.platform, u)))
        .collect())
}

async fn audit(
    tx: &mut Tx,
    now: i64,
    action: &str,
    req: &AccessRequest,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    tx.audit(
        now,
        NewAuditEvent {
            actor: "system:approvals",
            action,
            request_id: Some(req.id.as_str()),
            grant_id: None,
            detail,
        },
    )
    .await
    .map(|_| ())
}

async fn remind(app: &App, req: &AccessRequest, now: i64) -> Result<(), StoreError> {
    let approvers = pending_approvers(app, req).await?;
    let mut tx = app.store.begin().await?;
    if !tx.mark_reminded(&req.id, now).await? {
        return Ok(());
    }
    for (platform, user) in &approvers {
        let text = format!(
            ":bell: Reminder: {} waits for your decision: *{}/{}* for {} ({}). Your card is in this conversation.",
            req.id,
            req.app,
            req.entitlement,
            crate::chat::escape(&req.requester_email),
            req.duration.map(|d| d.to_string()).unwrap_or_else(|| "permanent".into())
        );
        let job = Job::Notify {
            platform: platform.clone(),
            to: user.clone(),
            text,
            ephemeral_channel: None,
        };
        tx.enqueue(&job, now, app.config.jobs.max_attempts).await?;
    }
    audit(
        &mut tx,
        now,
        "request.reminded",
        req,
        json!({"approvers": approvers.len()}),
    )
    .await?;
    tx.commit().await
}

async fn escalate(app: &App, req: &AccessRequest, now: i64) -> Result<(), StoreError> {
    let existing: Vec<String> = app
        .store
        .approvals(&req.id)
        .await?
        .into_iter()
        .map(|a| a.approver_email)
        .collect();
    let mut tx = app.store.begin().await?;
    if !tx.mark_escalated(&req.id, now).await? {
        return Ok(());
    }
    let mut added = Vec::new();
    for email in &app.config.approvals.escalation_approvers {
        let email = email.to_ascii_lowercase();
        if existing.contains(&email) || email == req.requester_email || email == req.subject_email {
            continue;
        }
        let person = app.directory.by_email(&email);
        if person.is_some_and(|p| !p.is_active()) {
            continue;
        }
        let name = person
            .map(|p| p.display_name().to_string())
            .unwrap_or_else(|| email.clone());
        let chat_id = person.and_then(|p| app.directory.chat_id(&req.platform, p));
        let why = "Escalated: the first approvers did not answer in time";
        let id = tx
            .insert_approval(&NewApproval {
                request_id: &req.id,
                step: 0,
                email: &email,
                name: &name,
                platform: &req.platform,
                chat_user_id: chat_id,
                on_behalf_of: Some(why),
            })
            .await?;
        tx.enqueue(
            &Job::PostApprovalCard { approval_id: id },
            now,
            app.config.jobs.max_attempts,
        )
        .await?;
        added.push(email);
    }
    if app.status_channel().is_some() {
        let text = format!(
            ":alarm_clock: {} (*{}/{}* for {}) has waited twice its approval SLA; escalated to {}.",
            req.id,
            req.app,
            req.entitlement,
            crate::chat::escape(&req.subject_email),
            if added.is_empty() {
                "nobody new (set approvals.escalation_approvers)".to_string()
            } else {
                added.join(", ")
            }
        );
        if let Some(job) = app.status_notice(text) {
            tx.enqueue(&job, now, app.config.jobs.max_attempts).await?;
        }
    }
    audit(
        &mut tx,
        now,
        "request.escalated",
        req,
        json!({"added_approvers": added}),
    )
    .await?;
    tx.commit().await
}

async fn time_out(app: &App, req: &AccessRequest, now: i64) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    if !tx
        .move_request(
            &req.id,
            RequestState::PendingApproval,
            RequestState::TimedOut,
            now,
        )
        .await?
    {
        return Ok(());
    }
    tx.close_pending_approvals(&req.id).await?;
    let max = app.config.jobs.max_attempts;
    tx.enqueue(
        &Job::UpdateApprovalCards {
            request_id: req.id.to_string(),
        },
        now,
        max,
    )
    .await?;
    let text = format!(
        ":hourglass: Your request {} for *{}/{}* timed out: nobody decided in time. Ask again with `/access {} {}` (add a ticket or more context), or talk to the app's owners.",
        req.id, req.app, req.entitlement, req.app, req.entitlement
    );
    let job = Job::Notify {
        platform: req.platform.clone(),
        to: req.requester_chat_id.clone(),
        text,
        ephemeral_channel: None,
    };
    tx.enqueue(&job, now, max).await?;
    audit(
        &mut tx,
        now,
        "request.timed_out",
        req,
        json!({"waited_ms": now - req.created_at_ms}),
    )
    .await?;
    tx.commit().await
}

/// Warns holders before their grants end, once per configured threshold (`lifecycle.warn_before`).
pub async fn warn_expiring(app: &App) -> Result<usize, StoreError> {
    let now = app.now_ms();
    let thresholds = app.config.lifecycle.warn_minutes().unwrap_or_default();
    let Some(&widest) = thresholds.first() else {
        return Ok(0);
    };
    let mut sent = 0;
    for g in app
        .store
        .grants_ending_within(now, widest as i64 * 60_000, 1_000)
        .await?
    {
        let Some(expires) = g.expires_at else {
            continue;
        };
        // Only thresholds shorter than the grant itself (a 4h grant gets no "1 day left"), and
        // the narrowest one reached is sent (a 1h warning supersedes a missed 1d one).
        let lasting = expires - g.granted_at;
        let Some(&due) = thresholds
            .iter()
            .rev()
            .filter(|&&m| (m as i64) * 60_000 < lasting)
            .find(|&&m| expires - now <= m as i64 * 60_000)
        else {
            continue;
        };
        let mut tx = app.store.begin().await?;
        let mut claimed = false;
        for &m in thresholds.iter().filter(|&&m| m >= due) {
            claimed |= tx.claim_warning(&g.id, m as i64, now).await? && m == due;
        }
        if claimed {
            tx.enqueue(
                &Job::WarnExpiry {
                    grant_id: g.id.clone(),
                },
                now,
                app.config.jobs.max_attempts,
            )
            .await?;
            sent += 1;
        }
        tx.commit().await?;
    }
    Ok(sent)
}
