//! Signing in to the admin pages with the organisation's identity provider: OpenID Connect's
//! authorization-code flow with `state`, `nonce` and PKCE (S256); the code is exchanged with the
//! client secret (HTTP Basic, or in the form when the provider only takes that), and the ID token
//! is verified: RS256 by a key from the provider's JWKS (found by `kid`), issuer, audience,
//! expiry, nonce, and a verified email.
//!
//! The discovery document and the keys are cached; an unknown `kid` refetches the keys at most
//! once a minute. Errors name endpoints and claims, never the secret, a code or a token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};

use super::session::LoginState;
use crate::config::Secret;
use crate::outbound;

/// How long a sign-in may take between the redirect and the way back, in seconds.
pub const LOGIN_TTL_SECS: i64 = 600;
const SKEW_SECS: i64 = 120;
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const MIN_REFRESH: Duration = Duration::from_secs(60);

/// Why a sign-in did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The identity provider could not be reached or answered something unusable (502).
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The answer does not prove who signed in (401); the reason is safe to show.
    #[error("sign-in refused: {0}")]
    Refused(String),
}

fn refused(why: impl Into<String>) -> OidcError {
    OidcError::Refused(why.into())
}

/// The relying party's settings.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

#[derive(Default)]
struct Cache {
    discovery: Option<(Instant, Discovery)>,
    keys: HashMap<String, RsaKey>,
    keys_fetched: Option<Instant>,
}

/// The OpenID Connect client.
pub struct OidcClient {
    settings: OidcSettings,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    /// Held while fetching keys; the last fetch's time.
    refreshing: Mutex<Option<Instant>>,
}

/// Where to send the browser, and what to keep for its way back.
#[derive(Debug, Clone)]
pub struct Start {
    pub authorize_url: String,
    pub login: LoginState,
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before HTTP Basic.
fn form_encode(v: &str) -> String {
    serde_urlencoded::to_string([("k", v)])
        .map(|s| s.trim_start_matches("k=").to_string())
        .unwrap_or_default()
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

impl OidcClient {
    /// A client; the discovery document is fetched on first use.
    pub fn new(settings: OidcSettings) -> Self {
        Self {
            http: outbound::client(settings.timeout),
            settings,
            cache: RwLock::new(Cache::default()),
            refreshing: Mutex::new(None),
        }
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, OidcError> {
        let resp =
            self.http.get(url).send().await.map_err(|e| {
                OidcError::Unavailable(format!("{what}: {}", outbound::describe(&e)))
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(OidcError::Unavailable(format!("{what}: HTTP {status}")));
        }
        resp.json()
            .await
            .map_err(|e| OidcError::Unavailable(format!("{what}: {}", outbound::describe(&e))))
    }

    async fn discovery(&self) -> Result<Discovery, OidcError> {
        if let Some((at, d)) = &self.cache.read().await.discovery {
            if at.elapsed() < DISCOVERY_MAX_AGE {
                return Ok(d.clone());
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let doc = self.get_json(&url, "the discovery document").await?;
        let d: Discovery = serde_json::from_value(doc).map_err(|e| {
            OidcError::Unavailable(format!(
                "the discovery document at {url} is incomplete: {e}"
            ))
        })?;
        if d.issuer.trim_end_matches('/') != self.settings.issuer.trim_end_matches('/') {
            return Err(OidcError::Unavailable(format!(
                "the discovery document names issuer {} but [admin] issuer is {}",
                d.issuer, self.settings.issuer
            )));
        }
        self.cache.write().await.discovery = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    /// Begins a sign-in that returns to `next`: the provider's authorization URL (with `state`,
    /// `nonce` and the PKCE challenge) and the state to keep in a signed cookie.
    pub async fn start(&self, next: &str, now_secs: i64) -> Result<Start, OidcError> {
        let d = self.discovery().await?;
        let login = LoginState {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            next: next.to_string(),
            exp: now_secs + LOGIN_TTL_SECS,
        };
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.settings.client_id.as_str()),
            ("redirect_uri", self.settings.redirect_url.as_str()),
            ("scope", "openid email"),
            ("state", login.state.as_str()),
            ("nonce", login.nonce.as_str()),
            ("code_challenge", pkce_challenge(&login.verifier).as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| OidcError::Unavailable(format!("building the authorization URL: {e}")))?;
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(Start {
            authorize_url: format!("{}{sep}{query}", d.authorization_endpoint),
            login,
        })
    }

    /// Exchanges `code` (its `state` already matched `login`'s) and returns the verified email.
    pub async fn finish(
        &self,
        code: &str,
        login: &LoginState,
        now_secs: i64,
    ) -> Result<String, OidcError> {
        let d = self.discovery().await?;
        let s = &self.settings;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", s.redirect_url.as_str()),
            ("code_verifier", login.verifier.as_str()),
            ("client_id", s.client_id.as_str()),
        ];
        // client_secret_basic is the default; use the form only when the provider lists
        // client_secret_post and not basic.
        let post_only = d
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                m.iter().any(|x| x == "client_secret_post")
                    && !m.iter().any(|x| x == "client_secret_basic")
            });
        let mut req = self.http.post(&d.token_endpoint);
        if post_only {
            form.push(("client_secret", s.client_secret.expose()));
        } else {
            req = req.basic_auth(
                form_encode(&s.client_id),
                Some(form_encode(s.client_secret.expose())),
            );
        }
        let resp = req.form(&form).send().await.map_err(|e| {
            OidcError::Unavailable(format!("the token endpoint: {}", outbound::describe(&e)))
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            // The error code only (RFC 6749 §5.2); descriptions can echo what was sent.
            let code = body["error"].as_str().unwrap_or("no error code");
            return Err(if status.is_server_error() {
                OidcError::Unavailable(format!("the token endpoint answered HTTP {status}"))
            } else {
                refused(format!(
                    "the token endpoint refused the code (HTTP {status}, {code})"
                ))
            });
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| refused("the token endpoint sent no id_token"))?;
        let claims = self.verify(id_token, &d).await?;
        check_claims(&claims, &d.issuer, &s.client_id, &login.nonce, now_secs)
    }

    /// Checks the token's signature and returns its claims.
    async fn verify(&self, token: &str, d: &Discovery) -> Result<Value, OidcError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("the id_token is not a JWT"));
        };
        let header: Value = decode_json(h).ok_or_else(|| refused("unreadable id_token header"))?;
        if header["alg"].as_str() != Some("RS256") {
            return Err(refused(format!(
                "id_token algorithm {} is not accepted (RS256 only)",
                header["alg"]
            )));
        }
        let key = self.key(header["kid"].as_str(), d).await?;
        let signature = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| refused("unreadable id_token signature"))?;
        ring::signature::RsaPublicKeyComponents {
            n: &key.n,
            e: &key.e,
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{h}.{p}").as_bytes(),
            &signature,
        )
        .map_err(|_| refused("the id_token's signature does not verify"))?;
        decode_json(p).ok_or_else(|| refused("unreadable id_token claims"))
    }

