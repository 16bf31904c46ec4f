//! SCIM 2.0 inbound (RFC 7644), the part an IdP needs to tell grantry someone left: grantry
//! acts as a SCIM service provider for Users. When the IdP deactivates a user (`PATCH` or `PUT`
//! with `active: false`) or deletes them, grantry offboards that person: every grant revoked,
//! every open request cancelled, IT told. Authenticated with the offboard hook's bearer secret.
//!
//! grantry does not create people from SCIM (the people file is the directory): `POST /Users`
//! answers with the resource so the IdP can link it, and a user's `id` is their email encoded as
//! base64url, so no mapping is stored. `active` reads false once the person is offboarded.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::App;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn scim(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/scim+json"),
    );
    r
}

fn error(status: StatusCode, detail: &str) -> Response {
    scim(
        status,
        json!({"schemas": [ERROR], "status": status.as_u16().to_string(), "detail": detail}),
    )
}

fn internal(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "SCIM inbound: store error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; nothing was changed",
    )
}

/// The id of a person's SCIM resource.
pub fn user_id(email: &str) -> String {
    URL_SAFE_NO_PAD.encode(email.trim().to_ascii_lowercase())
}

fn email_of(id: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    let email = String::from_utf8(bytes).ok()?;
    email.contains('@').then_some(email)
}

async fn resource(app: &App, email: &str) -> Result<Value, crate::store::StoreError> {
    let offboarded = app.store.is_offboarded(email).await?;
    let person = app.directory.by_email(email);
    Ok(json!({
        "schemas": [USER],
        "id": user_id(email),
        "userName": email,
        "displayName": person.map(|p| p.display_name().to_string()),
        "emails": [{"value": email, "primary": true}],
        "active": !offboarded && person.is_none_or(|p| p.is_active()),
        "meta": {"resourceType": "User", "location": format!("/scim/v2/Users/{}", user_id(email))},
    }))
}

/// The 401 for a caller without the secret; None for the IdP.
fn refused(app: &App, headers: &HeaderMap) -> Option<Response> {
    (!super::hooks::authorised(app, headers))
        .then(|| error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

/// `GET /scim/v2/ServiceProviderConfig`.
pub(super) async fn service_provider_config(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    scim(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 1},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer token",
                                       "description": "the offboard hook's shared secret"}],
        }),
    )
}

/// `GET /scim/v2/Users?filter=userName eq "…"`: the IdP looks the person up before linking.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let Some(filter) = q.get("filter") else {
        return scim(
            StatusCode::OK,
            json!({"schemas": [LIST], "totalResults": 0, "itemsPerPage": 0, "startIndex": 1, "Resources": []}),
        );
    };
    let parts: Vec<&str> = filter.splitn(3, ' ').collect();
    let (attr, op, value) = match parts.as_slice() {
        [a, o, v] => (
            a.to_ascii_lowercase(),
            o.to_ascii_lowercase(),
            v.trim().trim_matches('"'),
        ),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "filter must be `userName eq \"…\"`",
            )
        }
    };
    if op != "eq" || !(attr == "username" || attr == "emails.value" || attr == "emails") {
        return error(
            StatusCode::BAD_REQUEST,
            "only `userName eq \"…\"` and `emails.value eq \"…\"` filters are supported",
        );
    }
    let email = value.to_ascii_lowercase();
    let found = app.directory.by_email(&email).is_some();
    let resources = if found {
        match resource(&app, &email).await {
            Ok(r) => vec![r],
            Err(e) => return internal(e),
        }
    } else {
        Vec::new()
    };
    scim(
        StatusCode::OK,
        json!({"schemas": [LIST], "totalResults": resources.len(), "itemsPerPage": resources.len(),
               "startIndex": 1, "Resources": resources}),
    )
}

/// `GET /scim/v2/Users/{id}`.
pub(super) async fn get_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    match email_of(&id) {
        Some(email) => match resource(&app, &email).await {
            Ok(r) => scim(StatusCode::OK, r),
            Err(e) => internal(e),
        },
        None => error(StatusCode::NOT_FOUND, "no such user"),
    }
}

/// `POST /scim/v2/Users`: links the IdP's user to the person (nothing is created).
pub(super) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body must be a SCIM User (JSON)");
    };
    let Some(email) = email_in(&v) else {
        return error(
            StatusCode::BAD_REQUEST,
            "userName (or a primary email) must be an email address",
        );
    };
    if v.get("active").and_then(active_value) == Some(false) {
        return deactivate(&app, &email, "create").await;
    }
    match resource(&app, &email).await {
        Ok(r) => scim(StatusCode::CREATED, r),
        Err(e) => internal(e),
    }
}

