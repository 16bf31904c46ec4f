//! The HTTP surface: Slack's endpoints (verify, parse, persist, ack), health and readiness.

mod error;
mod health;
mod hooks;
mod request_log;
pub mod slack;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::HttpError;

use crate::App;

/// Every route. Slack may be pointed at any of the three Slack paths: each reads every kind of
/// Slack body (slash command, interaction, event) by its shape.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.server.max_body_bytes;
    let routes = Router::new()
        .route("/slack/events", post(slack::inbound))
        .route("/slack/commands", post(slack::inbound))
        .route("/slack/interactions", post(slack::inbound))
        .route("/hooks/offboard", post(hooks::offboard))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    request_log::wrap(routes)
}