    /// The key `kid` (or the only key, when the token names none), refetching on a miss.
    async fn key(&self, kid: Option<&str>, d: &Discovery) -> Result<RsaKey, OidcError> {
        let pick = |keys: &HashMap<String, RsaKey>| match kid {
            Some(k) => keys.get(k).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        };
        {
            let c = self.cache.read().await;
            let fresh = c.keys_fetched.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE);
            if let (true, Some(k)) = (fresh, pick(&c.keys)) {
                return Ok(k);
            }
        }
        let mut last = self.refreshing.lock().await;
        {
            let c = self.cache.read().await;
            let fresh = c.keys_fetched.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE);
            if let (true, Some(k)) = (fresh, pick(&c.keys)) {
                return Ok(k);
            }
            if fresh && last.is_some_and(|t| t.elapsed() < MIN_REFRESH) {
                return Err(refused("the id_token's signing key is unknown"));
            }
        }
        *last = Some(Instant::now());
        let jwks = self.get_json(&d.jwks_uri, "the JWKS").await?;
        let mut keys = HashMap::new();
        for k in jwks["keys"].as_array().into_iter().flatten() {
            if k["kty"].as_str() != Some("RSA") || k["use"].as_str().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(n), Some(e)) = (k["n"].as_str(), k["e"].as_str()) else {
                continue;
            };
            let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
                continue;
            };
            let id = k["kid"].as_str().unwrap_or_default().to_string();
            keys.insert(id, RsaKey { n, e });
        }
        let mut c = self.cache.write().await;
        c.keys = keys;
        c.keys_fetched = Some(Instant::now());
        pick(&c.keys).ok_or_else(|| refused("the id_token's signing key is not in the JWKS"))
    }
}

/// Issuer, audience, expiry, nonce and a verified email; returns the email (lower-cased).
fn check_claims(
    claims: &Value,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<String, OidcError> {
    if claims["iss"].as_str() != Some(issuer) {
        return Err(refused("the id_token is from another issuer"));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == client_id,
        Value::Array(list) => {
            list.iter().any(|a| a.as_str() == Some(client_id))
                && (list.len() == 1 || claims["azp"].as_str() == Some(client_id))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(refused("the id_token is for another client"));
    }
    match claims["exp"].as_i64() {
        Some(exp) if exp + SKEW_SECS >= now => {}
        Some(_) => return Err(refused("the id_token has expired")),
        None => return Err(refused("the id_token has no expiry")),
    }
    if claims["nonce"].as_str() != Some(nonce) {
        return Err(refused("the id_token's nonce does not match this sign-in"));
    }
    let verified = match &claims["email_verified"] {
        Value::Null => true,
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    };
    if !verified {
        return Err(refused(
            "the identity provider says this email is not verified",
        ));
    }
    let email = claims["email"]
        .as_str()
        .map(str::trim)
        .filter(|e| e.contains('@'))
        .ok_or_else(|| {
            refused("the id_token has no email claim (the client must be allowed the email scope)")
        })?;
    Ok(email.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        json!({"iss": "https://idp", "aud": "grantry", "exp": 1000, "nonce": "n1",
               "email": "Carol@Example.com", "email_verified": true})
    }

    fn check(c: &Value) -> Result<String, OidcError> {
        check_claims(c, "https://idp", "grantry", "n1", 900)
    }

    #[test]
    fn good_claims_give_the_email() {
        assert_eq!(check(&claims()).unwrap(), "carol@example.com");
    }

    #[test]
    fn each_bad_claim_is_refused() {
        for (key, bad) in [
            ("iss", json!("https://evil")),
            ("aud", json!("other")),
            ("aud", json!(["other", "grantry"])),
            ("exp", json!(100)),
            ("nonce", json!("n2")),
            ("email_verified", json!(false)),
            ("email", json!(null)),
        ] {
            let mut c = claims();
            c[key] = bad.clone();
            assert!(check(&c).is_err(), "{key} = {bad} was accepted");
        }
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
