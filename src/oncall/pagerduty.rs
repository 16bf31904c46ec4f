//! PagerDuty REST API v2: `GET /oncalls` for the configured escalation policies and schedules,
//! with `include[]=users` so each entry carries the user's email, paged with `limit`/`offset`
//! until `more` is false.
//!
//! Authentication is `Authorization: Token token=<key>` (a read-only REST API key is enough);
//! errors name the host and path only.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::{OnCall, OnCallError, Shift};
use crate::config::Secret;
use crate::outbound;

/// PagerDuty's versioned media type (its `Accept` header picks the API version).
pub const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";
/// Entries asked per page (PagerDuty's largest classic page).
const PAGE: usize = 100;
/// Pages read at most in one refresh, so a server that always says `more` cannot loop us.
const MAX_PAGES: usize = 100;

/// A PagerDuty account's on-calls, filtered by escalation policy and/or schedule.
pub struct PagerDuty {
    base_url: String,
    token: Secret,
    escalation_policy_ids: Vec<String>,
    schedule_ids: Vec<String>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    oncalls: Vec<Entry>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct Entry {
    user: Option<User>,
    escalation_level: Option<i64>,
    escalation_policy: Option<Reference>,
    schedule: Option<Reference>,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
struct User {
    email: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

fn time_ms(s: Option<&str>, what: &str) -> Result<Option<i64>, OnCallError> {
    match s {
        None => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|_| OnCallError::Permanent {
                message: format!("PagerDuty GET /oncalls: {what} {t:?} is not an RFC 3339 time"),
            }),
    }
}

impl PagerDuty {
    /// A client for the API at `base_url` (`https://api.pagerduty.com`; tests: a local server).
    pub fn new(
        base_url: &str,
        token: Secret,
        escalation_policy_ids: Vec<String>,
        schedule_ids: Vec<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            escalation_policy_ids,
            schedule_ids,
            http: outbound::client(timeout),
        }
    }

    /// The query of one page: the filters, users included, times in UTC.
    fn query(&self, offset: usize) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&'static str, String)> = Vec::new();
        for id in &self.escalation_policy_ids {
            q.push(("escalation_policy_ids[]", id.clone()));
        }
        for id in &self.schedule_ids {
            q.push(("schedule_ids[]", id.clone()));
        }
        q.push(("include[]", "users".into()));
        q.push(("time_zone", "UTC".into()));
        q.push(("limit", PAGE.to_string()));
        q.push(("offset", offset.to_string()));
        q
    }

    async fn page(&self, offset: usize) -> Result<Page, OnCallError> {
        let what = format!("PagerDuty GET {}/oncalls", self.host());
        let resp = self
            .http
            .get(format!("{}/oncalls", self.base_url))
            .query(&self.query(offset))
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Token token={}", self.token.expose()),
            )
            .send()
            .await
            .map_err(|e| OnCallError::Transient {
                message: format!("{what}: {}", outbound::describe(&e)),
                retry_after: None,
            })?;
        let status = resp.status();
        let retry_after = outbound::retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| OnCallError::Transient {
            message: format!("{what}: {}", outbound::describe(&e)),
            retry_after: None,
        })?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| OnCallError::Permanent {
                message: format!("{what} answered {status} with a body we could not read: {e}"),
            });
        }
        let detail = serde_json::from_str::<ErrorBody>(&text)
            .ok()
            .and_then(|b| b.error)
            .map(|d| {
                let mut m = d.message.unwrap_or_default();
                if !d.errors.is_empty() {
                    m = format!("{m} ({})", d.errors.join("; "));
                }
                m
            })
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
                    "{message} (check the [oncall] token: a REST API key that can read on-calls)"
                ),
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
                    format!("{message} (check escalation_policy_ids and schedule_ids)")
                }
                _ => message,
            },
        })
    }

    /// The host (and port) of the base URL, for messages.
    fn host(&self) -> &str {
        let rest = self
            .base_url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.base_url);
        rest.split('/').next().unwrap_or(rest)
    }
}

#[async_trait::async_trait]
impl OnCall for PagerDuty {
    fn name(&self) -> &str {
        "pagerduty"
    }

    async fn on_call_now(&self) -> Result<Vec<Shift>, OnCallError> {
        let mut shifts = Vec::new();
        let mut offset = 0;
        let mut without_email = 0usize;
        for _ in 0..MAX_PAGES {
            let page = self.page(offset).await?;
            let n = page.oncalls.len();
            for e in page.oncalls {
                let Some(email) = e.user.and_then(|u| u.email).filter(|m| !m.is_empty()) else {
                    without_email += 1;
                    continue;
                };
                shifts.push(Shift {
                    email,
                    level: e.escalation_level.unwrap_or(0),
                    escalation_policy: e.escalation_policy.and_then(|r| r.id),
                    schedule: e.schedule.and_then(|r| r.id),
                    start_ms: time_ms(e.start.as_deref(), "start")?,
                    end_ms: time_ms(e.end.as_deref(), "end")?,
                });
            }
            if !page.more || n == 0 {
                if without_email > 0 {
                    tracing::warn!(
                        entries = without_email,
                        "PagerDuty on-calls without a user email were skipped (include[]=users not honoured?)"
                    );
                }
                return Ok(shifts);
            }
            offset += n;
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "PagerDuty kept answering more=true; using the first pages only"
        );
        Ok(shifts)
    }
}
