//! What each job does. Every handler is idempotent: it checks the stored state first, so a job
//! run twice (a lease that ran out, a crash after the effect but before the commit) changes
//! things once.

use serde_json::json;

use super::JobError;
use crate::chat::MessageRef;
use crate::connectors::{Change, Connector};
use crate::domain::{GrantId, RequestId, RequestState};
use crate::flow::cards::card_for;
use crate::flow::fulfilment::NewTask;
use crate::store::audit::NewAuditEvent;
use crate::store::grants::GrantRecord;
use crate::store::{Job, StoreError};
use crate::App;

/// Runs one job.
pub(super) async fn run(app: &App, job: &Job) -> Result<(), JobError> {
    match job {
        Job::PostApprovalCard { approval_id } => post_card(app, *approval_id).await,
        Job::UpdateApprovalCards { request_id } => update_cards(app, request_id).await,
        Job::Provision { request_id } => provision(app, request_id).await,
        Job::Revoke {
            grant_id,
            by,
            reason,
        } => revoke(app, grant_id, by.as_deref(), reason.as_deref()).await,
        Job::WarnExpiry { grant_id } => warn_expiry(app, grant_id).await,
        Job::PostReviewCard {
            item_id,
            owner_email,
        } => post_review_card(app, item_id, owner_email).await,
        Job::UpdateReviewCards { item_id } => update_review_cards(app, item_id).await,
        Job::PostFulfilmentTask { task_id } => post_fulfilment_task(app, task_id).await,
        Job::UpdateFulfilmentTask { task_id } => update_fulfilment_task(app, task_id).await,
        Job::BreakGlassReview { request_id } => {
            let id = RequestId::from_stored(request_id.clone());
            let Some(req) = app.store.request(&id).await? else {
                return Ok(());
            };
            crate::flow::reviews::start_for(
                app,
                &req.app,
                "system:break-glass",
                1,
                Some(&req.subject_email),
            )
            .await
            .map_err(flow_err)?
            .map_err(JobError::permanent)?;
            Ok(())
        }
        Job::SyncTicket { request_id } => super::tickets::sync(app, request_id).await,
        Job::SendRequestForm { platform, to } => {
            chat_of(app, platform)?
                .send_request_form(to, &app.catalog)
                .await?;
            Ok(())
        }
        Job::PostDigest {
            platform,
            channel,
            from_ms,
            to_ms,
        } => post_digest(app, platform, channel, *from_ms, *to_ms).await,
        Job::PostDigestChart {
            platform,
            channel,
            from_ms,
            to_ms,
        } => post_digest_chart(app, platform, channel, *from_ms, *to_ms).await,
        Job::PublishHome { platform, user } => {
            let chat = app.chat(platform).ok_or_else(|| {
                JobError::permanent(format!("no chat platform '{platform}' configured"))
            })?;
            let view = crate::flow::requests::home(app, platform, user)
                .await
                .map_err(|e| JobError::Transient {
                    message: e.to_string(),
                    retry_after: None,
                })?;
            if let Some(view) = view {
                chat.publish_home(user, &view).await?;
            }
            Ok(())
        }
        Job::Notify {
            platform,
            to,
            text,
            ephemeral_channel,
        } => {
            let chat = app.chat(platform).ok_or_else(|| {
                JobError::permanent(format!("no chat platform '{platform}' configured"))
            })?;
            match ephemeral_channel {
                Some(ch) => chat.send_ephemeral(ch, to, text).await?,
                None => chat.send_direct(to, text).await?,
            }
            Ok(())
        }
    }
}

