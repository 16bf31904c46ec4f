//! What a requester does with their own requests and grants: list them, cancel one, extend one,
//! and the home page that shows them.

use serde_json::json;

use super::intake::{self, IntakeReply, Submission};
use super::FlowError;
use crate::chat::command::{DurationSpec, RequestText};
use crate::chat::{escape, time_left, HomeGrant, HomeRequest, HomeView};
use crate::domain::{AccessDuration, GrantId, Person, RequestId, RequestState};
use crate::store::audit::NewAuditEvent;
use crate::store::Job;
use crate::App;

fn person<'a>(app: &'a App, platform: &str, chat_id: &str) -> Option<&'a Person> {
    app.directory.by_chat_id(platform, chat_id)
}

const UNKNOWN: &str = "I don't know who you are yet: your account is not in grantry's directory. Ask IT to add you to the people file.";

/// The person's home page content.
pub async fn home(app: &App, platform: &str, chat_id: &str) -> Result<Option<HomeView>, FlowError> {
    let Some(p) = person(app, platform, chat_id) else {
        return Ok(None);
    };
    let requests = app
        .store
        .open_requests_of(&p.email, 50)
        .await?
        .into_iter()
        .map(|r| HomeRequest {
            id: r.id.to_string(),
            access: format!("{}/{}", r.app, r.entitlement),
            state: r.state.describe().to_string(),
            created_at_ms: r.created_at_ms,
        })
        .collect();
    let grants = app
        .store
        .active_grants_of(&p.email)
        .await?
        .into_iter()
        .map(|g| HomeGrant {
            id: g.id,
            request_id: g.request_id,
            access: format!("{}/{}", g.app, g.entitlement),
            expires_at_ms: g.expires_at,
        })
        .collect();
    let requestable = app
        .catalog
        .apps
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                a.id.clone(),
                a.entitlements.iter().map(|e| e.id.clone()).collect(),
            )
        })
        .collect();
    Ok(Some(HomeView {
        requests,
        grants,
        requestable,
        now_ms: app.now_ms(),
    }))
}

/// `/access list`: open requests and active grants with time left, as text.
pub async fn list(app: &App, platform: &str, chat_id: &str) -> Result<String, FlowError> {
    let Some(view) = home(app, platform, chat_id).await? else {
        return Ok(UNKNOWN.into());
    };
    let mut out = Vec::new();
    if view.requests.is_empty() && view.grants.is_empty() {
        return Ok("You have no open requests and no access granted through grantry. Ask with `/access <app> <entitlement> for 4h because <reason>`.".into());
    }
    if !view.grants.is_empty() {
        out.push("*Your access*".to_string());
        for g in &view.grants {
            let left = g
                .expires_at_ms
                .map(|t| time_left(view.now_ms, t))
                .unwrap_or_else(|| "permanent".into());
            out.push(format!(
                "• {} — {left} (grant {}, request {})",
                escape(&g.access),
                g.id,
                g.request_id
            ));
        }
    }
    if !view.requests.is_empty() {
        out.push("*Your open requests*".to_string());
        for r in &view.requests {
            out.push(format!("• {} {} — {}", r.id, escape(&r.access), r.state));
        }
    }
    Ok(out.join("\n"))
}

/// `/access cancel <id>`: the requester withdraws a request still waiting for approval.
pub async fn cancel(
    app: &App,
    platform: &str,
    chat_id: &str,
    id_text: &str,
) -> Result<String, FlowError> {
    let Some(id) = RequestId::parse(id_text) else {
        return Ok(format!(
            "`{}` is not a request id (they look like R-7KQ2M9XA). See `/access list`.",
            escape(id_text)
        ));
    };
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    let Some(req) = tx.request(&id).await? else {
        return Ok(format!("There is no request {id}."));
    };
    if req.platform != platform || req.requester_chat_id != chat_id {
        return Ok(format!("Only the person who asked can cancel {id}."));
    }
    if !tx
        .move_request(
            &id,
            RequestState::PendingApproval,
            RequestState::Cancelled,
            now,
        )
        .await?
    {
        return Ok(format!(
            "{id} is {}: there is nothing to cancel.",
            req.state.describe()
        ));
    }
    tx.close_pending_approvals(&id).await?;
    tx.audit(
        now,
        NewAuditEvent {
            actor: &req.requester_email,
            action: "request.cancelled",
            request_id: Some(id.as_str()),
            grant_id: None,
            detail: json!({"by": "requester"}),
        },
    )
    .await?;
    tx.enqueue(
        &Job::UpdateApprovalCards {
            request_id: id.to_string(),
        },
        now,
        app.config.jobs.max_attempts,
    )
    .await?;
    tx.commit().await?;
    Ok(format!(
        "Cancelled {id} ({}/{}). Its approvers' cards now say so.",
        req.app, req.entitlement
    ))
}

