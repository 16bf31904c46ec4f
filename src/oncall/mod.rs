//! On-call as a policy context source: who is on call now, at which escalation level, for which
//! schedule or escalation policy.
//!
//! The intake runs on the chat platform's ack path, so it never asks the provider: a background
//! task ([`run`]) asks every `[oncall] cache_secs` and replaces an in-memory [`Snapshot`]
//! (email → shifts); the intake reads it through [`OnCallStatus::level_of`]. A snapshot older than
//! three refresh periods is stale and, like an empty one, says nobody is on call: a provider that
//! stops answering can only send requests to their approvers, never approve more.

pub mod opsgenie;
pub mod pagerduty;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::config::OnCallConfig;

/// One on-call shift as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    /// The person's email, as the provider knows it.
    pub email: String,
    /// Escalation level: 1 is the primary, 2 the secondary…
    pub level: i64,
    /// The escalation policy, when the provider names one.
    pub escalation_policy: Option<String>,
    /// The schedule, when the shift comes from one (none for a user named directly in a policy).
    pub schedule: Option<String>,
    /// Start, in ms since the epoch (`None`: always on call).
    pub start_ms: Option<i64>,
    /// End, in ms since the epoch (`None`: never goes off call).
    pub end_ms: Option<i64>,
}

impl Shift {
    /// Whether the shift covers `now_ms`.
    pub fn covers(&self, now_ms: i64) -> bool {
        self.start_ms.is_none_or(|s| s <= now_ms) && self.end_ms.is_none_or(|e| now_ms < e)
    }
}

/// Why a provider could not say who is on call. Messages name the host and path, never the token.
#[derive(Debug, thiserror::Error)]
pub enum OnCallError {
    /// Worth asking again (timeouts, 5xx, 429), not before `retry_after` when given.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Asking again will not help until someone fixes it (a bad token, an unknown id).
    #[error("{message}")]
    Permanent { message: String },
}

/// A source of on-call facts (PagerDuty; Opsgenie would be another implementation).
#[async_trait]
pub trait OnCall: Send + Sync {
    /// The provider's name, for logs.
    fn name(&self) -> &str;
    /// Every shift on call now for the configured schedules and escalation policies.
    async fn on_call_now(&self) -> Result<Vec<Shift>, OnCallError>;
}

/// Who was on call when the provider was last asked.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Lower-cased email → that person's shifts.
    shifts: HashMap<String, Vec<Shift>>,
    /// When the provider answered, in ms since the epoch.
    pub taken_at_ms: i64,
}

impl Snapshot {
    /// A snapshot of `shifts` taken at `taken_at_ms`.
    pub fn new(shifts: Vec<Shift>, taken_at_ms: i64) -> Self {
        let mut by_email: HashMap<String, Vec<Shift>> = HashMap::new();
        for s in shifts {
            by_email
                .entry(s.email.to_ascii_lowercase())
                .or_default()
                .push(s);
        }
        Self {
            shifts: by_email,
            taken_at_ms,
        }
    }

    /// The lowest escalation level `email` is on call at, at `now_ms`; 0 when not on call.
    pub fn level_of(&self, email: &str, now_ms: i64) -> i64 {
        self.shifts
            .get(&email.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter(|s| s.level >= 1 && s.covers(now_ms))
            .map(|s| s.level)
            .min()
            .unwrap_or(0)
    }

    /// How many people are on call in it.
    pub fn people(&self) -> usize {
        self.shifts.len()
    }
}

/// The process's view of who is on call: the provider (if configured) and its latest snapshot.
pub struct OnCallStatus {
    source: Option<Arc<dyn OnCall>>,
    snapshot: RwLock<Option<Snapshot>>,
    refresh_ms: i64,
}

impl OnCallStatus {
    /// No provider: nobody is ever on call.
    pub fn off() -> Self {
        Self::new(None, Duration::from_secs(60))
    }

    /// A provider asked every `refresh`.
    pub fn new(source: Option<Arc<dyn OnCall>>, refresh: Duration) -> Self {
        Self {
            source,
            snapshot: RwLock::new(None),
            refresh_ms: refresh.as_millis().max(1) as i64,
        }
    }