/// After the last try: make the failure visible (request `failed`, requester and IT told).
pub(super) async fn on_give_up(app: &App, job: &Job, error: &str) -> Result<(), StoreError> {
    let now = app.now_ms();
    let max = app.config.jobs.max_attempts;
    let mut tx = app.store.begin().await?;
    let it_text = match job {
        Job::Provision { request_id } => {
            let id = RequestId::from_stored(request_id.clone());
            crate::flow::lifecycle::fail_provisioning(
                &mut tx,
                &id,
                "system",
                json!({"error": error}),
                "granting it failed. IT has been told and will follow up",
                now,
                max,
            )
            .await?;
            Some(format!(
                ":rotating_light: Provisioning {request_id} failed and needs a human: {}",
                crate::chat::escape(error)
            ))
        }
        Job::Revoke { grant_id, .. } => {
            tx.audit(
                now,
                NewAuditEvent {
                    actor: "system",
                    action: "grant.revoke_failed",
                    request_id: None,
                    grant_id: Some(grant_id),
                    detail: json!({"error": error}),
                },
            )
            .await?;
            Some(format!(
                ":rotating_light: Revoking grant {grant_id} failed; the access is still held: {}",
                crate::chat::escape(error)
            ))
        }
        Job::PostApprovalCard { approval_id } => Some(format!(
            ":warning: Could not send approval card #{approval_id}: {}",
            crate::chat::escape(error)
        )),
        // A message Slack refused for good (a bad token, a missing channel): IT must know, once;
        // a failure to post to the status channel itself is only logged.
        Job::Notify { to, .. } if Some(to.as_str()) == app.status_channel().map(|(_, c)| c) => None,
        Job::SyncTicket { request_id } => {
            tx.set_ticket_sync_failed(request_id, now).await?;
            Some(format!(
            ":warning: The service-desk ticket of {request_id} could not be written (access governance went on without it): {}",
            crate::chat::escape(error)
        ))
        }
        // The digest goes to the status channel itself: telling it there would fail the same way.
        Job::PostDigest { .. } | Job::PostDigestChart { .. } => None,
        Job::UpdateApprovalCards { .. }
        | Job::Notify { .. }
        | Job::PublishHome { .. }
        | Job::SendRequestForm { .. }
        | Job::BreakGlassReview { .. }
        | Job::WarnExpiry { .. }
        | Job::PostReviewCard { .. }
        | Job::UpdateReviewCards { .. }
        | Job::PostFulfilmentTask { .. }
        | Job::UpdateFulfilmentTask { .. } => Some(format!(
            ":warning: Slack refused a message from grantry and it was given up: {}. Check the bot token, its scopes and the channel.",
            crate::chat::escape(error)
        )),
    };
    if let Some(job) = it_text.and_then(|text| app.status_notice(text)) {
        tx.enqueue(&job, now, max).await?;
    }
    tx.commit().await
}

fn chat_of<'a>(
    app: &'a App,
    platform: &str,
) -> Result<&'a std::sync::Arc<dyn crate::chat::ChatPlatform>, JobError> {
    app.chat(platform)
        .ok_or_else(|| JobError::permanent(format!("no chat platform '{platform}' configured")))
}

