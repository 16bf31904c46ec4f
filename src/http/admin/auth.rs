//! Who is reading: the guard every admin page passes, and the sign-in routes.
//!
//! `oidc`: a signed session cookie, set at `/admin/callback` after the identity provider's
//! answer is verified; without one the browser is sent to `/admin/login`. `header`: the reverse
//! proxy in front names the person in the configured header; without it the answer is 401.
//! Either way only IT admins (`[lifecycle] it_admins`) and `[admin] viewers` get past: anyone
//! else sees 403.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::html;
use super::oidc::{OidcError, LOGIN_TTL_SECS};
use super::session::{cookie, LoginState, Session, LOGIN_COOKIE, SESSION_COOKIE};
use super::{Admin, Mode};
use crate::App;

const SESSION_LABEL: &str = "session";
const LOGIN_LABEL: &str = "login";

/// The person reading the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub email: String,
    /// `IT admin` or `viewer`.
    pub role: &'static str,
    /// Whether a Sign out button makes sense (OIDC sessions).
    pub can_sign_out: bool,
    /// Whether they may read the pages (false on the 403 page).
    pub allowed: bool,
}

fn role_of(app: &App, email: &str) -> Option<&'static str> {
    if app.config.lifecycle.is_it_admin(email) {
        Some("IT admin")
    } else if app
        .config
        .admin
        .viewers
        .iter()
        .any(|v| v.eq_ignore_ascii_case(email))
    {
        Some("viewer")
    } else {
        None
    }
}

/// Why the guard said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 404: `[admin]` is off.
    NotEnabled,
    /// 401: the proxy named nobody (header mode).
    NoHeader,
    /// 303 to `/admin/login?next=…` (OIDC, no valid session).
    SignIn { next: String },
    /// 403: signed in, but not an IT admin or a viewer.
    Forbidden { email: String, can_sign_out: bool },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotEnabled => html::message(
                StatusCode::NOT_FOUND,
                "Not found",
                None,
                "The admin pages are not enabled.",
            ),
            Refusal::NoHeader => html::message(
                StatusCode::UNAUTHORIZED,
                "Sign-in needed",
                None,
                "These pages are reached through the organisation's sign-in proxy, which did not say who you are.",
            ),
            Refusal::SignIn { next } => {
                let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
                redirect(&format!("/admin/login?{q}"))
            }
            Refusal::Forbidden {
                email,
                can_sign_out,
            } => {
                let v = Viewer {
                    email: email.clone(),
                    role: "no access",
                    can_sign_out,
                    allowed: false,
                };
                html::message(
                    StatusCode::FORBIDDEN,
                    "No access",
                    Some(&v),
                    &format!(
                        "{email} may not read the admin pages. They are for IT admins and the viewers named in grantry's configuration; ask IT if you need them."
                    ),
                )
            }
        }
    }
}

fn admin(app: &App) -> Result<&Admin, Refusal> {
    app.admin.as_ref().ok_or(Refusal::NotEnabled)
}

/// Only paths inside the admin pages are returned to after sign-in.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with("/admin")
        && !next.starts_with("/admin/login")
        && !next.starts_with("/admin/callback")
        && !next.contains('\\')
        && !next.contains("//");
    if ok {
        next.to_string()
    } else {
        "/admin".to_string()
    }
}

fn redirect(to: &str) -> Response {
    let loc = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/admin"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, loc)]).into_response()
}

/// The session in the request's cookies, if it is signed and unexpired.
fn session(admin: &Admin, headers: &HeaderMap, now_secs: i64) -> Option<Session> {
    let signer = admin.signer.as_ref()?;
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let s: Session = signer.open(SESSION_LABEL, cookie(cookies, SESSION_COOKIE)?)?;
    (s.exp > now_secs).then_some(s)
}