    /// Builds the provider `[oncall]` names (`None` when `provider` is unset).
    pub fn from_config(cfg: &OnCallConfig) -> Result<Self, crate::config::ConfigError> {
        let bad = |message: String| crate::config::ConfigError::Parse {
            path: "[oncall]".into(),
            message,
        };
        let refresh = Duration::from_secs(cfg.cache_secs.max(1));
        match cfg.provider.as_deref() {
            None | Some("") => Ok(Self::off()),
            Some("pagerduty") => {
                if cfg.escalation_policy_ids.is_empty() && cfg.schedule_ids.is_empty() {
                    return Err(bad(
                        "provider = \"pagerduty\" needs escalation_policy_ids or schedule_ids (else everyone on call anywhere in the account would count)".into(),
                    ));
                }
                let token = cfg.token.load("oncall.token", "PAGERDUTY_TOKEN")?;
                if token.is_empty() {
                    return Err(bad(
                        "provider = \"pagerduty\" needs a token (default env PAGERDUTY_TOKEN)"
                            .into(),
                    ));
                }
                let pd = pagerduty::PagerDuty::new(
                    &cfg.base_url,
                    token,
                    cfg.escalation_policy_ids.clone(),
                    cfg.schedule_ids.clone(),
                    Duration::from_secs(cfg.timeout_secs.max(1)),
                );
                Ok(Self::new(Some(Arc::new(pd)), refresh))
            }
            Some("opsgenie") => {
                if cfg.schedule_ids.is_empty() || !cfg.escalation_policy_ids.is_empty() {
                    return Err(bad(
                        "provider = \"opsgenie\" reads schedules: set schedule_ids in level order (primary first) and no escalation_policy_ids".into(),
                    ));
                }
                let token = cfg.token.load("oncall.token", "OPSGENIE_API_KEY")?;
                if token.is_empty() {
                    return Err(bad(
                        "provider = \"opsgenie\" needs a token (default env OPSGENIE_API_KEY)"
                            .into(),
                    ));
                }
                // The default base URL is PagerDuty's; Opsgenie has its own.
                let base = if cfg.base_url == OnCallConfig::default().base_url {
                    opsgenie::DEFAULT_BASE_URL
                } else {
                    cfg.base_url.as_str()
                };
                let og = opsgenie::Opsgenie::new(
                    base,
                    token,
                    cfg.schedule_ids.clone(),
                    Duration::from_secs(cfg.timeout_secs.max(1)),
                );
                Ok(Self::new(Some(Arc::new(og)), refresh))
            }
            Some(other) => Err(bad(format!(
                "provider = \"{other}\": use \"pagerduty\" or \"opsgenie\""
            ))),
        }
    }

    /// Whether a provider is configured.
    pub fn is_on(&self) -> bool {
        self.source.is_some()
    }

    /// The lowest escalation level `email` is on call at now (0: not on call, no provider, no
    /// snapshot yet, or a stale one). Reads memory only: safe on the ack path.
    pub fn level_of(&self, email: &str, now_ms: i64) -> i64 {
        let Ok(guard) = self.snapshot.read() else {
            return 0;
        };
        match guard.as_ref() {
            Some(s) if now_ms - s.taken_at_ms <= self.stale_after_ms() => s.level_of(email, now_ms),
            _ => 0,
        }
    }

    /// When the current snapshot was taken (`None` before the first answer).
    pub fn taken_at_ms(&self) -> Option<i64> {
        self.snapshot
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.taken_at_ms))
    }

    /// Age beyond which a snapshot no longer counts: three refresh periods.
    pub fn stale_after_ms(&self) -> i64 {
        self.refresh_ms.saturating_mul(3)
    }

    /// Replaces the snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        if let Ok(mut guard) = self.snapshot.write() {
            *guard = Some(snapshot);
        }
    }

    /// Asks the provider once and replaces the snapshot; on failure the old one stays (until it
    /// is stale). Returns the number of people on call, or the error.
    pub async fn refresh(&self, now_ms: impl Fn() -> i64) -> Result<usize, OnCallError> {
        let Some(source) = &self.source else {
            return Ok(0);
        };
        let shifts = source.on_call_now().await?;
        let snapshot = Snapshot::new(shifts, now_ms());
        let people = snapshot.people();
        self.replace(snapshot);
        Ok(people)
    }
}

