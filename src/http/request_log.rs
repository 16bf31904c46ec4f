//! One span per HTTP request, carrying its request id, so every log line a request causes can be
//! found together. The id is the caller's `X-Request-Id` when it is a plain token (an ingress's
//! id), else a new UUID; it is echoed in the response. Only method, path, status and latency are
//! logged: never bodies, headers or query strings (they may carry user text or secrets).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

const HEADER: &str = "x-request-id";

/// Whether a caller's request id is safe to log and echo: 1–128 of `[A-Za-z0-9._:-]`.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Drops an unusable `X-Request-Id` so a fresh one is made.
async fn drop_unusable_id(mut req: Request) -> Request {
    if req.headers().get(HEADER).is_some_and(|v| !acceptable(v)) {
        req.headers_mut().remove(HEADER);
    }
    req
}

fn span_for(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

/// Wraps every route: sanitise or make the id, open the request's span, echo the id.
pub(super) fn wrap(router: Router) -> Router {
    // The last layer added runs first.
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span_for)
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // The response line has the status; 500s are logged with their cause by HttpError.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tokens_are_kept() {
        assert!(acceptable(&HeaderValue::from_static("req-7f3a.9:1_x")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("a b")));
        assert!(!acceptable(&HeaderValue::from_static("id\"},{\"x")));
        assert!(!acceptable(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
    }
}
