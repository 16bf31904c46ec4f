//! `POST /hooks/servicedesk/<name>`: a ticket filed in a service desk becomes a request. The
//! desk's webhook sends its own payload (see each desk's file in `servicedesk/`) with the
//! desk's `inbound_secret` as a bearer token; closed when that desk has no secret. The ticket
//! stays the record: grantry writes the outcome back to it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use crate::flow::intake::IntakeReply;
use crate::App;

fn answer(status: StatusCode, body: Value) -> (StatusCode, Json<Value>) {
    (status, Json(body))
}

/// Files the request a desk's ticket asks for; answers with the request id and outcome.
pub(super) async fn inbound(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let Some(entry) = app.service_desks.get(&name) else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": "no such service desk"}),
        );
    };
    let authorised = entry
        .inbound_secret
        .as_ref()
        .is_some_and(|s| super::hooks::bearer_is(&headers, s.expose()));
    if !authorised {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body is not JSON"}),
        );
    };
    let ticket = match entry.desk.parse_inbound(&payload) {
        Ok(t) => t,
        Err(why) => return answer(StatusCode::BAD_REQUEST, json!({"error": why})),
    };
    let key = ticket.ticket.key.clone();
    match crate::flow::tickets::file_inbound(&app, &name, ticket).await {
        Ok(Ok(reply)) => {
            let (id, outcome) = match &reply {
                IntakeReply::Routed { id, .. } => (id.to_string(), "pending_approval"),
                IntakeReply::Denied { id, .. } => (id.to_string(), "denied"),
                IntakeReply::AutoApproved { id, .. } => (id.to_string(), "auto_approved"),
                IntakeReply::Duplicate { id, .. } => (id.to_string(), "duplicate"),
                IntakeReply::Invalid(_) => (String::new(), "invalid"),
            };
            answer(
                StatusCode::OK,
                json!({"request": id, "outcome": outcome, "ticket": key, "message": reply.message()}),
            )
        }
        Ok(Err(why)) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": why, "ticket": key}),
        ),
        Err(e) => {
            tracing::error!(error = %e, desk = %name, "filing a desk's ticket failed");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error; nothing was filed"}),
            )
        }
    }
}
