//! A stand-in OpenID Connect identity provider on 127.0.0.1, as Okta, Entra or Google would
//! answer: a discovery document, an authorize endpoint that serves a small sign-in form (a browser
//! fills it in and submits it), a token endpoint that checks the client secret (HTTP Basic), the
//! one-time code, the redirect URI and the PKCE verifier, and returns an RS256 ID token signed
//! with a throwaway key (made with the openssl CLI) that its JWKS publishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "grantry-admin";
pub const CLIENT_SECRET: &str = "idp-client-secret with spaces&symbols";
pub const SESSION_SECRET: &str = "a-session-secret-of-at-least-32-characters";
const KID: &str = "idp-test-key";

#[derive(Clone)]
struct Pending {
    email: String,
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct Inner {
    issuer: String,
    pair: ring::rsa::KeyPair,
    jwks: Value,
    codes: Mutex<HashMap<String, Pending>>,
    token_calls: AtomicUsize,
    /// Every refusal the token endpoint made, for the tests to read.
    refusals: Mutex<Vec<String>>,
}

/// The identity provider, serving until dropped with the test.
#[derive(Clone)]
pub struct IdP {
    inner: Arc<Inner>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl IdP {
    pub async fn start() -> IdP {
        let (pkcs8_pem, _, public_der) = super::prism::rsa_test_key();
        let b64: String = pkcs8_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let pair = ring::rsa::KeyPair::from_pkcs8(&STANDARD.decode(b64).unwrap()).unwrap();
        let (n, e) = super::teams::n_e(&public_der);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let jwks = json!({"keys": [
            // A key of another kind first: clients must pick by kid.
            {"kty": "EC", "kid": "other", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
             "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e)},
        ]});
        let inner = Arc::new(Inner {
            issuer: issuer.clone(),
            pair,
            jwks,
            codes: Mutex::new(HashMap::new()),
            token_calls: AtomicUsize::new(0),
            refusals: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize_form).post(authorize))
            .route("/token", axum::routing::post(token))
            .route("/jwks", get(serve_jwks))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        IdP { inner }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn token_calls(&self) -> usize {
        self.inner.token_calls.load(Ordering::SeqCst)
    }

    pub fn refusals(&self) -> Vec<String> {
        self.inner.refusals.lock().unwrap().clone()
    }

    /// The `[admin]` table for an app at `app_base_url` signing in with this provider (secrets
    /// written to files in `dir`).
    pub fn admin_config(
        &self,
        dir: &std::path::Path,
        app_base_url: &str,
    ) -> grantry::config::AdminConfig {
        std::fs::write(dir.join("admin_client_secret"), CLIENT_SECRET).unwrap();
        std::fs::write(dir.join("admin_session_secret"), SESSION_SECRET).unwrap();
        grantry::config::AdminConfig {
            enabled: true,
            auth: "oidc".into(),
            issuer: self.issuer().to_string(),
            client_id: CLIENT_ID.into(),
            client_secret: grantry::config::SecretSource {
                env: None,
                file: Some(dir.join("admin_client_secret")),
            },
            redirect_url: format!("{app_base_url}/admin/callback"),
            session_secret: grantry::config::SecretSource {
                env: None,
                file: Some(dir.join("admin_session_secret")),
            },
            secure_cookies: false,
            ..Default::default()
        }
    }

    fn sign(&self, claims: &Value) -> String {
        sign(&self.inner, claims)
    }

    /// An ID token as this provider would sign it, with `overrides` merged in.
    pub fn id_token(&self, overrides: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({"iss": self.issuer(), "aud": CLIENT_ID, "sub": "u1",
            "iat": now, "exp": now + 300, "nonce": "n", "email": "carol@example.com", "email_verified": true});
        if let Value::Object(o) = overrides {
            for (k, v) in o {
                claims[k] = v;
            }
        }
        self.sign(&claims)
    }
}

fn sign(inner: &Inner, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; inner.pair.public().modulus_len()];
    inner
        .pair
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

async fn discovery(State(i): State<Arc<Inner>>) -> Json<Value> {
    let b = &i.issuer;
    Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "jwks_uri": format!("{b}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn serve_jwks(State(i): State<Arc<Inner>>) -> Json<Value> {
    Json(i.jwks.clone())
}

/// The sign-in form, carrying the authorization request's parameters.
async fn authorize_form(Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != CLIENT_ID
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("state").is_empty()
        || get("nonce").is_empty()
        || !get("scope").split(' ').any(|s| s == "openid")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let hidden: String = ["redirect_uri", "state", "nonce", "code_challenge"]
        .iter()
        .map(|k| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                esc(&get(k))
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><title>Stand-in IdP</title></head><body>\
         <h1>Sign in</h1><form method=\"post\" action=\"/authorize\">{hidden}\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\">\
         <button type=\"submit\" id=\"signin\">Sign in</button></form></body></html>"
    ))
    .into_response()
}

/// The person signed in: remember the request under a one-time code and send them back.
async fn authorize(
    State(i): State<Arc<Inner>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    i.codes.lock().unwrap().insert(
        code.clone(),
        Pending {
            email: get("email"),
            nonce: get("nonce"),
            challenge: get("code_challenge"),
            redirect_uri: get("redirect_uri"),
        },
    );
    let q = serde_urlencoded::to_string([("code", code), ("state", get("state"))]).unwrap();
    Redirect::to(&format!("{}?{q}", get("redirect_uri"))).into_response()
}

fn refuse(i: &Inner, status: StatusCode, error: &str, why: &str) -> Response {
    i.refusals.lock().unwrap().push(why.to_string());
    (status, Json(json!({"error": error}))).into_response()
}

/// The code exchange: client authentication, the code (once), the redirect URI and PKCE.
async fn token(
    State(i): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    i.token_calls.fetch_add(1, Ordering::SeqCst);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!(
        "{}:{}",
        CLIENT_ID,
        &serde_urlencoded::to_string([("k", CLIENT_SECRET)]).unwrap()[2..]
    );
    if basic.as_deref() != Some(expected.as_str()) {
        return refuse(
            &i,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication",
        );
    }
    if get("grant_type") != "authorization_code" {
        return refuse(
            &i,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type",
        );
    }
    let Some(p) = i.codes.lock().unwrap().remove(&get("code")) else {
        return refuse(
            &i,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or used code",
        );
    };
    if p.redirect_uri != get("redirect_uri") {
        return refuse(&i, StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri");
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()));
    if challenge != p.challenge {
        return refuse(
            &i,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "PKCE verifier",
        );
    }
    let now = chrono::Utc::now().timestamp();
    let id_token = sign(
        &i,
        &json!({"iss": i.issuer, "sub": format!("sub-{}", p.email), "aud": CLIENT_ID,
                "iat": now, "exp": now + 300, "nonce": p.nonce, "email": p.email,
                "email_verified": true}),
    );
    Json(
        json!({"access_token": "opaque", "token_type": "Bearer", "expires_in": 300,
                "id_token": id_token}),
    )
    .into_response()
}
