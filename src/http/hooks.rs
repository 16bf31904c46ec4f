//! Inbound hooks from other systems: `POST /hooks/offboard` from the HR system or IdP when a
//! person leaves. Authenticated by a shared secret sent as a bearer token; closed when no
//! secret is configured.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::App;

#[derive(Deserialize)]
pub(super) struct OffboardBody {
    email: String,
    /// Who sent it (e.g. `workday`), for the audit.
    #[serde(default)]
    source: Option<String>,
}

pub(super) fn authorised(app: &App, headers: &HeaderMap) -> bool {
    bearer_is(headers, app.offboard_secret.expose())
}

/// Whether the request carries `Authorization: Bearer <secret>` (never for an empty secret).
pub(super) fn bearer_is(headers: &HeaderMap, secret: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Comparing digests: the time taken says nothing about the secret.
    Sha256::digest(given.as_bytes()) == Sha256::digest(secret.as_bytes())
}

/// `POST /hooks/offboard` `{"email": "…"}`: revokes everything of that person.
pub(super) async fn offboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    if !authorised(&app, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or wrong bearer token"})),
        );
    }
    let Ok(b) = serde_json::from_slice::<OffboardBody>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "body must be JSON {\"email\": \"…\"}"})),
        );
    };
    if !b.email.contains('@') {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "email is not an email address"})),
        );
    }
    let by = format!("hook:{}", b.source.as_deref().unwrap_or("offboard"));
    match crate::flow::lifecycle::offboard(&app, &b.email, &by).await {
        Ok(r) => (
            StatusCode::OK,
            Json(json!({"email": r.email, "revoking": r.revoking, "cancelled": r.cancelled})),
        ),
        Err(e) => {
            tracing::error!(error = %e, "offboarding failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "internal error; nothing was changed"})),
            )
        }
    }
}