/// Refreshes the on-call snapshot every `refresh` until `stop` turns true (never without a
/// provider). A failure is logged and the next try waits for the provider's `Retry-After` when
/// that is longer.
pub async fn run(app: Arc<crate::App>, mut stop: watch::Receiver<bool>) {
    let status = &app.on_call;
    let Some(source) = &status.source else {
        return;
    };
    let provider = source.name().to_string();
    let period = Duration::from_millis(status.refresh_ms as u64);
    while !*stop.borrow() {
        let wait = match status.refresh(|| app.now_ms()).await {
            Ok(people) => {
                crate::metrics::oncall_refresh(&provider, "ok");
                tracing::debug!(provider, people, "on-call snapshot refreshed");
                period
            }
            Err(e) => {
                let (class, retry_after) = match &e {
                    OnCallError::Transient { retry_after, .. } => ("transient", *retry_after),
                    OnCallError::Permanent { .. } => ("permanent", None),
                };
                crate::metrics::oncall_refresh(&provider, class);
                tracing::error!(provider, error = %e, stale_after_secs = status.stale_after_ms() / 1000,
                    "could not refresh who is on call; keeping the last answer until it is stale (then nobody counts as on call)");
                period.max(retry_after.unwrap_or_default())
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shift(email: &str, level: i64, start: Option<i64>, end: Option<i64>) -> Shift {
        Shift {
            email: email.into(),
            level,
            escalation_policy: Some("PT20YPA".into()),
            schedule: None,
            start_ms: start,
            end_ms: end,
        }
    }

    #[test]
    fn the_lowest_current_level_counts_and_email_case_does_not() {
        let s = Snapshot::new(
            vec![
                shift("Ada@Example.com", 2, Some(0), Some(1_000)),
                shift("ada@example.com", 1, Some(500), Some(2_000)),
                shift("bo@example.com", 3, None, None),
            ],
            0,
        );
        assert_eq!(s.level_of("ada@example.com", 100), 2);
        assert_eq!(s.level_of("ADA@example.com", 600), 1);
        // After both shifts ended: not on call, even before the next refresh.
        assert_eq!(s.level_of("ada@example.com", 2_000), 0);
        assert_eq!(s.level_of("bo@example.com", i64::MAX - 1), 3);
        assert_eq!(s.level_of("nobody@example.com", 100), 0);
        assert_eq!(s.people(), 2);
    }

    #[test]
    fn no_snapshot_or_a_stale_one_means_nobody_is_on_call() {
        let status = OnCallStatus::new(None, Duration::from_secs(60));
        assert_eq!(status.level_of("bo@example.com", 10), 0);
        status.replace(Snapshot::new(
            vec![shift("bo@example.com", 1, None, None)],
            1_000,
        ));
        assert_eq!(status.level_of("bo@example.com", 1_000), 1);
        assert_eq!(status.level_of("bo@example.com", 1_000 + 180_000), 1);
        assert_eq!(status.level_of("bo@example.com", 1_000 + 180_001), 0);
    }

    struct Fixed(Vec<Shift>);

    #[async_trait]
    impl OnCall for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        async fn on_call_now(&self) -> Result<Vec<Shift>, OnCallError> {
            if self.0.is_empty() {
                return Err(OnCallError::Permanent {
                    message: "no".into(),
                });
            }
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_snapshot() {
        let ok = OnCallStatus::new(
            Some(Arc::new(Fixed(vec![shift("a@x.io", 1, None, None)]))),
            Duration::from_secs(60),
        );
        assert_eq!(ok.refresh(|| 5).await.unwrap(), 1);
        assert_eq!(ok.level_of("a@x.io", 5), 1);
        let failing = OnCallStatus::new(Some(Arc::new(Fixed(vec![]))), Duration::from_secs(60));
        failing.replace(Snapshot::new(vec![shift("a@x.io", 2, None, None)], 5));
        assert!(failing.refresh(|| 6).await.is_err());
        assert_eq!(failing.level_of("a@x.io", 6), 2);
        assert!(!OnCallStatus::off().is_on());
    }
}
