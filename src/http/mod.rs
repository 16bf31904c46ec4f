//! The HTTP surface: Slack's endpoints (verify, parse, persist, ack), health and readiness, and
//! the admin pages (`admin/`).

pub mod admin;
mod commands;
mod desk_hooks;
mod error;
mod health;
mod hooks;
mod request_log;
pub mod scim_inbound;
pub mod slack;
mod teams;

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
    let mut routes = Router::new()
        .route("/slack/events", post(slack::inbound))
        .route("/slack/commands", post(slack::inbound))
        .route("/slack/interactions", post(slack::inbound))
        .route("/teams/messages", post(teams::messages))
        .route("/hooks/offboard", post(hooks::offboard))
        .route("/hooks/servicedesk/{name}", post(desk_hooks::inbound))
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim_inbound::service_provider_config),
        )
        .route(
            "/scim/v2/Users",
            get(scim_inbound::list).post(scim_inbound::create),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(scim_inbound::get_user)
                .put(scim_inbound::replace)
                .patch(scim_inbound::patch)
                .delete(scim_inbound::delete),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    if app.admin.is_some() {
        routes = routes.merge(admin::routes());
    }
    let routes = routes.layer(DefaultBodyLimit::max(limit)).with_state(app);
    request_log::wrap(routes)
}
