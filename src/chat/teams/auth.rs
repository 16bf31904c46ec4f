//! Authenticating the Bot Connector's calls to the bot, as the Bot Framework requires: an RS256
//! bearer JWT signed by a key from the OpenID metadata's JWKS (endorsed for the activity's
//! channel), issued by the Bot Framework, for our app id, unexpired (5 minutes' skew), and naming
//! in its `serviceurl` claim the service URL the activity says to answer at.
//!
//! Keys are cached; an unknown key id triggers one refresh (at most once a minute, so forged key
//! ids cannot make us hammer the metadata endpoint), and keys older than `max_age` are refetched.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::outbound;

/// Why a call was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, a token we cannot read, a bad signature or a claim that does not hold: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The signing keys could not be fetched: nobody can be authenticated now (503).
    #[error("the Bot Framework signing keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

fn unauthorized(why: impl Into<String>) -> AuthError {
    AuthError::Unauthorized(why.into())
}

/// What must hold for a token to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub metadata_url: String,
    pub issuer: String,
    /// Our Microsoft App ID.
    pub audience: String,
    pub max_skew_secs: i64,
    pub keys_max_age: Duration,
}

/// The claims of an accepted token that callers may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub service_url: String,
}

#[derive(Debug, Clone)]
struct Key {
    n: Vec<u8>,
    e: Vec<u8>,
    /// Channels the key is endorsed for; `None`: the key says nothing about channels.
    endorsements: Option<Vec<String>>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Key>,
    fetched: Option<Instant>,
}

/// The token validator with its key cache.
pub struct BotAuth {
    expect: Expectations,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Held while fetching, so concurrent misses fetch once.
    refreshing: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
    endorsements: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

impl BotAuth {
    /// A validator; keys are fetched on first use.
    pub fn new(expect: Expectations, timeout: Duration) -> Self {
        Self {
            expect,
            http: outbound::client(timeout),
            keys: RwLock::new(KeySet::default()),
            refreshing: Mutex::new(None),
        }
    }

    /// Checks `authorization` (the header's value) for an activity that came from `channel_id`
    /// and asks to be answered at `service_url`; `now_secs` is the current Unix time.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        channel_id: &str,
        service_url: &str,
        now_secs: i64,
    ) -> Result<Verified, AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("no bearer token"))?;
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauthorized("the token is not a JWT"));
        };
        let header: Header = decode_json(h).ok_or_else(|| unauthorized("unreadable JWT header"))?;
        let alg = match header.alg.as_str() {
            "RS256" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            "RS384" => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
            "RS512" => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
            other => return Err(unauthorized(format!("algorithm {other} is not accepted"))),
        };
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the token names no key (kid)"))?;
        let key = self.key(&kid).await?;
        if let Some(endorsed) = &key.endorsements {
            if !channel_id.is_empty() && !endorsed.iter().any(|c| c == channel_id) {
                return Err(unauthorized(format!(
                    "key {kid} is not endorsed for channel {channel_id}"
                )));
            }
        }
        let signature = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| unauthorized("unreadable signature"))?;
        ring::signature::RsaPublicKeyComponents {
            n: &key.n,
            e: &key.e,
        }
        .verify(alg, format!("{h}.{p}").as_bytes(), &signature)
        .map_err(|_| unauthorized("bad signature"))?;
        let claims: Value = decode_json(p).ok_or_else(|| unauthorized("unreadable claims"))?;
        self.check_claims(&claims, service_url, now_secs)
    }

    fn check_claims(
        &self,
        claims: &Value,
        service_url: &str,
        now: i64,
    ) -> Result<Verified, AuthError> {
        let skew = self.expect.max_skew_secs;
        if claims["iss"].as_str() != Some(self.expect.issuer.as_str()) {
            return Err(unauthorized("wrong issuer"));
        }
        let aud_ok = match &claims["aud"] {
            Value::String(a) => a == &self.expect.audience,
            Value::Array(list) => list
                .iter()
                .any(|a| a.as_str() == Some(self.expect.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(unauthorized("wrong audience"));
        }
        match claims["exp"].as_i64() {
            Some(exp) if exp + skew >= now => {}
            Some(_) => return Err(unauthorized("the token has expired")),
            None => return Err(unauthorized("the token has no expiry")),
        }
        if let Some(nbf) = claims["nbf"].as_i64() {
            if nbf - skew > now {
                return Err(unauthorized("the token is not valid yet"));
            }
        }
        match claims["serviceurl"].as_str() {
            Some(s) if s == service_url => Ok(Verified {
                service_url: s.to_string(),
            }),
            Some(_) => Err(unauthorized(
                "the token's serviceurl does not match the activity's serviceUrl",
            )),
            None => Err(unauthorized("the token has no serviceurl claim")),
        }
    }

    /// The key `kid`: from the cache while it is fresh; otherwise fetched (once a minute at most).
    async fn key(&self, kid: &str) -> Result<Key, AuthError> {
        {
            let set = self.keys.read().await;
            let fresh = set
                .fetched
                .is_some_and(|t| t.elapsed() < self.expect.keys_max_age);
            if let (true, Some(k)) = (fresh, set.keys.get(kid)) {
                return Ok(k.clone());
            }
        }
        let mut last = self.refreshing.lock().await;
        // Another caller may have refreshed while we waited.
        {
            let set = self.keys.read().await;
            let fresh = set
                .fetched
                .is_some_and(|t| t.elapsed() < self.expect.keys_max_age);
            if let Some(k) = set.keys.get(kid).filter(|_| fresh) {
                return Ok(k.clone());
            }
            let stale = !fresh;
            if !stale && last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
                return Err(unauthorized(format!("unknown signing key {kid}")));
            }
        }
        let fetched = self.fetch().await;
        *last = Some(Instant::now());
        let keys = match fetched {
            Ok(keys) => keys,
            Err(e) => {
                // Keep serving from stale keys rather than refusing everyone.
                let set = self.keys.read().await;
                return match set.keys.get(kid) {
                    Some(k) => {
                        tracing::warn!(error = %e, "using cached Bot Framework keys");
                        Ok(k.clone())
                    }
                    None => Err(e),
                };
            }
        };
        let mut set = self.keys.write().await;
        set.keys = keys;
        set.fetched = Some(Instant::now());
        set.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized(format!("unknown signing key {kid}")))
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, AuthError> {
        let unavailable = AuthError::KeysUnavailable;
        let meta: Value = self.get_json(&self.expect.metadata_url).await?;
        let jwks_uri = meta["jwks_uri"]
            .as_str()
            .ok_or_else(|| unavailable("the OpenID metadata has no jwks_uri".into()))?;
        let jwks: Jwks = serde_json::from_value(self.get_json(jwks_uri).await?)
            .map_err(|e| unavailable(format!("unreadable JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for k in jwks.keys {
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
                continue;
            };
            if k.kty.as_deref().is_some_and(|t| t != "RSA") {
                continue;
            }
            let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
                continue;
            };
            keys.insert(
                kid,
                Key {
                    n,
                    e,
                    endorsements: k.endorsements,
                },
            );
        }
        tracing::info!(keys = keys.len(), "Bot Framework signing keys fetched");
        Ok(keys)
    }

    async fn get_json(&self, url: &str) -> Result<Value, AuthError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| AuthError::KeysUnavailable(outbound::describe(&e)))?;
        if !resp.status().is_success() {
            return Err(AuthError::KeysUnavailable(format!(
                "{} answered {}",
                url.split('?').next().unwrap_or(""),
                resp.status()
            )));
        }
        resp.json()
            .await
            .map_err(|e| AuthError::KeysUnavailable(outbound::describe(&e)))
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}
