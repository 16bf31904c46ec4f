//! One error type for the HTTP layer; each variant says which status it answers.
//! Internal errors are logged and never shown to the caller.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::chat::slack::signature::SignatureError;

/// An HTTP failure.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// 401: the request is not from Slack (bad or missing signature, stale timestamp).
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] SignatureError),
    /// 401: a caller that did not prove who it is (Teams' bearer token); the reason is logged.
    #[error("unauthorized: {0}")]
    NotAuthenticated(String),
    /// 503: we cannot check callers now (e.g. the Bot Framework keys could not be fetched).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 400: the body could not be read; the reason is safe to show.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 500: ours; details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Unauthorized(e) => {
                tracing::warn!(reason = %e, "refused unsigned or badly signed request");
                (StatusCode::UNAUTHORIZED, format!("unauthorized: {e}")).into_response()
            }
            HttpError::NotAuthenticated(reason) => {
                tracing::warn!(%reason, "refused unauthenticated request");
                (StatusCode::UNAUTHORIZED, "unauthorized").into_response()
            }
            HttpError::Unavailable(reason) => {
                tracing::error!(%reason, "cannot authenticate callers now");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response()
            }
            HttpError::BadRequest(reason) => {
                tracing::info!(%reason, "refused malformed request");
                (StatusCode::BAD_REQUEST, format!("bad request: {reason}")).into_response()
            }
            HttpError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}