async fn post_digest(
    app: &App,
    platform: &str,
    channel: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<(), JobError> {
    let chat = chat_of(app, platform)?;
    let digest = crate::flow::digest::compute(app, from_ms, to_ms)
        .await
        .map_err(flow_err)?;
    chat.post_digest(channel, &digest).await?;
    // The chart is its own job: a retry of either never posts the other twice.
    let job = Job::PostDigestChart {
        platform: platform.to_string(),
        channel: channel.to_string(),
        from_ms,
        to_ms,
    };
    app.store
        .enqueue_now(&job, app.now_ms(), app.config.jobs.max_attempts)
        .await?;
    Ok(())
}

async fn post_digest_chart(
    app: &App,
    platform: &str,
    channel: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<(), JobError> {
    let chat = chat_of(app, platform)?;
    let digest = crate::flow::digest::compute(app, from_ms, to_ms)
        .await
        .map_err(flow_err)?;
    let png =
        crate::chat::chart::render(&digest.days).map_err(|e| JobError::permanent(e.to_string()))?;
    let day = chrono::DateTime::from_timestamp_millis(to_ms)
        .map(|t| {
            t.with_timezone(&digest.timezone)
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap_or_else(|| to_ms.to_string());
    let image = crate::chat::Image {
        filename: format!("grantry-digest-{day}.png"),
        title: format!("Access requests and time to decision, to {day}"),
        alt_text: digest.chart_caption(),
        png,
    };
    chat.post_image(channel, &image).await?;
    Ok(())
}

async fn post_card(app: &App, approval_id: i64) -> Result<(), JobError> {
    let Some(approval) = app.store.approval(approval_id).await? else {
        return Ok(());
    };
    if approval.message_ts.is_some() || approval.state != "pending" {
        return Ok(());
    }
    let id = RequestId::from_stored(approval.request_id.clone());
    let Some(req) = app.store.request(&id).await? else {
        return Ok(());
    };
    if !req.state.is_open() {
        return Ok(());
    }
    let chat = app.chat(&approval.platform).ok_or_else(|| {
        JobError::permanent(format!(
            "no chat platform '{}' configured",
            approval.platform
        ))
    })?;
    let user = match &approval.chat_user_id {
        Some(u) => u.clone(),
        None => chat
            .find_user_by_email(&approval.approver_email)
            .await?
            .ok_or_else(|| {
                JobError::permanent(format!(
                    "approver {} has no {} account with that email",
                    approval.approver_email, approval.platform
                ))
            })?,
    };
    if user == req.requester_chat_id {
        return Ok(()); // never ask requesters to approve themselves
    }
    let card = card_for(app, &req, Some(&approval)).await?;
    let msg = chat.post_card(&user, &card).await?;
    let mut tx = app.store.begin().await?;
    tx.set_approval_message(approval_id, &user, &msg.channel, &msg.ts)
        .await?;
    // Decided while we were posting: make sure this card shows it too.
    if let Some(now_req) = tx.request(&id).await? {
        if !now_req.state.is_open() {
            tx.enqueue(
                &Job::UpdateApprovalCards {
                    request_id: id.to_string(),
                },
                app.now_ms(),
                app.config.jobs.max_attempts,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn update_cards(app: &App, request_id: &str) -> Result<(), JobError> {
    let id = RequestId::from_stored(request_id.to_string());
    let Some(req) = app.store.request(&id).await? else {
        return Ok(());
    };
    let mut retry: Option<JobError> = None;
    for a in app.store.approvals(&id).await? {
        let card = card_for(app, &req, Some(&a)).await?;
        let (Some(channel), Some(ts)) = (a.channel_id, a.message_ts) else {
            continue;
        };
        let Some(chat) = app.chat(&a.platform) else {
            continue;
        };
        match chat.update_card(&MessageRef { channel, ts }, &card).await {
            Ok(()) => {}
            Err(crate::chat::ChatError::Permanent { message }) => {
                tracing::warn!(request = request_id, approval = a.id, error = %message, "card could not be updated");
            }
            Err(e) => retry = Some(e.into()),
        }
    }
    match retry {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn provision(app: &App, request_id: &str) -> Result<(), JobError> {
    let id = RequestId::from_stored(request_id.to_string());
    let Some(req) = app.store.request(&id).await? else {
        return Ok(());
    };
    if req.state != RequestState::Provisioning {
        return Ok(());
    }
    let catalog_app = app
        .catalog
        .app(&req.app)
        .ok_or_else(|| JobError::permanent(format!("the catalog no longer has app {}", req.app)))?;
    let ent = catalog_app.entitlement(&req.entitlement).ok_or_else(|| {
        JobError::permanent(format!(
            "the catalog no longer has {}/{}",
            req.app, req.entitlement
        ))
    })?;
    if let Some(p) = app.directory.by_email(&req.subject_email) {
        if !p.is_active() {
            return Err(JobError::permanent(format!(
                "{} is no longer active in the directory",
                p.email
            )));
        }
    }
    if app.store.is_offboarded(&req.subject_email).await? {
        return Err(JobError::permanent(format!(
            "{} was offboarded after this request was approved",
            req.subject_email
        )));
    }
    if let Some(gid) = &req.extends_grant {
        if extend_grant(app, &req, gid).await? {
            return Ok(());
        }
        // The grant ended meanwhile: provision anew below.
    }
    let items = app.catalog.provisioned(catalog_app, ent);
    if items.len() != ent.members.len().max(1) {
        return Err(JobError::permanent(format!(
            "bundle {} names an entitlement the catalog no longer has",
            ent.id
        )));
    }
    let approved_by = app
        .store
        .decisions(&id)
        .await?
        .into_iter()
        .rev()
        .find(|d| {
            (d.kind == "approver" && d.outcome == "approved")
                || (d.kind == "policy" && d.outcome == "auto_approve")
        })
        .map(|d| match d.kind.as_str() {
            "policy" => format!(
                "policy:{}",
                serde_json::from_str::<Vec<String>>(&d.policy_ids)
                    .unwrap_or_default()
                    .join(",")
            ),
            _ => d.actor,
        });
    let mut grants = app.store.grants_for_request(id.as_str()).await?;
    let mut waiting = false;
    // The last grant is recorded in the same transaction that makes the request active.
    let mut open: Option<crate::store::Tx> = None;
    for (item_app, item_ent) in items {
        let held = grants.iter().any(|g| {
            g.app.eq_ignore_ascii_case(&item_app.id)
                && g.entitlement.eq_ignore_ascii_case(&item_ent.id)
        });
        if held {
            continue;
        }
        let item = Item {
            app: item_app,
            ent: item_ent,
            in_bundle: ent.is_bundle(),
        };
        // Never hold the writer across the next app call.
        if let Some(tx) = open.take() {
            tx.commit().await?;
        }
        match provision_item(app, &req, &item, approved_by.as_deref()).await? {
            Provisioned::Recorded(tx, g) => {
                grants.push(g);
                open = Some(tx);
            }
            Provisioned::Existing(g) => grants.push(g),
            // A person makes this change; their Done runs this again.
            Provisioned::Waiting => waiting = true,
        }
    }
    if waiting {
        if let Some(tx) = open.take() {
            tx.commit().await?;
        }
        return Ok(());
    }

    let now = app.now_ms();
    let mut tx = match open {
        Some(tx) => tx,
        None => {
            let mut tx = app.store.begin().await?;
            tx.lock_request(&id).await?;
            tx
        }
    };
    if !tx
        .move_request(&id, RequestState::Provisioning, RequestState::Active, now)
        .await?
    {
        return Ok(());
    }
    if approved_by.as_deref() == Some(&format!("policy:{}", crate::flow::intake::BREAK_GLASS)[..]) {
        let review = Job::BreakGlassReview {
            request_id: id.to_string(),
        };
        tx.enqueue(&review, now, app.config.jobs.max_attempts)
            .await?;
    }
    let until = match grants.first().and_then(|g| g.expires_at) {
        Some(t) => format!("until {}", crate::clock::format_utc(t)),
        None => "with no end date".to_string(),
    };
    let text = if ent.is_bundle() {
        format!(
            ":white_check_mark: Your bundle *{}* is active {until} ({id}): {}. It will be removed automatically, all at once.",
            ent.name,
            grants
                .iter()
                .map(|g| format!("{}/{} (grant {})", g.app, g.entitlement, g.id))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            ":white_check_mark: Your access to *{}/{}* is active {until} ({id}, grant {}). It will be removed automatically.",
            req.app,
            req.entitlement,
            grants.first().map(|g| g.id.as_str()).unwrap_or_default()
        )
    };
    tx.enqueue(
        &Job::Notify {
            platform: req.platform.clone(),
            to: req.requester_chat_id.clone(),
            text,
            ephemeral_channel: None,
        },
        now,
        app.config.jobs.max_attempts,
    )
    .await?;
    tx.commit().await?;
    // Offboarded while this was being provisioned: the offboarding may have listed the grants
    // before these were committed, so take them back (see flow::lifecycle::offboard).
    if app.store.is_offboarded(&req.subject_email).await? {
        let mut tx = app.store.begin().await?;
        for grant in &grants {
            let gid = GrantId::from_stored(grant.id.clone());
            if tx.claim_grant_for_revoke(&gid).await?.is_some() {
                tx.enqueue(
                    &Job::Revoke {
                        grant_id: grant.id.clone(),
                        by: Some("system:offboarding".into()),
                        reason: Some("offboarded".into()),
                    },
                    app.now_ms(),
                    app.config.jobs.max_attempts,
                )
                .await?;
            }
        }
        tx.commit().await?;
    }
    Ok(())
}

/// What granting one entitlement came to.
enum Provisioned {
    /// Granted and recorded in this open transaction (with the request's row locked first).
    Recorded(crate::store::Tx, GrantRecord),
    /// Recorded earlier (a retry, or a lease that ran out).
    Existing(GrantRecord),
    /// A person makes the change (a manual task is open).
    Waiting,
}

/// One entitlement a request provisions (itself, or one member of its bundle).
struct Item<'a> {
    app: &'a crate::domain::App,
    ent: &'a crate::domain::Entitlement,
    in_bundle: bool,
}

/// Grants one entitlement in its app and records the grant in a transaction left open for the
/// caller to finish; or says a person makes the change (a manual task is open).
async fn provision_item(
    app: &App,
    req: &crate::domain::AccessRequest,
    item: &Item<'_>,
    approved_by: Option<&str>,
) -> Result<Provisioned, JobError> {
    let id = &req.id;
    let (catalog_app, ent) = (item.app, item.ent);
    let connector = app.connectors.get(&catalog_app.connector).ok_or_else(|| {
        JobError::permanent(format!(
            "connector '{}' is not configured",
            catalog_app.connector
        ))
    })?;
    let name = catalog_app.connector.as_str();
    let account = observed(
        name,
        "resolve_account",
        connector
            .resolve_account(&crate::connectors::Subject {
                email: &req.subject_email,
                mapped_id: app
                    .directory
                    .by_email(&req.subject_email)
                    .and_then(|p| p.accounts.get(name))
                    .map(String::as_str),
            })
            .await,
    )?;
    let task_key = crate::flow::fulfilment::grant_key(
        id.as_str(),
        item.in_bundle.then_some((&catalog_app.id[..], &ent.id[..])),
    );
    let task = app.store.fulfilment_by_key(&task_key).await?;
    let change = match &task {
        Some(t) if t.state == "done" => Change::Applied,
        Some(t) if t.state == "open" => return Ok(Provisioned::Waiting), // waiting for IT
        Some(t) => {
            reopen_task(app, &t.id).await?; // failed before; IT retried
            return Ok(Provisioned::Waiting);
        }
        None => observed(name, "grant", connector.grant(&account, &ent.target).await)?,
    };
    if change == Change::NeedsPerson {
        let channel = manual_channel(app, connector.as_ref())?;
        let mut tx = app.store.begin().await?;
        let new = NewTask {
            kind: "grant",
            request_id: id.as_str(),
            grant_id: None,
            app: &catalog_app.id,
            entitlement: &ent.id,
            target: &ent.target,
            subject_email: &req.subject_email,
            revoke_by: None,
            revoke_reason: None,
            in_bundle: item.in_bundle,
        };
        crate::flow::fulfilment::open(app, &mut tx, &new, &channel).await?;
        tx.commit().await?;
        return Ok(Provisioned::Waiting);
    }
    let fulfilled_by = task.and_then(|t| t.decided_by);

    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    // Row locks before the audit chain's head (ARCHITECTURE.md): the caller may end the
    // request in this transaction.
    tx.lock_request(id).await?;
    let recorded = tx.grants_of_request(id.as_str()).await?;
    // Another run recorded it meanwhile (a lease that ran out): keep that one.
    if let Some(g) = recorded.iter().find(|g| {
        g.app.eq_ignore_ascii_case(&catalog_app.id) && g.entitlement.eq_ignore_ascii_case(&ent.id)
    }) {
        return Ok(Provisioned::Existing(g.clone()));
    }
    // A bundle's grants share one end, counted from its first grant.
    let start = recorded.iter().map(|g| g.granted_at).min().unwrap_or(now);
    let expires_at = req.duration.map(|d| start + d.millis());
    let grant = GrantRecord {
        id: GrantId::generate().to_string(),
        request_id: id.to_string(),
        subject_email: req.subject_email.clone(),
        app: catalog_app.id.clone(),
        entitlement: ent.id.clone(),
        connector: catalog_app.connector.clone(),
        account_id: account.id.clone(),
        target: ent.target.clone(),
        receipt: json!({"kind": connector.kind(), "change": format!("{change:?}"), "login": account.login, "fulfilled_by": fulfilled_by}).to_string(),
        state: "active".into(),
        approved_by: approved_by.map(str::to_string),
        granted_at: now,
        expires_at,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    };
    tx.insert_grant(&grant).await?;
    tx.audit(
        now,
        NewAuditEvent {
            actor: &format!("connector:{}", catalog_app.connector),
            action: "grant.created",
            request_id: Some(&grant.request_id),
            grant_id: Some(&grant.id),
            detail: json!({
                "subject": grant.subject_email, "app": grant.app, "entitlement": grant.entitlement,
                "target": grant.target, "account": grant.account_id, "approved_by": approved_by,
                "change": format!("{change:?}"), "expires_at": grant.expires_at,
                "bundle": item.in_bundle.then(|| format!("{}/{}", req.app, req.entitlement)),
            }),
        },
    )
    .await?;
    Ok(Provisioned::Recorded(tx, grant))
}

/// An approved extension: moves the grant's end, no call to the app needed. Returns false when
/// the grant is no longer active (then the request is provisioned as new access).
async fn extend_grant(
    app: &App,
    req: &crate::domain::AccessRequest,
    grant_id: &str,
) -> Result<bool, JobError> {
    let gid = GrantId::from_stored(grant_id.to_string());
    let add = req.duration.map(|d| d.millis()).unwrap_or(0);
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    if !tx.extend_grant(&gid, add).await? {
        return Ok(false);
    }
    // A bundle moves every grant's end together.
    if req.app == crate::domain::BUNDLE_APP {
        if let Some(g) = tx.grant(&gid).await? {
            for sibling in tx.grants_of_request(&g.request_id).await? {
                if sibling.id != g.id {
                    tx.extend_grant(&GrantId::from_stored(sibling.id), add)
                        .await?;
                }
            }
        }
    }
    if !tx
        .move_request(
            &req.id,
            RequestState::Provisioning,
            RequestState::Active,
            now,
        )
        .await?
    {
        return Ok(true);
    }
    let expires = tx.grant(&gid).await?.and_then(|g| g.expires_at);
    tx.audit(
        now,
        NewAuditEvent {
            actor: "system",
            action: "grant.extended",
            request_id: Some(req.id.as_str()),
            grant_id: Some(grant_id),
            detail: json!({"by": req.duration.map(|d| d.to_string()), "expires_at": expires}),
        },
    )
    .await?;
    tx.enqueue(&Job::Notify {
        platform: req.platform.clone(),
        to: req.requester_chat_id.clone(),
        text: format!(
            ":white_check_mark: Extended: your access to *{}/{}* (grant {grant_id}) now lasts until {}.",
            req.app,
            req.entitlement,
            expires.map(crate::clock::format_utc).unwrap_or_default()
        ),
        ephemeral_channel: None,
    }, now, app.config.jobs.max_attempts)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn revoke(
    app: &App,
    grant_id: &str,
    by: Option<&str>,
    reason: Option<&str>,
) -> Result<(), JobError> {
    let (asked_by, asked_reason) = (by, reason);
    let expired = by.is_none();
    let by = by.unwrap_or("system:expiry");
    let reason = reason.unwrap_or("expired");
    let gid = GrantId::from_stored(grant_id.to_string());
    let Some(grant) = app.store.grant(&gid).await? else {
        return Ok(());
    };
    if grant.state != "revoking" {
        return Ok(());
    }
    let connector = app.connectors.get(&grant.connector).ok_or_else(|| {
        JobError::permanent(format!("connector '{}' is not configured", grant.connector))
    })?;
    let account = crate::connectors::Account {
        id: grant.account_id.clone(),
        login: None,
    };
    let task = app
        .store
        .fulfilment_by_key(&crate::flow::fulfilment::key("revoke", grant_id))
        .await?;
    let change = match &task {
        Some(t) if t.state == "done" => Change::Applied,
        Some(t) if t.state == "open" => return Ok(()), // waiting for IT
        Some(t) => return reopen_task(app, &t.id).await, // failed before; IT retried
        None => observed(
            &grant.connector,
            "revoke",
            connector.revoke(&account, &grant.target).await,
        )?,
    };
    if change == Change::NeedsPerson {
        let channel = manual_channel(app, connector.as_ref())?;
        let mut tx = app.store.begin().await?;
        let new = NewTask {
            kind: "revoke",
            request_id: &grant.request_id,
            grant_id: Some(grant_id),
            app: &grant.app,
            entitlement: &grant.entitlement,
            target: &grant.target,
            subject_email: &grant.subject_email,
            revoke_by: asked_by,
            revoke_reason: asked_reason,
            in_bundle: false,
        };
        crate::flow::fulfilment::open(app, &mut tx, &new, &channel).await?;
        tx.commit().await?;
        return Ok(());
    }

    let now = app.now_ms();
    let rid = RequestId::from_stored(grant.request_id.clone());
    let mut tx = app.store.begin().await?;
    // A bundle's grants end together: their revokes take turns on the request, so the last one
    // sees the others revoked and ends the request.
    tx.lock_request(&rid).await?;
    if !tx.finish_revoke(&gid, now, by, reason).await? {
        return Ok(());
    }
    let end = if expired {
        RequestState::Expired
    } else {
        RequestState::Revoked
    };
    // A request ends with its last grant (a bundle holds one per member).
    let siblings_left = tx
        .grants_of_request(&grant.request_id)
        .await?
        .iter()
        .any(|g| g.state != "revoked");
    let request_ended = !siblings_left
        && tx
            .move_request(&rid, RequestState::Active, end, now)
            .await?;
    tx.expire_extensions(grant_id, now).await?;
    tx.audit(
        now,
        NewAuditEvent {
            actor: by,
            action: "grant.revoked",
            request_id: Some(&grant.request_id),
            grant_id: Some(grant_id),
            detail: json!({"reason": reason, "connector": grant.connector, "target": grant.target,
                       "account": grant.account_id, "change": format!("{change:?}")}),
        },
    )
    .await?;
    if let Some(req) = tx.request(&rid).await? {
        let bundle = (req.app == crate::domain::BUNDLE_APP).then(|| req.entitlement.clone());
        let text = match (&bundle, expired) {
            // A bundle's holder hears once, when its last grant is gone.
            (Some(_), true) if !request_ended => None,
            (Some(b), true) => Some(format!(
                ":hourglass: Your bundle *{b}* ({}) has expired: every access it gave was removed. Need it again? `/access {} {b}`.",
                grant.request_id,
                crate::domain::BUNDLE_APP
            )),
            (None, true) => Some(format!(
                ":hourglass: Your access to *{}/{}* ({}) has expired and was removed. Need more time? Ask again with `/access {} {}`.",
                grant.app, grant.entitlement, grant.request_id, grant.app, grant.entitlement
            )),
            (_, false) => Some(format!(
                ":lock: Your access to *{}/{}* (grant {grant_id}) was removed by {}: {}.",
                grant.app, grant.entitlement, crate::chat::escape(by), crate::chat::escape(reason)
            )),
        };
        if let Some(text) = text {
            tx.enqueue(
                &Job::Notify {
                    platform: req.platform.clone(),
                    to: req.requester_chat_id.clone(),
                    text,
                    ephemeral_channel: None,
                },
                now,
                app.config.jobs.max_attempts,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Tells a grant's holder it ends soon, with an Extend button.
async fn warn_expiry(app: &App, grant_id: &str) -> Result<(), JobError> {
    let Some(grant) = app
        .store
        .grant(&GrantId::from_stored(grant_id.to_string()))
        .await?
    else {
        return Ok(());
    };
    let (Some(expires), "active") = (grant.expires_at, grant.state.as_str()) else {
        return Ok(());
    };
    let Some(req) = app
        .store
        .request(&RequestId::from_stored(grant.request_id.clone()))
        .await?
    else {
        return Ok(());
    };
    let chat = app.chat(&req.platform).ok_or_else(|| {
        JobError::permanent(format!("no chat platform '{}' configured", req.platform))
    })?;
    let text = format!(
        ":hourglass_flowing_sand: Your access to *{}/{}* (grant {grant_id}) ends in {}, at {}. Need more? Extend it: it is approved like a request.",
        grant.app,
        grant.entitlement,
        crate::chat::time_left(app.now_ms(), expires).trim_end_matches(" left"),
        crate::clock::format_utc(expires)
    );
    let button = crate::chat::Button {
        label: "Extend".into(),
        action_id: crate::chat::EXTEND_ACTION.into(),
        value: grant_id.to_string(),
    };
    chat.send_direct_with_button(&req.requester_chat_id, &text, &button)
        .await?;
    Ok(())
}

fn flow_err(e: crate::flow::FlowError) -> JobError {
    JobError::Transient {
        message: e.to_string(),
        retry_after: None,
    }
}

async fn post_review_card(app: &App, item_id: &str, owner: &str) -> Result<(), JobError> {
    let Some(item) = app.store.review_item(item_id).await? else {
        return Ok(());
    };
    let Some(card) = app
        .store
        .review_cards(item_id)
        .await?
        .into_iter()
        .find(|c| c.owner_email == owner)
    else {
        return Ok(());
    };
    if card.message_ts.is_some() || item.decision.is_some() {
        return Ok(());
    }
    let chat = app.chat(&card.platform).ok_or_else(|| {
        JobError::permanent(format!("no chat platform '{}' configured", card.platform))
    })?;
    let user = match card.chat_user_id {
        Some(u) => u,
        None => chat.find_user_by_email(owner).await?.ok_or_else(|| {
            JobError::permanent(format!("reviewer {owner} has no {} account", card.platform))
        })?,
    };
    let msg = crate::flow::reviews::card(app, &item)
        .await
        .map_err(flow_err)?;
    let at = chat.post_action_message(&user, &msg).await?;
    let mut tx = app.store.begin().await?;
    tx.set_review_card_message(item_id, owner, &user, &at.channel, &at.ts)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn update_review_cards(app: &App, item_id: &str) -> Result<(), JobError> {
    let Some(item) = app.store.review_item(item_id).await? else {
        return Ok(());
    };
    let msg = crate::flow::reviews::card(app, &item)
        .await
        .map_err(flow_err)?;
    for c in app.store.review_cards(item_id).await? {
        let (Some(channel), Some(ts), Some(chat)) =
            (c.channel_id, c.message_ts, app.chat(&c.platform))
        else {
            continue;
        };
        chat.update_action_message(&MessageRef { channel, ts }, &msg)
            .await?;
    }
    Ok(())
}

/// Where a manual connector's tasks go: its `channel`, else the status channel.
fn manual_channel(app: &App, connector: &dyn Connector) -> Result<String, JobError> {
    connector
        .manual_task()
        .and_then(|t| t.channel)
        .or_else(|| app.config.slack.status_channel.clone())
        .ok_or_else(|| {
            JobError::permanent(
                "a manual connector needs `channel` (or slack.status_channel) to post its tasks to",
            )
        })
}

/// A task IT could not do, retried: open it again and post it anew.
async fn reopen_task(app: &App, task_id: &str) -> Result<(), JobError> {
    let mut tx = app.store.begin().await?;
    if tx.reopen_fulfilment(task_id).await? {
        tx.enqueue(
            &Job::PostFulfilmentTask {
                task_id: task_id.to_string(),
            },
            app.now_ms(),
            app.config.jobs.max_attempts,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn post_fulfilment_task(app: &App, task_id: &str) -> Result<(), JobError> {
    let Some(f) = app.store.fulfilment(task_id).await? else {
        return Ok(());
    };
    if f.message_ts.is_some() || f.state != "open" {
        return Ok(());
    }
    let chat = app
        .chat("slack")
        .ok_or_else(|| JobError::permanent("no chat platform 'slack' configured"))?;
    let at = chat
        .post_action_message(&f.channel, &crate::flow::fulfilment::card(app, &f))
        .await?;
    let mut tx = app.store.begin().await?;
    tx.set_fulfilment_message(task_id, &at.channel, &at.ts)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn update_fulfilment_task(app: &App, task_id: &str) -> Result<(), JobError> {
    let Some(f) = app.store.fulfilment(task_id).await? else {
        return Ok(());
    };
    let (Some(channel), Some(ts), Some(chat)) = (
        f.message_channel.clone(),
        f.message_ts.clone(),
        app.chat("slack"),
    ) else {
        return Ok(());
    };
    chat.update_action_message(
        &MessageRef { channel, ts },
        &crate::flow::fulfilment::card(app, &f),
    )
    .await?;
    Ok(())
}

/// Counts a connector call's outcome for `/metrics`, passing the result through.
fn observed<T>(
    connector: &str,
    operation: &str,
    r: Result<T, crate::connectors::ConnectorError>,
) -> Result<T, crate::connectors::ConnectorError> {
    let outcome = match &r {
        Ok(_) => "ok",
        Err(crate::connectors::ConnectorError::Transient { .. }) => "transient",
        Err(crate::connectors::ConnectorError::Permanent { .. }) => "permanent",
    };
    crate::metrics::connector_call(connector, operation, outcome);
    r
}