/// The guard: the viewer, or why someone may not read the page at `uri`.
pub fn viewer(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Refusal> {
    let admin = admin(app)?;
    let (email, can_sign_out) = match &admin.mode {
        Mode::Header(name) => {
            let email = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
                .ok_or(Refusal::NoHeader)?;
            (email, false)
        }
        Mode::Oidc(_) => match session(admin, headers, app.now_ms() / 1000) {
            Some(s) => (s.email, true),
            None => {
                let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/admin");
                return Err(Refusal::SignIn {
                    next: safe_next(next),
                });
            }
        },
    };
    match role_of(app, &email) {
        Some(role) => Ok(Viewer {
            email,
            role,
            can_sign_out,
            allowed: true,
        }),
        None => {
            tracing::info!(
                path = uri.path(),
                "admin pages refused to someone without access"
            );
            Err(Refusal::Forbidden {
                email,
                can_sign_out,
            })
        }
    }
}

/// `GET /admin/login?next=…`
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Starts an OIDC sign-in: remembers `state`, `nonce` and the PKCE verifier in a signed cookie
/// and sends the browser to the identity provider.
pub async fn login(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>) -> Response {
    let admin = match admin(&app) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let (Mode::Oidc(client), Some(signer)) = (&admin.mode, &admin.signer) else {
        return redirect("/admin");
    };
    let next = safe_next(q.next.as_deref().unwrap_or("/admin"));
    match client.start(&next, app.now_ms() / 1000).await {
        Ok(start) => {
            let sealed = signer.seal(LOGIN_LABEL, &start.login);
            let mut r = redirect(&start.authorize_url);
            if let Ok(v) =
                HeaderValue::from_str(&signer.set_cookie(LOGIN_COOKIE, &sealed, LOGIN_TTL_SECS))
            {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => oidc_failure(e),
    }
}

fn oidc_failure(e: OidcError) -> Response {
    match e {
        OidcError::Unavailable(why) => {
            tracing::error!(reason = %why, "admin sign-in: identity provider unavailable");
            html::message(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                None,
                "The identity provider could not be reached. Try again in a minute.",
            )
        }
        OidcError::Refused(why) => {
            tracing::warn!(reason = %why, "admin sign-in refused");
            html::message(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                None,
                &format!("{why}. Start again from the admin pages."),
            )
        }
    }
}

/// `GET /admin/callback?code=…&state=…` (or `error=…`).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The identity provider's answer: check `state` against the cookie, exchange the code, verify
/// the ID token, then set the session cookie and return to the page asked for.
pub async fn callback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let admin = match admin(&app) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let (Mode::Oidc(client), Some(signer)) = (&admin.mode, &admin.signer) else {
        return redirect("/admin");
    };
    let now = app.now_ms() / 1000;
    if let Some(err) = q.error {
        return oidc_failure(OidcError::Refused(format!(
            "the identity provider answered {}",
            err.chars().take(60).collect::<String>()
        )));
    }
    let login: Option<LoginState> = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| cookie(c, LOGIN_COOKIE))
        .and_then(|c| signer.open(LOGIN_LABEL, c))
        .filter(|l: &LoginState| l.exp > now);
    let Some(login) = login else {
        return oidc_failure(OidcError::Refused(
            "this sign-in was not started here or took too long".into(),
        ));
    };
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| same(s.as_bytes(), login.state.as_bytes()));
    let (true, Some(code)) = (state_ok, q.code.as_deref()) else {
        return oidc_failure(OidcError::Refused(
            "the answer does not belong to this sign-in (state)".into(),
        ));
    };
    match client.finish(code, &login, now).await {
        Ok(email) => {
            tracing::info!(allowed = role_of(&app, &email).is_some(), "admin signed in");
            let hours = app.config.admin.session_hours as i64;
            let session = Session {
                email,
                exp: now + hours * 3600,
            };
            let mut r = redirect(&safe_next(&login.next));
            for c in [
                signer.set_cookie(
                    SESSION_COOKIE,
                    &signer.seal(SESSION_LABEL, &session),
                    hours * 3600,
                ),
                signer.set_cookie(LOGIN_COOKIE, "", 0),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => oidc_failure(e),
    }
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /admin/logout`: forgets the session.
pub async fn logout(State(app): State<Arc<App>>) -> Response {
    let mut r = html::message(
        StatusCode::OK,
        "Signed out",
        None,
        "You are signed out of grantry's admin pages.",
    );
    if let Some(signer) = app.admin.as_ref().and_then(|a| a.signer.as_ref()) {
        if let Ok(v) = HeaderValue::from_str(&signer.set_cookie(SESSION_COOKIE, "", 0)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_admin_paths_are_returned_to() {
        assert_eq!(safe_next("/admin/grants?app=x"), "/admin/grants?app=x");
        for bad in [
            "https://evil.example",
            "//evil.example/admin",
            "/admin//evil",
            "/admin/login?next=/admin",
            "/healthz",
            "/admin\\@evil",
        ] {
            assert_eq!(safe_next(bad), "/admin", "{bad}");
        }
    }
}
