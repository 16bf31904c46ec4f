//! What every outbound HTTP call shares: a client with timeouts, `Retry-After` parsing, and the
//! line between a failure worth retrying and one that needs a human.
//!
//! Retries themselves are the job queue's: a call fails with a transient error carrying the
//! server's `Retry-After`, and the job runs again after max(backoff, Retry-After), durably.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// An HTTP client with a connect timeout and a whole-request timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("grantry/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `Retry-After` as seconds or an HTTP date, capped at one hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
        Duration::from_secs(secs as u64)
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// Whether a status is worth retrying: 408, 425, 429 and 5xx.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.as_u16() == 425
}

/// A transport error in words, without the URL's query (which could carry a token).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() {
        "answered with a body we could not read"
    } else {
        "failed"
    };
    match e.url() {
        Some(u) => format!(
            "{} {}{} {kind}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.path()
        ),
        None => format!("request {kind}"),
    }
}

/// The first 300 characters of a response body, for error messages.
pub fn excerpt(body: &str) -> String {
    let s: String = body.chars().take(300).collect();
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_caps() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
