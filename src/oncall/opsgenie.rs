//! Opsgenie's Who-is-On-Call API: `GET /v2/schedules/{id}/on-calls?scheduleIdentifierType=id&flat=true`
//! for each configured schedule, which answers the emails of everyone on call in it now
//! (`data.onCallRecipients`).
//!
//! Opsgenie schedules have no escalation levels of their own: the level is the schedule's place
//! in `schedule_ids` (the first is the primary, level 1; the second the secondary, level 2…).
//! Authentication is `Authorization: GenieKey <key>` (an API integration's key); errors name the
//! host and path only.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::{OnCall, OnCallError, Shift};
use crate::config::Secret;
use crate::outbound;

/// Opsgenie's API host (EU accounts: `https://api.eu.opsgenie.com`).
pub const DEFAULT_BASE_URL: &str = "https://api.opsgenie.com";

/// On-call people of an Opsgenie account's schedules, in level order.
pub struct Opsgenie {
    base_url: String,
    key: Secret,
    schedule_ids: Vec<String>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default, rename = "onCallRecipients")]
    on_call_recipients: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// Schedule ids may hold characters that are not path-safe.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Opsgenie {
    /// A client for the API at `base_url` (tests: a local server).
    pub fn new(base_url: &str, key: Secret, schedule_ids: Vec<String>, timeout: Duration) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
            schedule_ids,
            http: outbound::client(timeout),
        }
    }

    async fn recipients(&self, schedule: &str) -> Result<Vec<String>, OnCallError> {
        let path = format!("/v2/schedules/{}/on-calls", segment(schedule));
        let host = self
            .base_url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.base_url)
            .split('/')
            .next()
            .unwrap_or("");
        let what = format!("Opsgenie GET {host}{path}");
        let transient = |e: reqwest::Error| OnCallError::Transient {
            message: format!("{what}: {}", outbound::describe(&e)),
            retry_after: None,
        };
        let resp = self
            .http
            .get(format!("{}{path}", self.base_url))
            .query(&[("scheduleIdentifierType", "id"), ("flat", "true")])
            .header(
                reqwest::header::AUTHORIZATION,
                format!("GenieKey {}", self.key.expose()),
            )
            .send()
            .await
            .map_err(transient)?;
        let status = resp.status();
        let retry_after = outbound::retry_after(resp.headers());
        let text = resp.text().await.map_err(transient)?;
        if status.is_success() {
            let answer: Answer =
                serde_json::from_str(&text).map_err(|e| OnCallError::Permanent {
                    message: format!("{what} answered {status} with a body we could not read: {e}"),
                })?;
            return Ok(answer
                .data
                .map(|d| d.on_call_recipients)
                .unwrap_or_default());
        }
        let detail = serde_json::from_str::<ErrorBody>(&text)
            .ok()
            .and_then(|b| b.message)
            .unwrap_or_else(|| outbound::excerpt(&text));
        let message = format!("{what} answered {status}: {detail}");
        if outbound::is_transient(status) {
            return Err(OnCallError::Transient {
                message,
                retry_after,
            });
        }
        Err(OnCallError::Permanent {
            message: match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                    "{message} (check the [oncall] token: an API integration key allowed to read the schedule)"
                ),
                StatusCode::NOT_FOUND => format!("{message} (check schedule_ids)"),
                _ => message,
            },
        })
    }
}

#[async_trait::async_trait]
impl OnCall for Opsgenie {
    fn name(&self) -> &str {
        "opsgenie"
    }

    async fn on_call_now(&self) -> Result<Vec<Shift>, OnCallError> {
        let mut shifts = Vec::new();
        for (i, schedule) in self.schedule_ids.iter().enumerate() {
            for email in self.recipients(schedule).await? {
                if email.is_empty() {
                    continue;
                }
                shifts.push(Shift {
                    email,
                    level: i as i64 + 1,
                    escalation_policy: None,
                    schedule: Some(schedule.clone()),
                    start_ms: None,
                    end_ms: None,
                });
            }
        }
        Ok(shifts)
    }
}