/// `/access extend <grant or request id> <duration>`: asks, through policy and the same approvers,
/// for `duration` more on a grant the person holds. Allowed while the time left plus the extra
/// stays within the entitlement's maximum.
pub async fn extend(
    app: &App,
    platform: &'static str,
    chat_id: &str,
    id_text: &str,
    extra: AccessDuration,
    idempotency_key: Option<String>,
) -> Result<IntakeReply, FlowError> {
    let Some(p) = person(app, platform, chat_id) else {
        return Ok(IntakeReply::Invalid(UNKNOWN.into()));
    };
    let grant = if let Some(g) = GrantId::parse(id_text) {
        app.store.grant(&g).await?
    } else if let Some(r) = RequestId::parse(id_text) {
        app.store.grant_for_request(r.as_str()).await?
    } else {
        return Ok(IntakeReply::Invalid(format!(
            "`{}` is neither a grant id (G-…) nor a request id (R-…). See `/access list`.",
            escape(id_text)
        )));
    };
    let Some(grant) = grant.filter(|g| g.subject_email.eq_ignore_ascii_case(&p.email)) else {
        return Ok(IntakeReply::Invalid(format!(
            "You hold no grant {}.",
            escape(id_text)
        )));
    };
    if grant.state != "active" {
        return Ok(IntakeReply::Invalid(format!(
            "Grant {} is {}: ask for new access instead with `/access {} {}`.",
            grant.id, grant.state, grant.app, grant.entitlement
        )));
    }
    let Some(expires) = grant.expires_at else {
        return Ok(IntakeReply::Invalid(format!(
            "Grant {} is permanent: it needs no extension.",
            grant.id
        )));
    };
    let original = app
        .store
        .request(&RequestId::from_stored(grant.request_id.clone()))
        .await?;
    // A bundle's grant is extended as the bundle: every grant of it, through its approvers.
    let (app_id, ent_id) = match &original {
        Some(r) if r.app == crate::domain::BUNDLE_APP => (r.app.clone(), r.entitlement.clone()),
        _ => (grant.app.clone(), grant.entitlement.clone()),
    };
    let ent = app
        .catalog
        .app(&app_id)
        .and_then(|a| a.entitlement(&ent_id));
    if let Some(max) = ent.and_then(|e| e.max_duration) {
        let left = (expires - app.now_ms()).max(0);
        if left + extra.millis() > max.millis() {
            let room = (max.millis() - left) / 60_000;
            return Ok(IntakeReply::Invalid(format!(
                "{}/{} may be held at most {max} at a time and {} is left: ask for at most {} more.",
                app_id,
                ent_id,
                time_left(0, left).trim_end_matches(" left"),
                AccessDuration::from_minutes(room.max(0) as u64).map(|d| d.to_string()).unwrap_or_else(|_| "0m".into())
            )));
        }
    }
    let original = original.map(|r| r.reason).unwrap_or_default();
    intake::submit(
        app,
        Submission {
            platform,
            requester_chat_id: chat_id.to_string(),
            reply_channel: None,
            idempotency_key,
            text: RequestText {
                app: app_id,
                entitlement: ent_id,
                duration: Some(DurationSpec::For(extra)),
                reason: Some(format!("Extension of {} by {extra}: {original}", grant.id)),
            },
            ticket: None,
            subject_email: Some(grant.subject_email.clone()),
            extends: Some(grant.id.clone()),
            confirm_by_dm: false,
            break_glass: false,
            inbound_ticket: None,
        },
    )
    .await
}

