//! What the HTTP connectors share: one JSON call with a timeout, and the line between a failure
//! worth retrying (timeouts, 5xx, 429, an exhausted rate limit) and one that needs a human.
//!
//! Only the method and path appear in messages: never a query string, header or token.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::ConnectorError;
use crate::outbound;

/// A JSON API reached at one base URL.
pub(crate) struct Api {
    /// Which app, for messages (`GitHub`, `Okta`…).
    app: &'static str,
    /// The connector instance's name.
    name: String,
    base_url: String,
    pub(crate) http: reqwest::Client,
}

/// An answer with any status.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// `METHOD /path`, for messages.
    pub what: String,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }
}

impl Api {
    /// An API at `base_url` whose calls time out after `timeout`.
    pub fn new(app: &'static str, name: &str, base_url: &str, timeout: Duration) -> Self {
        Self {
            app,
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            http: outbound::client(timeout),
        }
    }

    /// The connector instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `label: message`, e.g. `GitHub github: …`.
    pub fn label(&self) -> String {
        format!("{} {}", self.app, self.name)
    }

    /// A request to `path` (which may carry a query) under the base URL.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base_url, path))
    }

    /// Sends a request and reads its JSON body (empty → null), whatever the status.
    /// Only transport failures are errors here (transient).
    pub async fn send(
        &self,
        method: &Method,
        path: &str,
        rb: RequestBuilder,
    ) -> Result<Reply, ConnectorError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let resp = rb.send().await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: {what}: {}",
                self.label(),
                outbound::describe(&e)
            ))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: {what}: {}",
                self.label(),
                outbound::describe(&e)
            ))
        })?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) if status.is_success() => {
                    return Err(ConnectorError::permanent(format!(
                        "{}: {what} answered {status} with a body that is not JSON",
                        self.label()
                    )))
                }
                Err(_) => Value::String(outbound::excerpt(&text)),
            }
        };
        Ok(Reply {
            status,
            headers,
            body,
            what,
        })
    }

    /// The error for a reply that did not succeed: transient when worth retrying (with the
    /// server's wait), else permanent with `fix` appended for 401/403.
    pub fn failure(&self, reply: &Reply, detail: &str, fix: &str) -> ConnectorError {
        let message = format!(
            "{}: {} answered {}{}",
            self.label(),
            reply.what,
            reply.status,
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
        let wait = rate_limit_wait(&reply.headers);
        let exhausted = rate_limit_exhausted(&reply.headers);
        if outbound::is_transient(reply.status)
            || (reply.status == StatusCode::FORBIDDEN && (exhausted || wait.is_some()))
        {
            return ConnectorError::Transient {
                message,
                retry_after: wait,
            };
        }
        match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if !fix.is_empty() => {
                ConnectorError::permanent(format!("{message} ({fix})"))
            }
            _ => ConnectorError::permanent(message),
        }
    }

    /// A permanent error in this connector's words.
    pub fn permanent(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::permanent(format!("{}: {message}", self.label()))
    }
}

/// An access token fetched on demand and reused until `margin_secs` before it expires. The lock
/// is held while fetching, so concurrent calls wait for one fetch instead of each making one.
pub(crate) struct TokenCache {
    slot: tokio::sync::Mutex<Option<(crate::config::Secret, i64)>>,
    margin_secs: i64,
}

impl TokenCache {
    /// An empty cache that renews `margin_secs` before expiry.
    pub fn new(margin_secs: i64) -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
            margin_secs,
        }
    }

    /// The cached token while fresh, else `fetch`'s (token, expiry in epoch seconds), kept.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<crate::config::Secret, ConnectorError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(crate::config::Secret, i64), ConnectorError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((token, until)) = slot.as_ref() {
            if super::jwt::now_secs() < until - self.margin_secs {
                return Ok(token.clone());
            }
        }
        let (token, until) = fetch().await?;
        *slot = Some((token.clone(), until));
        Ok(token)
    }

    /// Forgets the cached token if it is still `token` (the app refused it), so the next
    /// [`TokenCache::get`] fetches a new one; a token another caller already replaced is kept.
    pub async fn invalidate(&self, token: &crate::config::Secret) {
        let mut slot = self.slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|(t, _)| t.expose() == token.expose())
        {
            *slot = None;
        }
    }
}

/// How long the server asked us to wait: `Retry-After`, else a rate-limit reset time
/// (`X-RateLimit-Reset` on GitHub, `X-Rate-Limit-Reset` on Okta: epoch seconds) once the
/// remaining budget is zero. Capped at one hour.
pub(crate) fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    if let Some(d) = outbound::retry_after(headers) {
        return Some(d);
    }
    if !rate_limit_exhausted(headers) {
        return None;
    }
    let reset = ["x-ratelimit-reset", "x-rate-limit-reset"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse::<i64>().ok())?;
    let secs = (reset - chrono::Utc::now().timestamp()).clamp(1, 3600);
    Some(Duration::from_secs(secs as u64))
}

fn rate_limit_exhausted(headers: &HeaderMap) -> bool {
    ["x-ratelimit-remaining", "x-rate-limit-remaining"]
        .iter()
        .any(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "0")
        })
}

/// A string field of a JSON object.
pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Percent-encodes one path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn waits_for_the_rate_limit_reset_only_when_exhausted() {
        let mut h = HeaderMap::new();
        let reset = chrono::Utc::now().timestamp() + 30;
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("5"));
        assert_eq!(rate_limit_wait(&h), None);
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        let w = rate_limit_wait(&h).unwrap().as_secs();
        assert!((28..=30).contains(&w), "{w}");
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(segment("ada@example.com"), "ada@example.com");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
