//! Slack's endpoints: verify the signature over the raw body, parse, hand the typed input to a
//! flow (which persists it with its jobs in one transaction), ack. Nothing slow happens here:
//! the one Web API call made on this path, `views.open`, runs in a task after the ack because a
//! `trigger_id` lives only 3 seconds (a modal is not accepted work; if it fails the person asks again).

mod commands;
mod modal;
pub mod socket;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::HttpError;
use crate::chat::slack::blocks::{APPROVE, APPROVE_FOR, DENY};
use crate::chat::slack::payload::{self, BlockActions, EventCallback, Inbound};
use crate::chat::slack::signature;
use crate::chat::slack::views::OPEN_MODAL;
use crate::chat::EXTEND_ACTION;
use crate::domain::AccessDuration;
use crate::flow::decide::{self, Choice, Click};
use crate::flow::{fulfilment, requests, reviews};
use crate::store::Job;
use crate::App;

/// What to answer Slack with (as the HTTP response, or a Socket Mode ack's payload).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `200` with a JSON body.
    Json(Value),
    /// `200` with no body.
    Empty,
}

impl Reply {
    fn ephemeral(text: impl Into<String>) -> Self {
        Reply::Json(json!({"response_type": "ephemeral", "text": text.into()}))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(v) => Json(v).into_response(),
            Reply::Empty => ().into_response(),
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /slack/{events,commands,interactions}`.
pub(super) async fn inbound(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Reply, HttpError> {
    if app.chat("slack").is_none() {
        // Slack is not configured (a Teams-only deployment): no secret to check against.
        return Err(HttpError::NotAuthenticated(
            "Slack is not configured".into(),
        ));
    }
    signature::verify(
        app.slack_signing_secret.expose().as_bytes(),
        header(&headers, "x-slack-request-timestamp"),
        header(&headers, "x-slack-signature"),
        &body,
        app.now_ms().div_euclid(1000),
        app.config.slack.max_skew_secs,
    )?;
    let inbound = payload::parse(header(&headers, "content-type"), &body)
        .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    dispatch(&app, inbound, &body).await
}

/// Handles any verified Slack input; shared by the HTTP endpoints and Socket Mode.
pub async fn dispatch(app: &Arc<App>, inbound: Inbound, raw: &[u8]) -> Result<Reply, HttpError> {
    match inbound {
        Inbound::Command(cmd) => Ok(commands::slash_command(app, cmd, raw).await),
        Inbound::BlockActions(actions) => block_actions(app, actions).await,
        Inbound::ViewSubmission(v) => modal::submit(app, v).await,
        Inbound::BlockSuggestion(s) => Ok(modal::suggest(app, &s)),
        Inbound::EventCallback(e) => event(app, e).await,
        Inbound::UrlVerification { challenge } => Ok(Reply::Json(json!({"challenge": challenge}))),
        Inbound::Event(_) | Inbound::OtherInteraction { .. } => Ok(Reply::Empty),
    }
}

async fn event(app: &App, e: EventCallback) -> Result<Reply, HttpError> {
    if let (Some(user), "app_home_opened", Some("home")) =
        (e.user, e.kind.as_str(), e.tab.as_deref())
    {
        let job = Job::PublishHome {
            platform: "slack".into(),
            user,
        };
        app.store
            .enqueue_now(&job, app.now_ms(), app.config.jobs.max_attempts)
            .await
            .map_err(|e| HttpError::Internal(e.to_string()))?;
    }
    Ok(Reply::Empty)
}

/// The Extend button on an expiry warning; the answer comes back ephemerally.
async fn extend_clicked(app: &App, b: &BlockActions, grant_id: &str) -> Result<Reply, HttpError> {
    let key = format!(
        "slack:extend:{}:{}",
        grant_id,
        b.trigger_id.as_deref().unwrap_or("-")
    );
    let text = requests::extend_button(app, "slack", &b.user_id, grant_id, key)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    let job = Job::Notify {
        platform: "slack".into(),
        to: b.user_id.clone(),
        text,
        ephemeral_channel: b.channel_id.clone(),
    };
    app.store
        .enqueue_now(&job, app.now_ms(), app.config.jobs.max_attempts)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    Ok(Reply::Empty)
}

async fn block_actions(app: &Arc<App>, b: BlockActions) -> Result<Reply, HttpError> {
    let Some(action) = b.actions.first() else {
        return Ok(Reply::Empty);
    };
    let value = action.value.clone().unwrap_or_default();
    let (request_id, choice) = match action.action_id.as_str() {
        APPROVE => (value, Choice::Approve),
        APPROVE_FOR => {
            // `<request id>|<duration>`; a forged duration is refused by the flow.
            let (id, d) = value.split_once('|').unwrap_or((value.as_str(), ""));
            match AccessDuration::parse(d) {
                Ok(d) => (id.to_string(), Choice::ApproveFor(d)),
                Err(_) => return Ok(Reply::Empty),
            }
        }
        DENY => (value, Choice::Deny(None)),
        OPEN_MODAL => {
            if let Some(trigger) = &b.trigger_id {
                modal::open(app, trigger, &b.user_id);
            }
            return Ok(Reply::Empty);
        }
        EXTEND_ACTION => return extend_clicked(app, &b, &value).await,
        reviews::KEEP | reviews::REVOKE | fulfilment::DONE | fulfilment::FAILED => {
            let id = action.action_id.as_str();
            let text = if id == fulfilment::DONE || id == fulfilment::FAILED {
                fulfilment::decide(app, "slack", &b.user_id, &value, id == fulfilment::DONE).await
            } else {
                reviews::decide(app, "slack", &b.user_id, &value, id == reviews::KEEP).await
            }
            .map_err(|e| HttpError::Internal(e.to_string()))?;
            let job = Job::Notify {
                platform: "slack".into(),
                to: b.user_id.clone(),
                text,
                ephemeral_channel: b.channel_id.clone(),
            };
            app.store
                .enqueue_now(&job, app.now_ms(), app.config.jobs.max_attempts)
                .await
                .map_err(|e| HttpError::Internal(e.to_string()))?;
            return Ok(Reply::Empty);
        }
        _ => return Ok(Reply::Empty), // another app's or a future action: nothing to do
    };
    let click = Click {
        platform: "slack",
        clicker_chat_id: b.user_id,
        request_id,
        choice,
        channel: b.channel_id,
    };
    let internal = |e: crate::flow::FlowError| HttpError::Internal(e.to_string());
    if matches!(click.choice, Choice::Deny(None)) {
        // Deny asks why first; a click that could not succeed is refused (and audited) now.
        if let Some(trigger) = b.trigger_id.as_deref() {
            if decide::precheck(app, &click)
                .await
                .map_err(internal)?
                .is_none()
            {
                modal::open_deny(app, trigger, &click.request_id);
            }
            return Ok(Reply::Empty);
        }
    }
    decide::decide(app, click).await.map_err(internal)?;
    Ok(Reply::Empty)
}
