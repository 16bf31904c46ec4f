//! Manual fulfilment: a change in an app with no API is made by a person in IT, who confirms it
//! with a button on the task grantry posted. The ledger waits for that confirmation: a grant
//! becomes active, or a revoke final, only then; "Could not do it" fails the change visibly.
//! Who may confirm: IT admins (`lifecycle.it_admins`) and the app's owners; anyone else is told
//! so and the attempt is audited.

use serde_json::json;

use super::FlowError;
use crate::chat::{escape, ActionMessage, Button};
use crate::domain::ids::random_id;
use crate::domain::RequestId;
use crate::store::audit::NewAuditEvent;
use crate::store::fulfilments::Fulfilment;
use crate::store::{Job, StoreError, Tx};
use crate::App;

/// `action_id`s of the task's buttons; the value is the task id.
pub const DONE: &str = "grantry.fulfil_done";
pub const FAILED: &str = "grantry.fulfil_failed";

/// What a new task is about.
pub struct NewTask<'a> {
    /// `grant` or `revoke`.
    pub kind: &'a str,
    pub request_id: &'a str,
    pub grant_id: Option<&'a str>,
    pub app: &'a str,
    pub entitlement: &'a str,
    pub target: &'a str,
    pub subject_email: &'a str,
    pub revoke_by: Option<&'a str>,
    pub revoke_reason: Option<&'a str>,
    /// A grant for one member of a bundle (the request has one task per member).
    pub in_bundle: bool,
}

