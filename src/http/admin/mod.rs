//! The admin pages under `/admin`: the ledger of requests and grants with filters, one request's
//! whole history with its audit events, charts of volume and decision time, and the audit export.
//! Server-rendered HTML with a little inline CSS and no JavaScript; filters are plain GET forms,
//! so every view is a shareable URL. Behind sign-in (`auth.rs`). docs/admin.md.

mod auth;
mod charts;
mod html;
pub mod oidc;
mod pages;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::config::AdminConfig;
use crate::{App, StartError};

pub use auth::Viewer;

/// How people prove who they are.
pub enum Mode {
    /// grantry signs them in with the identity provider.
    Oidc(Box<oidc::OidcClient>),
    /// A reverse proxy names them in this header.
    Header(HeaderName),
}

/// The admin pages' state: how people sign in and the key that signs their sessions.
pub struct Admin {
    pub mode: Mode,
    /// Signs session cookies (OIDC only).
    pub signer: Option<session::CookieSigner>,
}

impl Admin {
    /// Built from `[admin]`; `None` when the pages are off. Secrets are read where the config says.
    pub fn from_config(c: &AdminConfig) -> Result<Option<Admin>, StartError> {
        if !c.enabled {
            return Ok(None);
        }
        c.check()?;
        if c.auth == "header" {
            let name = HeaderName::from_bytes(c.header.trim().as_bytes()).map_err(|_| {
                StartError::Config(crate::config::ConfigError::Parse {
                    path: "[admin]".into(),
                    message: format!("header {:?} is not a valid header name", c.header),
                })
            })?;
            return Ok(Some(Admin {
                mode: Mode::Header(name),
                signer: None,
            }));
        }
        let secret = c
            .client_secret
            .load("admin.client_secret", "GRANTRY_ADMIN_CLIENT_SECRET")?;
        if secret.is_empty() {
            return Err(StartError::MissingSecret(
                "GRANTRY_ADMIN_CLIENT_SECRET",
                "sign people in to the admin pages",
            ));
        }
        let key = c
            .session_secret
            .load("admin.session_secret", "GRANTRY_ADMIN_SESSION_SECRET")?;
        if key.expose().len() < 32 {
            return Err(StartError::MissingSecret(
                "GRANTRY_ADMIN_SESSION_SECRET (at least 32 characters)",
                "sign admin sessions",
            ));
        }
        let client = oidc::OidcClient::new(oidc::OidcSettings {
            issuer: c.issuer.trim().to_string(),
            client_id: c.client_id.clone(),
            client_secret: secret,
            redirect_url: c.redirect_url.clone(),
            timeout: Duration::from_secs(c.timeout_secs),
        });
        Ok(Some(Admin {
            mode: Mode::Oidc(Box::new(client)),
            signer: Some(session::CookieSigner::new(key, c.secure_cookies)),
        }))
    }
}

/// The `/admin` routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin", get(pages::requests))
        .route("/admin/", get(pages::requests))
        .route("/admin/grants", get(pages::grants))
        .route("/admin/requests/{id}", get(pages::request))
        .route("/admin/charts", get(pages::charts))
        .route("/admin/export", get(pages::export_form))
        .route("/admin/export/download", get(pages::export_download))
        .route("/admin/login", get(auth::login))
        .route("/admin/callback", get(auth::callback))
        .route("/admin/logout", post(auth::logout))
        .layer(axum::middleware::map_response(protect))
}

/// Headers on every admin answer: nothing runs but our own markup, nothing is cached, the pages
/// are not framed.
async fn protect(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}
