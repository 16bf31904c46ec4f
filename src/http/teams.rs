//! `POST /teams/messages`: Bot Framework activities from Teams. Authenticate the bearer token
//! (nothing is read or stored before it passes), remember where the person is reached, hand the
//! typed input to the same flows Slack uses, and answer: card clicks (`Action.Execute`) are
//! answered in the HTTP response with the updated card or a message, as the Universal Action
//! Model requires; typed commands are answered by a durable job (a Bot Connector message).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{commands, HttpError};
use crate::chat::command::{self, AccessCommand, DurationSpec, RequestText};
use crate::chat::teams::activity::{self, Activity, Kind};
use crate::chat::teams::auth::AuthError;
use crate::chat::teams::cards;
use crate::domain::{AccessDuration, RequestId};
use crate::flow::decide::{self, Choice, Click, DecideReply};
use crate::flow::intake::{self, IntakeReply, Submission};
use crate::flow::{fulfilment, reviews};
use crate::store::Job;
use crate::App;

const PLATFORM: &str = "teams";

/// The invoke answer carrying a card (shown in place of the clicked card).
fn card_answer(card: Value) -> Response {
    Json(json!({"statusCode": 200, "type": cards::CARD_CONTENT_TYPE, "value": card}))
        .into_response()
}

/// The invoke answer carrying a short message.
fn message_answer(text: &str) -> Response {
    Json(
        json!({"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                "value": cards::to_markdown(text)}),
    )
    .into_response()
}

/// `POST /teams/messages`.
pub(super) async fn messages(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let Some(auth) = &app.teams_auth else {
        return Ok((StatusCode::NOT_FOUND, "Teams is not configured").into_response());
    };
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if authorization.is_none() {
        return Err(HttpError::NotAuthenticated("no bearer token".into()));
    }
    // The body names the service URL and channel the token must match; nothing in it is used
    // before the token is verified.
    let activity = activity::parse(&body).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    auth.verify(
        authorization,
        &activity.channel_id,
        &activity.service_url,
        app.now_ms().div_euclid(1000),
    )
    .await
    .map_err(|e| match e {
        AuthError::Unauthorized(why) => HttpError::NotAuthenticated(why),
        AuthError::KeysUnavailable(why) => HttpError::Unavailable(why),
    })?;
    let internal = |e: crate::store::StoreError| HttpError::Internal(e.to_string());
    if activity.conversation_type == "personal" {
        remember(&app, &activity).await.map_err(internal)?;
    }
    let key = activity.from.key().to_string();
    match activity.kind.clone() {
        Kind::CardAction { verb, data } => card_action(&app, &activity, &key, &verb, &data).await,
        Kind::Message {
            value: Some(value), ..
        } => {
            // An `Action.Submit` (older clients): same verbs, answered by a message.
            let verb = value["verb"].as_str().unwrap_or_default().to_string();
            let answer = card_action(&app, &activity, &key, &verb, &value).await?;
            drop(answer);
            Ok(StatusCode::OK.into_response())
        }
        Kind::Message { text, value: None } => {
            typed(&app, &activity, &key, &text).await?;
            Ok(StatusCode::OK.into_response())
        }
        Kind::ConversationUpdate | Kind::Other(_) => Ok(StatusCode::OK.into_response()),
    }
}

/// Remembers where the sender is reached; writes only when it changed (most activities come
/// from a conversation already known, so the common path is one read).
async fn remember(app: &App, a: &Activity) -> Result<(), crate::store::StoreError> {
    let known = app.store.teams_conversation_of(a.from.key()).await?;
    let same = known.is_some_and(|k| {
        k.user_id == a.from.id
            && k.conversation_id == a.conversation_id
            && k.service_url == a.service_url
            && (a.tenant_id.is_none() || k.tenant_id == a.tenant_id)
    });
    if same {
        return Ok(());
    }
    app.store
        .remember_teams_conversation(&crate::store::teams::TeamsConversation {
            user_key: a.from.key().to_string(),
            user_id: a.from.id.clone(),
            conversation_id: a.conversation_id.clone(),
            service_url: a.service_url.clone(),
            tenant_id: a.tenant_id.clone(),
            updated_at: app.now_ms(),
        })
        .await
}

async fn enqueue(app: &App, job: Job) -> Result<(), HttpError> {
    app.store
        .enqueue_now(&job, app.now_ms(), app.config.jobs.max_attempts)
        .await
        .map(|_| ())
        .map_err(|e| HttpError::Internal(e.to_string()))
}

fn tell(to: &str, text: String) -> Job {
    Job::Notify {
        platform: PLATFORM.into(),
        to: to.to_string(),
        text,
        ephemeral_channel: None,
    }
}

/// A typed message: the `/access` language (with or without the word `access`).
async fn typed(app: &Arc<App>, a: &Activity, key: &str, text: &str) -> Result<(), HttpError> {
    let text = activity::command_text(text);
    let answer = match command::parse(&text) {
        Err(e) => e.to_string(),
        Ok(AccessCommand::OpenForm) => {
            if app.directory.by_chat_id(PLATFORM, key).is_none() {
                UNKNOWN_PERSON.to_string()
            } else {
                return enqueue(
                    app,
                    Job::SendRequestForm {
                        platform: PLATFORM.into(),
                        to: key.to_string(),
                    },
                )
                .await;
            }
        }
        Ok(parsed) => {
            // The Bot Connector redelivers an activity with the same id.
            let idem = format!(
                "teams:{}:{}",
                a.conversation_id,
                a.id.as_deref().unwrap_or("-")
            );
            commands::run(app, PLATFORM, key, None, idem, parsed).await
        }
    };
    enqueue(app, tell(key, answer)).await
}

const UNKNOWN_PERSON: &str = "I don't know who you are yet: your account is not in grantry's directory. Ask IT to add you to the people file (teams_id).";

/// A click on one of grantry's cards.
async fn card_action(
    app: &Arc<App>,
    a: &Activity,
    key: &str,
    verb: &str,
    data: &Value,
) -> Result<Response, HttpError> {
    let internal = |e: crate::flow::FlowError| HttpError::Internal(e.to_string());
    let field = |k: &str| data[k].as_str().map(str::trim).unwrap_or("").to_string();
    match verb {
        cards::APPROVE | cards::APPROVE_FOR | cards::DENY => {
            let choice = match verb {
                cards::APPROVE => Choice::Approve,
                cards::APPROVE_FOR => match AccessDuration::parse(&field("duration")) {
                    Ok(d) => Choice::ApproveFor(d),
                    Err(e) => return Ok(message_answer(&e.to_string())),
                },
                _ => {
                    let reason = field("reason");
                    if let Some(problem) = crate::domain::reason_problem(&reason) {
                        return Ok(message_answer(&problem));
                    }
                    Choice::Deny((!reason.is_empty()).then_some(reason))
                }
            };
            let click = Click {
                platform: PLATFORM,
                clicker_chat_id: key.to_string(),
                request_id: field("request_id"),
                choice,
                channel: None,
            };
            if matches!(click.choice, Choice::Deny(None))
                && app.config.approvals.deny_reason_required
            {
                // Refuse now (audited) what could not succeed; otherwise ask for the reason.
                return Ok(match decide::precheck(app, &click).await.map_err(internal)? {
                    Some(refusal) => message_answer(&refusal),
                    None => message_answer(
                        "Say why you deny it in the reason box (the requester reads it), then press Deny again.",
                    ),
                });
            }
            let request_id = click.request_id.clone();
            match decide::decide(app, click).await.map_err(internal)? {
                DecideReply::Refused(text) => Ok(message_answer(&text)),
                _ => current_card(app, &request_id).await,
            }
        }
        cards::REQUEST => submit_form(app, a, key, data).await,
        cards::OPEN_FORM => Ok(card_answer(cards::request_form(
            &app.catalog,
            None,
            &Value::Null,
        ))),
        reviews::KEEP | reviews::REVOKE | fulfilment::DONE | fulfilment::FAILED => {
            let value = field("value");
            let text = if verb == fulfilment::DONE || verb == fulfilment::FAILED {
                fulfilment::decide(app, PLATFORM, key, &value, verb == fulfilment::DONE).await
            } else {
                reviews::decide(app, PLATFORM, key, &value, verb == reviews::KEEP).await
            }
            .map_err(internal)?;
            Ok(message_answer(&text))
        }
        crate::chat::EXTEND_ACTION => {
            let value = field("value");
            let idem = format!("teams:extend:{value}:{}", a.id.as_deref().unwrap_or("-"));
            let text = crate::flow::requests::extend_button(app, PLATFORM, key, &value, idem)
                .await
                .map_err(internal)?;
            Ok(message_answer(&text))
        }
        _ => Ok(message_answer("That button is no longer in use.")),
    }
}

/// The request's card as it stands, for the person who clicked.
async fn current_card(app: &App, request_id: &str) -> Result<Response, HttpError> {
    let internal = |e: crate::store::StoreError| HttpError::Internal(e.to_string());
    let id = RequestId::from_stored(request_id.to_string());
    let Some(req) = app.store.request(&id).await.map_err(internal)? else {
        return Ok(message_answer("That request no longer exists."));
    };
    let card = crate::flow::cards::card_for(app, &req, None)
        .await
        .map_err(internal)?;
    Ok(card_answer(cards::approval_card(&card)))
}

/// The request form's submission: the same checks and words as Slack's modal.
async fn submit_form(
    app: &Arc<App>,
    a: &Activity,
    key: &str,
    data: &Value,
) -> Result<Response, HttpError> {
    let field = |k: &str| data[k].as_str().map(str::trim).unwrap_or("").to_string();
    let again = |error: &str| card_answer(cards::request_form(&app.catalog, Some(error), data));
    if app.directory.by_chat_id(PLATFORM, key).is_none() {
        return Ok(message_answer(UNKNOWN_PERSON));
    }
    let access = field("access");
    let (app_id, ent_id) = access.split_once('/').unwrap_or((access.as_str(), ""));
    let Some(catalog_app) = app.catalog.app(app_id) else {
        return Ok(again("Choose an app from the list."));
    };
    let Some(ent) = catalog_app.entitlement(ent_id) else {
        return Ok(again(
            "Choose one of this app's access levels from the list.",
        ));
    };
    let duration = match field("duration").as_str() {
        "" => None,
        "permanent" if ent.allow_permanent => Some(DurationSpec::Permanent),
        d => match AccessDuration::parse(d) {
            Ok(d) => Some(DurationSpec::For(d)),
            Err(e) => return Ok(again(&e.to_string())),
        },
    };
    let min = app.config.requests.min_reason_chars;
    let reason = field("reason");
    if reason.chars().count() < min {
        return Ok(again(&format!(
            "Say why in at least {min} characters: what will you do with this access?"
        )));
    }
    if let Some(problem) = crate::domain::reason_problem(&reason) {
        return Ok(again(&problem));
    }
    let ticket = Some(field("ticket")).filter(|t| !t.is_empty());
    let submission = Submission {
        platform: PLATFORM,
        requester_chat_id: key.to_string(),
        reply_channel: None,
        idempotency_key: Some(format!(
            "teams:form:{}:{}",
            a.conversation_id,
            a.reply_to_id.as_deref().or(a.id.as_deref()).unwrap_or("-")
        )),
        text: RequestText {
            app: catalog_app.id.clone(),
            entitlement: ent.id.clone(),
            duration,
            reason: Some(reason),
        },
        ticket,
        subject_email: None,
        extends: None,
        confirm_by_dm: false,
        break_glass: false,
        inbound_ticket: None,
    };
    let reply = intake::submit(app, submission)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    Ok(match reply {
        IntakeReply::Invalid(msg) => again(&msg),
        other => card_answer(cards::notice(&other.message())),
    })
}
