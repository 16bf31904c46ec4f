//! Slack's endpoints: verify the signature over the raw body, parse, hand the typed request to a
//! flow (which persists it with its jobs in one transaction), ack. Nothing slow happens here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::HttpError;
use crate::chat::command::{self, AccessCommand};
use crate::chat::slack::blocks::{APPROVE, DENY};
use crate::chat::slack::payload::{self, BlockActions, Inbound, SlashCommand};
use crate::chat::slack::signature;
use crate::flow::decide::{self, Choice, Click};
use crate::flow::intake::{self, IntakeReply, Submission};
use crate::App;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn ephemeral(text: impl Into<String>) -> Response {
    Json(json!({"response_type": "ephemeral", "text": text.into()})).into_response()
}

/// `POST /slack/{events,commands,interactions}`.
pub(super) async fn inbound(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
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
    match inbound {
        Inbound::Command(cmd) => Ok(slash_command(&app, cmd, &body).await),
        Inbound::BlockActions(actions) => block_actions(&app, actions).await,
        Inbound::UrlVerification { challenge } => {
            Ok(Json(json!({"challenge": challenge})).into_response())
        }
        Inbound::Event(_) | Inbound::OtherInteraction { .. } => Ok(().into_response()),
    }
}

async fn slash_command(app: &App, cmd: SlashCommand, raw: &[u8]) -> Response {
    let parsed = match command::parse(&cmd.text) {
        Ok(AccessCommand::Help) => return ephemeral(command::HELP),
        Ok(AccessCommand::Request(r)) => r,
        Err(e) => return ephemeral(e.to_string()),
    };
    // Slack re-sends the same body (and trigger_id) when it retries.
    let key = match &cmd.trigger_id {
        Some(t) => format!("slack:{}:{t}", cmd.team_id),
        None => format!(
            "slack:{}:body:{}",
            cmd.team_id,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw))
        ),
    };
    let submission = Submission {
        platform: "slack",
        requester_chat_id: cmd.user_id.clone(),
        reply_channel: cmd.channel_id.clone(),
        idempotency_key: Some(key),
        text: parsed,
        ticket: None,
    };
    match intake::submit(app, submission).await {
        Ok(IntakeReply::Routed { id, approvers }) => ephemeral(format!(
            "Request {id} sent to {} for approval. I'll message you when they decide.",
            crate::chat::escape(&join_names(&approvers))
        )),
        Ok(IntakeReply::Denied { id, reason }) => ephemeral(format!(
            ":no_entry: Request {id} denied: {}",
            crate::chat::escape(&reason)
        )),
        Ok(IntakeReply::Duplicate { id, state }) => ephemeral(format!(
            "Request {id} was already received; it is {}.",
            state.describe()
        )),
        Ok(IntakeReply::Invalid(msg)) => ephemeral(msg),
        Err(e) => {
            tracing::error!(error = %e, "could not file a request");
            ephemeral("Something went wrong on our side and nothing was saved. Please try again in a moment.")
        }
    }
}

fn join_names(names: &[String]) -> String {
    match names {
        [] => "the app's owners".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

async fn block_actions(app: &App, b: BlockActions) -> Result<Response, HttpError> {
    let Some(action) = b.actions.first() else {
        return Ok(().into_response());
    };
    let choice = match action.action_id.as_str() {
        APPROVE => Choice::Approve,
        DENY => Choice::Deny,
        _ => return Ok(().into_response()), // another app's or a future action: nothing to do
    };
    let click = Click {
        platform: "slack",
        clicker_chat_id: b.user_id,
        request_id: action.value.clone().unwrap_or_default(),
        choice,
        channel: b.channel_id,
    };
    decide::decide(app, click)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    Ok(().into_response())
}
