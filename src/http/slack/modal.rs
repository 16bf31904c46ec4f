//! The request modal: open it, serve its menus' options as people type, and validate what is
//! submitted, answering bad fields inline (`response_action: errors`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::{HttpError, Reply};
use crate::chat::command::{DurationSpec, RequestText};
use crate::chat::slack::payload::{input_value, BlockSuggestion, ViewSubmission};
use crate::chat::slack::views::{self, field, DENY_CALLBACK, PERMANENT, REQUEST_CALLBACK};
use crate::domain::AccessDuration;
use crate::flow::decide::{self, Choice, Click};
use crate::flow::intake::{self, IntakeReply, Submission};
use crate::App;

/// Opens the modal for `user` after the ack (the trigger id is valid for 3 seconds).
pub(super) fn open(app: &Arc<App>, trigger_id: &str, user: &str) {
    let Some(me) = app.directory.by_chat_id("slack", user) else {
        return;
    };
    let mut subjects = vec![(me.email.clone(), "Myself".to_string())];
    for r in app.directory.reports_of(&me.email) {
        subjects.push((
            r.email.clone(),
            format!("{} (reports to you)", r.display_name()),
        ));
    }
    let view = views::request_modal(&subjects, app.config.requests.min_reason_chars);
    let (app, trigger) = (app.clone(), trigger_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = app.slack.views_open(&trigger, &view).await {
            tracing::warn!(error = %e, "could not open the request modal");
        }
    });
}

/// Opens the deny-reason modal for an approver who clicked Deny.
pub(super) fn open_deny(app: &Arc<App>, trigger_id: &str, request_id: &str) {
    let view = views::deny_modal(request_id, app.config.approvals.deny_reason_required);
    let (app, trigger) = (app.clone(), trigger_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = app.slack.views_open(&trigger, &view).await {
            tracing::warn!(error = %e, "could not open the deny modal");
        }
    });
}

/// The deny-reason modal was submitted: deny, with the reason, if the approver still may.
async fn submit_deny(app: &App, v: ViewSubmission) -> Result<Reply, HttpError> {
    let reason = v.value(field::REASON);
    if reason.is_none() && app.config.approvals.deny_reason_required {
        let msg = "Say why, so the requester knows what to change.".to_string();
        return Ok(errors(BTreeMap::from([(field::REASON, msg)])));
    }
    if let Some(problem) = reason.as_deref().and_then(crate::domain::reason_problem) {
        return Ok(errors(BTreeMap::from([(field::REASON, problem)])));
    }
    let click = Click {
        platform: "slack",
        clicker_chat_id: v.user_id,
        request_id: v.private_metadata,
        choice: Choice::Deny(reason),
        channel: None,
    };
    decide::decide(app, click)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    Ok(Reply::Empty)
}

/// Options for the modal's menus, from the catalog in memory.
pub(super) fn suggest(app: &App, s: &BlockSuggestion) -> Reply {
    let chosen = |id: &str| input_value(&s.values, id);
    Reply::Json(match s.action_id.as_str() {
        field::APP => views::app_options(&app.catalog, &s.query),
        field::ENTITLEMENT => {
            views::entitlement_options(&app.catalog, chosen(field::APP).as_deref(), &s.query)
        }
        field::DURATION => views::duration_options(
            &app.catalog,
            chosen(field::APP).as_deref(),
            chosen(field::ENTITLEMENT).as_deref(),
        ),
        _ => json!({"options": []}),
    })
}

fn errors(map: BTreeMap<&'static str, String>) -> Reply {
    Reply::Json(json!({"response_action": "errors", "errors": map}))
}

/// Validates a submitted modal; files the request when every field is right.
pub(super) async fn submit(app: &App, v: ViewSubmission) -> Result<Reply, HttpError> {
    if v.callback_id == DENY_CALLBACK {
        return submit_deny(app, v).await;
    }
    if v.callback_id != REQUEST_CALLBACK {
        return Ok(Reply::Empty);
    }
    let mut bad = BTreeMap::new();
    let app_id = v.value(field::APP);
    let ent_id = v.value(field::ENTITLEMENT);
    let catalog_app = app_id.as_deref().and_then(|a| app.catalog.app(a));
    let ent = catalog_app.and_then(|a| ent_id.as_deref().and_then(|e| a.entitlement(e)));
    if catalog_app.is_none() {
        bad.insert(field::APP, "Choose an app from the list.".to_string());
    } else if ent.is_none() {
        bad.insert(
            field::ENTITLEMENT,
            "Choose one of this app's access levels from the list.".to_string(),
        );
    }
    let duration = match (v.value(field::DURATION).as_deref(), ent) {
        (None, _) => {
            bad.insert(field::DURATION, "Choose how long you need it.".to_string());
            None
        }
        (Some(PERMANENT), Some(e)) if e.allow_permanent => Some(DurationSpec::Permanent),
        (Some(d), Some(e)) => match AccessDuration::parse(d) {
            Ok(d) if e.duration_choices().contains(&Some(d)) => Some(DurationSpec::For(d)),
            _ => {
                bad.insert(
                    field::DURATION,
                    "Choose one of the durations offered for this access.".to_string(),
                );
                None
            }
        },
        (Some(_), None) => None,
    };
    let min = app.config.requests.min_reason_chars;
    let reason = v.value(field::REASON).unwrap_or_default();
    if reason.chars().count() < min {
        bad.insert(
            field::REASON,
            format!("Say why in at least {min} characters: what will you do with this access?"),
        );
    } else if let Some(problem) = crate::domain::reason_problem(&reason) {
        bad.insert(field::REASON, problem);
    }
    if let Some(problem) = v
        .value(field::TICKET)
        .as_deref()
        .and_then(crate::domain::ticket_problem)
    {
        bad.insert(field::TICKET, problem);
    }
    if !bad.is_empty() {
        return Ok(errors(bad));
    }
    let (Some(catalog_app), Some(ent)) = (catalog_app, ent) else {
        return Ok(Reply::Empty);
    };
    let submission = Submission {
        platform: "slack",
        requester_chat_id: v.user_id.clone(),
        reply_channel: None,
        idempotency_key: Some(format!(
            "slack:{}:view:{}",
            v.team_id.as_deref().unwrap_or("-"),
            v.view_id
        )),
        text: RequestText {
            app: catalog_app.id.clone(),
            entitlement: ent.id.clone(),
            duration,
            reason: Some(reason),
        },
        ticket: v.value(field::TICKET),
        subject_email: v.value(field::SUBJECT),
        extends: None,
        confirm_by_dm: true,
        break_glass: false,
        inbound_ticket: None,
    };
    match intake::submit(app, submission)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?
    {
        IntakeReply::Invalid(msg) => {
            let key = if msg.contains("report") {
                field::SUBJECT
            } else {
                field::APP
            };
            Ok(errors(BTreeMap::from([(key, msg)])))
        }
        // Filed (or filed before): close the modal; the DM says what happens next.
        _ => Ok(Reply::Empty),
    }
}