/// `PUT /scim/v2/Users/{id}` (Okta): `active: false` offboards.
pub(super) async fn replace(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    update(&app, &headers, &id, &body, "put", |v| {
        Ok(v.get("active").and_then(active_value) == Some(false))
    })
    .await
}

/// `PATCH /scim/v2/Users/{id}` (Entra ID, Okta): a `replace` of `active` with false offboards.
pub(super) async fn patch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    update(&app, &headers, &id, &body, "patch", |v| {
        let is_patch = v
            .get("schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|x| x == PATCH_OP));
        v.get("Operations")
            .and_then(Value::as_array)
            .filter(|_| is_patch)
            .map(|ops| ops.iter().any(deactivates))
            .ok_or("body must be a SCIM PatchOp with Operations")
    })
    .await
}

/// PUT and PATCH: `deactivating` reads from the body whether it sets `active` to false, or says
/// why the body is not acceptable (a 400, nothing changed).
async fn update(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    how: &str,
    deactivating: fn(&Value) -> Result<bool, &'static str>,
) -> Response {
    if let Some(r) = refused(app, headers) {
        return r;
    }
    let Some(email) = email_of(id) else {
        return error(StatusCode::NOT_FOUND, "no such user");
    };
    let read = serde_json::from_slice::<Value>(body)
        .map_err(|_| "body must be JSON (a SCIM User or PatchOp)")
        .and_then(|v| deactivating(&v));
    match read {
        Err(why) => error(StatusCode::BAD_REQUEST, why),
        Ok(true) => deactivate(app, &email, how).await,
        Ok(false) => match resource(app, &email).await {
            Ok(r) => scim(StatusCode::OK, r),
            Err(e) => internal(e),
        },
    }
}

/// `DELETE /scim/v2/Users/{id}`: the person is gone.
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let Some(email) = email_of(&id) else {
        return error(StatusCode::NOT_FOUND, "no such user");
    };
    match crate::flow::lifecycle::offboard(&app, &email, "scim:delete").await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "SCIM offboarding failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; nothing was changed",
            )
        }
    }
}

async fn deactivate(app: &App, email: &str, how: &str) -> Response {
    match crate::flow::lifecycle::offboard(app, email, &format!("scim:{how}")).await {
        Ok(_) => match resource(app, email).await {
            Ok(r) => scim(StatusCode::OK, r),
            Err(e) => internal(e),
        },
        Err(e) => {
            tracing::error!(error = %e, "SCIM offboarding failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; nothing was changed",
            )
        }
    }
}

/// The email a User resource names: `userName` if it is one, else the primary (or first) email.
fn email_in(v: &Value) -> Option<String> {
    let user_name = v
        .get("userName")
        .and_then(Value::as_str)
        .filter(|u| u.contains('@'));
    let from_emails = || {
        let emails = v.get("emails")?.as_array()?;
        emails
            .iter()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| emails.first())?
            .get("value")?
            .as_str()
    };
    user_name
        .or_else(from_emails)
        .map(|e| e.trim().to_ascii_lowercase())
}

/// `active` as IdPs send it: a boolean, or (Entra ID) the string "False"/"True".
fn active_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.trim().to_ascii_lowercase().parse().ok(),
        _ => None,
    }
}

/// Whether one PATCH operation sets `active` to false: `{"op":"replace","path":"active","value":false}`
/// or `{"op":"replace","value":{"active":false}}` (op names are case-insensitive).
fn deactivates(op: &Value) -> bool {
    let name = op
        .get("op")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    if name != "replace" && name != "add" {
        return false;
    }
    match op.get("path").and_then(Value::as_str) {
        Some(p) if p.eq_ignore_ascii_case("active") => {
            op.get("value").and_then(active_value) == Some(false)
        }
        Some(_) => false,
        None => {
            op.get("value")
                .and_then(|v| v.get("active"))
                .and_then(active_value)
                == Some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deactivation_as_entra_and_okta_send_it() {
        assert!(deactivates(
            &json!({"op": "Replace", "path": "active", "value": "False"})
        ));
        assert!(deactivates(
            &json!({"op": "replace", "value": {"active": false}})
        ));
        assert!(!deactivates(
            &json!({"op": "replace", "path": "active", "value": true})
        ));
        assert!(!deactivates(
            &json!({"op": "replace", "path": "displayName", "value": "x"})
        ));
        assert_eq!(
            email_of(&user_id("Ada@Example.com")).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(email_of("not-base64!"), None);
    }
}