/// A person named in a command: `<@U123|name>`, `<@U123>`, or an email.
pub(crate) fn named<'a>(app: &'a App, platform: &str, text: &str) -> Option<&'a Person> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix("<@").and_then(|r| r.strip_suffix('>')) {
        let id = inner.split('|').next().unwrap_or(inner);
        return app.directory.by_chat_id(platform, id);
    }
    app.directory.by_email(t.trim_start_matches("mailto:"))
}

/// `/access delegate @person until YYYY-MM-DD`: new approval requests for the approver go to
/// the delegate until the end of that day (UTC), at most 90 days ahead. Audited.
pub async fn delegate(
    app: &App,
    platform: &str,
    chat_id: &str,
    to: &str,
    until: chrono::NaiveDate,
) -> Result<String, FlowError> {
    let Some(me) = person(app, platform, chat_id) else {
        return Ok(UNKNOWN.into());
    };
    let Some(delegate) = named(app, platform, to) else {
        return Ok(format!(
            "I can't find {} in the directory: mention them (@name) or give their email.",
            escape(to)
        ));
    };
    if delegate.email == me.email || !delegate.is_active() {
        return Ok("Delegate to someone else who is active in the directory.".into());
    }
    let now = app.now_ms();
    let until_ms = until
        .and_hms_opt(23, 59, 59)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0);
    if until_ms <= now || until_ms - now > 90 * 86_400_000 {
        return Ok("Pick a date from today up to 90 days ahead (YYYY-MM-DD).".into());
    }
    let mut tx = app.store.begin().await?;
    tx.set_delegation(&me.email, &delegate.email, until_ms, now)
        .await?;
    tx.audit(
        now,
        NewAuditEvent {
            actor: &me.email,
            action: "delegation.set",
            request_id: None,
            grant_id: None,
            detail: json!({"delegate": delegate.email, "until": until_ms}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(format!(
        "Until {until} (end of day UTC), new approval requests for you go to {}; their cards say they decide on your behalf. `/access delegate off` when you are back.",
        escape(delegate.display_name())
    ))
}

/// `/access delegate off`.
pub async fn end_delegation(app: &App, platform: &str, chat_id: &str) -> Result<String, FlowError> {
    let Some(me) = person(app, platform, chat_id) else {
        return Ok(UNKNOWN.into());
    };
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    if !tx.end_delegation(&me.email).await? {
        return Ok("You had no delegation.".into());
    }
    tx.audit(
        now,
        NewAuditEvent {
            actor: &me.email,
            action: "delegation.ended",
            request_id: None,
            grant_id: None,
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok("Welcome back: new approval requests come to you again.".into())
}

/// The Extend button on an expiry warning: asks for the entitlement's default duration more (or
/// what is left of its maximum), through policy. Returns what to tell the holder.
pub async fn extend_button(
    app: &App,
    platform: &'static str,
    chat_id: &str,
    grant_id: &str,
    idempotency_key: String,
) -> Result<String, FlowError> {
    let grant = match GrantId::parse(grant_id) {
        Some(g) => app.store.grant(&g).await?,
        None => None,
    };
    let Some(g) = grant else {
        return Ok("That grant no longer exists.".to_string());
    };
    let ent = app
        .catalog
        .app(&g.app)
        .and_then(|a| a.entitlement(&g.entitlement));
    let left = g.expires_at.map(|t| (t - app.now_ms()).max(0)).unwrap_or(0);
    let room = ent.and_then(|e| e.max_duration).map(|m| m.millis() - left);
    let want = ent
        .map(|e| e.default_duration.millis())
        .unwrap_or(3_600_000);
    let minutes = room.map_or(want, |r| want.min(r)) / 60_000;
    Ok(match AccessDuration::from_minutes(minutes.max(0) as u64) {
        Err(_) => format!(
            "{}/{} is already at its longest allowed time.",
            g.app, g.entitlement
        ),
        Ok(extra) => extend(
            app,
            platform,
            chat_id,
            g.id.as_str(),
            extra,
            Some(idempotency_key),
        )
        .await?
        .message(),
    })
}