/// The task key of a change: one task per grant of a request, one per revoke of a grant.
pub fn key(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

/// The task key of granting a request: per request, or per member of a bundle.
pub fn grant_key(request_id: &str, bundle_item: Option<(&str, &str)>) -> String {
    match bundle_item {
        None => key("grant", request_id),
        Some((app, ent)) => key("grant", &format!("{request_id}/{app}/{ent}")),
    }
}

/// Opens the task for a change (once) and queues posting it to `channel`.
pub async fn open(
    app: &App,
    tx: &mut Tx,
    task: &NewTask<'_>,
    channel: &str,
) -> Result<(), StoreError> {
    let now = app.now_ms();
    let id = random_id("F");
    let f = Fulfilment {
        id: id.clone(),
        task_key: if task.kind == "grant" {
            grant_key(
                task.request_id,
                task.in_bundle.then_some((task.app, task.entitlement)),
            )
        } else {
            key("revoke", task.grant_id.unwrap_or(task.request_id))
        },
        kind: task.kind.to_string(),
        request_id: task.request_id.to_string(),
        grant_id: task.grant_id.map(str::to_string),
        app: task.app.to_string(),
        entitlement: task.entitlement.to_string(),
        target: task.target.to_string(),
        subject_email: task.subject_email.to_string(),
        channel: channel.to_string(),
        revoke_by: task.revoke_by.map(str::to_string),
        revoke_reason: task.revoke_reason.map(str::to_string),
        state: "open".into(),
        created_at: now,
        decided_by: None,
        decided_at: None,
        message_channel: None,
        message_ts: None,
    };
    if !tx.insert_fulfilment(&f).await? {
        return Ok(());
    }
    tx.audit(
        now,
        NewAuditEvent {
            actor: "system",
            action: "fulfilment.opened",
            request_id: Some(task.request_id),
            grant_id: task.grant_id,
            detail: json!({"task": id, "kind": task.kind, "target": task.target, "channel": channel}),
        },
    )
    .await?;
    tx.enqueue(
        &Job::PostFulfilmentTask { task_id: id },
        now,
        app.config.jobs.max_attempts,
    )
    .await?;
    Ok(())
}

/// The task as IT sees it.
pub fn card(app: &App, f: &Fulfilment) -> ActionMessage {
    let app_name = app
        .catalog
        .app(&f.app)
        .map(|a| a.name.clone())
        .unwrap_or_else(|| f.app.clone());
    let instructions = app
        .catalog
        .app(&f.app)
        .and_then(|a| app.connectors.get(&a.connector))
        .and_then(|c| c.manual_task())
        .and_then(|t| t.instructions)
        .map(|i| format!("\n{}", escape(&i)))
        .unwrap_or_default();
    let what = if f.kind == "grant" {
        format!(
            "*Give* {} `{}` in *{}* ({}/{})",
            escape(&f.subject_email),
            escape(&f.target),
            escape(&app_name),
            f.app,
            f.entitlement
        )
    } else {
        format!(
            "*Remove* `{}` in *{}* from {} ({}/{}, grant {})",
            escape(&f.target),
            escape(&app_name),
            escape(&f.subject_email),
            f.app,
            f.entitlement,
            f.grant_id.as_deref().unwrap_or("")
        )
    };
    let head = format!(
        ":hammer_and_wrench: *Manual task {}* for request {}: {what}.{instructions}",
        f.id, f.request_id
    );
    let when = f
        .decided_at
        .map(crate::clock::format_utc)
        .unwrap_or_default();
    let by = escape(f.decided_by.as_deref().unwrap_or(""));
    match f.state.as_str() {
        "done" => ActionMessage {
            text: format!("{head}\n:white_check_mark: Done by {by} at {when}."),
            buttons: Vec::new(),
        },
        "failed" => ActionMessage {
            text: format!("{head}\n:x: Could not be done ({by}, {when})."),
            buttons: Vec::new(),
        },
        _ => ActionMessage {
            text: format!("{head}\nPress *Done* once the app shows the change."),
            buttons: vec![
                Button {
                    label: "Done".into(),
                    action_id: DONE.into(),
                    value: f.id.clone(),
                },
                Button {
                    label: "Could not do it".into(),
                    action_id: FAILED.into(),
                    value: f.id.clone(),
                },
            ],
        },
    }
}

/// Someone pressed Done (`done`) or Could not do it. Returns what to tell them.
pub async fn decide(
    app: &App,
    platform: &str,
    chat_id: &str,
    task_id: &str,
    done: bool,
) -> Result<String, FlowError> {
    let Some(me) = app.directory.by_chat_id(platform, chat_id) else {
        return Ok("I don't know who you are yet: ask IT to add you to the people file.".into());
    };
    let Some(f) = app.store.fulfilment(task_id).await? else {
        return Ok("That task does not exist.".into());
    };
    let now = app.now_ms();
    let max = app.config.jobs.max_attempts;
    let may = app.config.lifecycle.is_it_admin(&me.email)
        || app
            .catalog
            .app(&f.app)
            .is_some_and(|a| a.owners.iter().any(|o| o.eq_ignore_ascii_case(&me.email)));
    let mut tx = app.store.begin().await?;
    if !may || !me.is_active() {
        tx.audit(
            now,
            NewAuditEvent {
                actor: &me.email,
                action: "fulfilment.refused",
                request_id: Some(&f.request_id),
                grant_id: f.grant_id.as_deref(),
                detail: json!({"task": f.id, "why": "not_it_or_owner"}),
            },
        )
        .await?;
        tx.commit().await?;
        return Ok(format!(
            "Only IT admins and owners of {} may confirm manual tasks, so nothing changed.",
            f.app
        ));
    }
    let state = if done { "done" } else { "failed" };
    if !tx.decide_fulfilment(&f.id, state, &me.email, now).await? {
        return Ok(format!(
            "Task {} was already closed ({} by {}).",
            f.id,
            f.state,
            f.decided_by.unwrap_or_default()
        ));
    }
    tx.audit(
        now,
        NewAuditEvent {
            actor: &me.email,
            action: if done {
                "fulfilment.done"
            } else {
                "fulfilment.failed"
            },
            request_id: Some(&f.request_id),
            grant_id: f.grant_id.as_deref(),
            detail: json!({"task": f.id, "kind": f.kind, "target": f.target}),
        },
    )
    .await?;
    tx.enqueue(
        &Job::UpdateFulfilmentTask {
            task_id: f.id.clone(),
        },
        now,
        max,
    )
    .await?;
    let said = match (f.kind.as_str(), done) {
        ("grant", true) => {
            // The provision job finds the task done and records the grant.
            tx.enqueue(
                &Job::Provision {
                    request_id: f.request_id.clone(),
                },
                now,
                max,
            )
            .await?;
            format!(
                "Thanks: {} now holds {}/{}.",
                escape(&f.subject_email),
                f.app,
                f.entitlement
            )
        }
        ("grant", false) => {
            let rid = RequestId::from_stored(f.request_id.clone());
            super::lifecycle::fail_provisioning(
                &mut tx,
                &rid,
                &me.email,
                json!({"error": "IT could not make the change by hand", "task": f.id}),
                &format!(
                    "IT could not grant it by hand. {} will follow up",
                    escape(&me.email)
                ),
                now,
                max,
            )
            .await?;
            format!(
                "Noted: request {} is failed; `grantry retry {}` opens the task again.",
                f.request_id, f.request_id
            )
        }
        (_, true) => {
            tx.enqueue(
                &Job::Revoke {
                    grant_id: f.grant_id.clone().unwrap_or_default(),
                    by: f.revoke_by.clone(),
                    reason: f.revoke_reason.clone(),
                },
                now,
                max,
            )
            .await?;
            format!(
                "Thanks: {} no longer holds {}/{}.",
                escape(&f.subject_email),
                f.app,
                f.entitlement
            )
        }
        (_, false) => {
            let gid = f.grant_id.clone().unwrap_or_default();
            tx.audit(
                now,
                NewAuditEvent {
                    actor: &me.email,
                    action: "grant.revoke_failed",
                    request_id: Some(&f.request_id),
                    grant_id: Some(&gid),
                    detail: json!({"error": "IT could not make the change by hand", "task": f.id}),
                },
            )
            .await?;
            format!("Noted: grant {gid} is still held; `grantry retry {gid}` opens the task again.")
        }
    };
    tx.commit().await?;
    Ok(said)
}
