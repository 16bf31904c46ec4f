//! Configuration: one TOML file, overridden by `GRANTRY__SECTION__KEY` environment variables.
//!
//! Secrets (signing secrets, tokens) are never written in the file: each is named by an
//! environment variable (`*_env`) or a file (`*_file`) and held in [`Secret`], which never prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A value that must never reach a log, an error or the audit.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that needs it (an HMAC key, an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty (not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a secret comes from: an environment variable or a file (Kubernetes Secret mounts).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment override {var}: {message}")]
    Override { var: String, message: String },
    #[error("secret {what}: {message}")]
    Secret { what: String, message: String },
}

impl SecretSource {
    /// Reads the secret. `default_env` is used when neither `env` nor `file` is set.
    /// A missing secret is an empty [`Secret`]; the caller decides whether that is fatal.
    pub fn load(&self, what: &str, default_env: &str) -> Result<Secret, ConfigError> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Secret {
                what: what.to_string(),
                message: format!("cannot read file {}: {}", path.display(), e.kind()),
            })?;
            return Ok(Secret::new(text.trim_end_matches(['\r', '\n'])));
        }
        let var = self.env.as_deref().unwrap_or(default_env);
        Ok(std::env::var(var).map(Secret::new).unwrap_or_default())
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:3000`.
    pub listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// On SIGTERM, how long to keep serving while `/readyz` answers 503, so that load balancers
    /// stop routing here before the listener closes, in seconds (Kubernetes: a few seconds).
    pub shutdown_drain_secs: u64,
    /// On SIGTERM, the bound on the whole shutdown (drain included): in-flight requests and jobs
    /// in hand get until then; jobs still running are then released to other replicas. Keep it
    /// below Kubernetes' `terminationGracePeriodSeconds`.
    pub shutdown_timeout_secs: u64,
    /// Threads serving HTTP and running jobs (tokio's workers); 0 picks: one per core, less one
    /// where the database writes on this machine's cores (SQLite, whose filer is a thread of its
    /// own; PostgreSQL on this host), at least one. `TOKIO_WORKER_THREADS` in the environment
    /// overrides the pick, not a number set here.
    pub worker_threads: usize,
}

impl ServerConfig {
    /// The number of worker threads to start, or `None` for tokio's own choice (one per core,
    /// or `TOKIO_WORKER_THREADS`), given the database URL and the cores available.
    pub fn workers(&self, database_url: &str, cores: usize) -> Option<usize> {
        if self.worker_threads > 0 {
            return Some(self.worker_threads);
        }
        if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            return None;
        }
        crate::store::database_on_this_host(database_url).then(|| cores.saturating_sub(1).max(1))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3000".into(),
            max_body_bytes: 256 * 1024,
            shutdown_drain_secs: 0,
            shutdown_timeout_secs: 20,
            worker_threads: 0,
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/grantry.db` (created on first start).
    pub url: String,
    /// SQLite `synchronous`: `full` (default: every acknowledged request survives power loss)
    /// or `normal` (survives a process crash; faster).
    pub synchronous: String,
    /// Readers in the pool (SQLite writes through one connection; PostgreSQL: the pool's size).
    pub read_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://grantry.db".into(),
            synchronous: "full".into(),
            read_connections: 4,
        }
    }
}

/// `[slack]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// Web API base, e.g. `https://slack.com/api` (GovSlack: `https://slack-gov.com/api`).
    pub api_base_url: String,
    /// Default env: `SLACK_SIGNING_SECRET`.
    pub signing_secret: SecretSource,
    /// Default env: `SLACK_BOT_TOKEN`.
    pub bot_token: SecretSource,
    /// Accepted clock skew for request timestamps, in seconds (Slack: 5 minutes).
    pub max_skew_secs: i64,
    /// Per-call timeout for Web API calls, in seconds.
    pub timeout_secs: u64,
    /// The IT status channel id, for failures that need a human.
    pub status_channel: Option<String>,
    /// `http` (Slack POSTs to our endpoints; needs a public URL) or `socket` (we connect out to
    /// Slack over a WebSocket with an app-level token; no public URL needed).
    pub mode: String,
    /// App-level token (`xapp-…`, scope `connections:write`) for Socket Mode. Default env: `SLACK_APP_TOKEN`.
    pub app_token: SecretSource,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            api_base_url: "https://slack.com/api".into(),
            signing_secret: SecretSource::default(),
            bot_token: SecretSource::default(),
            max_skew_secs: 300,
            timeout_secs: 10,
            status_channel: None,
            mode: "http".into(),
            app_token: SecretSource::default(),
        }
    }
}

/// `[teams]`: Microsoft Teams through the Bot Framework. Off while `app_id` is empty.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TeamsConfig {
    /// The bot's Microsoft App ID: the audience every incoming token must carry.
    pub app_id: String,
    /// The bot's client secret. Default env: `TEAMS_APP_PASSWORD`.
    pub app_password: SecretSource,
    /// The tenant the bot's app registration lives in: `botframework.com` (multi-tenant) or a
    /// tenant id (single-tenant bots).
    pub app_tenant: String,
    /// Where the signing keys of the Bot Connector are described.
    pub openid_metadata_url: String,
    /// The issuer incoming tokens must carry.
    pub token_issuer: String,
    /// The OAuth token endpoint for outgoing calls; empty: Microsoft's for `app_tenant`.
    pub token_url: String,
    /// The scope asked for outgoing calls.
    pub oauth_scope: String,
    /// The Bot Connector base for people who never wrote to the bot (their first proactive
    /// message creates the conversation), e.g. `https://smba.trafficmanager.net/teams/`.
    pub service_url: String,
    /// The organisation's Entra tenant id, for creating conversations.
    pub tenant_id: Option<String>,
    /// The IT status channel's conversation id (`19:…@thread.tacv2`), when IT lives in Teams.
    pub status_conversation: Option<String>,
    /// Accepted clock skew for token expiry, in seconds (the Bot Framework SDK: 5 minutes).
    pub max_skew_secs: i64,
    /// Per-call timeout for outgoing calls and key fetches, in seconds.
    pub timeout_secs: u64,
    /// How long fetched signing keys are trusted before they are fetched again, in seconds.
    pub keys_max_age_secs: u64,
}

impl Default for TeamsConfig {
    fn default() -> Self {
        Self {
            app_id: String::new(),
            app_password: SecretSource::default(),
            app_tenant: "botframework.com".into(),
            openid_metadata_url:
                "https://login.botframework.com/v1/.well-known/openidconfiguration".into(),
            token_issuer: "https://api.botframework.com".into(),
            token_url: String::new(),
            oauth_scope: "https://api.botframework.com/.default".into(),
            service_url: "https://smba.trafficmanager.net/teams/".into(),
            tenant_id: None,
            status_conversation: None,
            max_skew_secs: 300,
            timeout_secs: 10,
            keys_max_age_secs: 24 * 3600,
        }
    }
}

impl TeamsConfig {
    /// Whether Teams is configured.
    pub fn enabled(&self) -> bool {
        !self.app_id.trim().is_empty()
    }

    /// The token endpoint for outgoing calls.
    pub fn token_endpoint(&self) -> String {
        if self.token_url.is_empty() {
            format!(
                "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
                self.app_tenant
            )
        } else {
            self.token_url.clone()
        }
    }
}

/// `[jobs]`: the durable job queue's workers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Worker tasks in this process (0: this process only takes requests).
    pub workers: usize,
    /// Tries before a job is given up as failed.
    pub max_attempts: i64,
    /// First retry delay, in milliseconds; doubles each try, with jitter.
    pub backoff_base_ms: i64,
    /// Longest retry delay, in milliseconds.
    pub backoff_max_ms: i64,
    /// How long a claimed job is reserved before another worker may take it over.
    pub lease_secs: i64,
    /// How often idle workers look for jobs another replica enqueued, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often the expiry sweeper runs, in milliseconds.
    pub sweep_interval_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 15 * 60 * 1_000,
            lease_secs: 120,
            poll_interval_ms: 2_000,
            sweep_interval_ms: 30_000,
        }
    }
}

/// `[catalog]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Catalog file, relative to the config file's folder.
    pub path: PathBuf,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            path: "catalog.toml".into(),
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Folder of `*.cedar` files, relative to the config file's folder. When it does not exist,
    /// the built-in baseline applies (anyone active may ask; conflicts are refused; approvers decide).
    pub dir: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: "policies".into(),
        }
    }
}

/// `[directory]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// People file (TOML `[[people]]`), relative to the config file's folder.
    pub people_file: Option<PathBuf>,
    /// Find the Slack id of people listed without one by their email (Slack's
    /// `users.lookupByEmail`, scope `users:read.email`), in the background.
    pub slack_lookup: bool,
    /// How often the lookup runs again, in seconds (new Slack accounts get found).
    pub slack_lookup_interval_secs: u64,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            people_file: None,
            slack_lookup: true,
            slack_lookup_interval_secs: 6 * 3600,
        }
    }
}

/// `[requests]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    /// Shortest reason accepted, in characters.
    pub min_reason_chars: usize,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        Self {
            min_reason_chars: 8,
        }
    }
}

/// `[approvals]`: deny reasons, reminders, escalation and time-outs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Whether Deny asks the approver for a reason (shown to the requester).
    pub deny_reason_required: bool,
    /// How long approvers have before a reminder, by risk (`low`, `medium`, `high`, `critical`);
    /// after twice that the request escalates.
    pub sla: BTreeMap<String, String>,
    /// A request with no decision after this long times out.
    pub timeout: String,
    /// Who is added as approver when a request escalates (emails); IT's status channel is told too.
    pub escalation_approvers: Vec<String>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            deny_reason_required: true,
            sla: BTreeMap::from([
                ("low".to_string(), "24h".to_string()),
                ("medium".to_string(), "8h".to_string()),
                ("high".to_string(), "4h".to_string()),
                ("critical".to_string(), "1h".to_string()),
            ]),
            timeout: "3d".into(),
            escalation_approvers: Vec::new(),
        }
    }
}

impl ApprovalsConfig {
    /// Checks every duration, so the sweeper never meets a bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: String, e: crate::domain::duration::DurationError| ConfigError::Parse {
            path: PathBuf::from("[approvals]"),
            message: format!("{key}: {e}"),
        };
        for (risk, d) in &self.sla {
            if !["low", "medium", "high", "critical"].contains(&risk.as_str()) {
                return Err(ConfigError::Parse {
                    path: PathBuf::from("[approvals]"),
                    message: format!("sla.{risk}: unknown risk (low, medium, high, critical)"),
                });
            }
            crate::domain::AccessDuration::parse(d).map_err(|e| bad(format!("sla.{risk}"), e))?;
        }
        crate::domain::AccessDuration::parse(&self.timeout)
            .map_err(|e| bad("timeout".into(), e))?;
        Ok(())
    }

    /// The reminder SLA for a risk level, in milliseconds (8 hours when not configured).
    pub fn sla_ms(&self, risk: &str) -> i64 {
        self.sla
            .get(risk)
            .and_then(|d| crate::domain::AccessDuration::parse(d).ok())
            .map(|d| d.millis())
            .unwrap_or(8 * 3_600_000)
    }

    /// How long a request may wait for a decision, in milliseconds.
    pub fn timeout_ms(&self) -> i64 {
        crate::domain::AccessDuration::parse(&self.timeout)
            .map(|d| d.millis())
            .unwrap_or(3 * 86_400_000)
    }
}

/// `[lifecycle]`: warnings before expiry, offboarding, reconciliation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Warn a grant's holder this long before it expires (each once), e.g. `["1d", "1h"]`.
    pub warn_before: Vec<String>,
    /// People who may revoke any grant and offboard anyone from chat (emails).
    pub it_admins: Vec<String>,
    /// Shared secret the HR system or IdP sends to `POST /hooks/offboard` as a bearer token.
    /// Default env: `GRANTRY_OFFBOARD_SECRET`; with none set the hook is closed.
    pub offboard_secret: SecretSource,
    /// How often the ledger is reconciled with the apps, in minutes (0: only `grantry reconcile`).
    pub reconcile_every_minutes: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            warn_before: vec!["1d".into(), "1h".into()],
            it_admins: Vec::new(),
            offboard_secret: SecretSource::default(),
            reconcile_every_minutes: 0,
        }
    }
}

impl LifecycleConfig {
    /// The warning thresholds in minutes, largest first. Errors name the bad entry.
    pub fn warn_minutes(&self) -> Result<Vec<u64>, ConfigError> {
        let mut v = Vec::new();
        for w in &self.warn_before {
            let d = crate::domain::AccessDuration::parse(w).map_err(|e| ConfigError::Parse {
                path: PathBuf::from("[lifecycle]"),
                message: format!("warn_before {w:?}: {e}"),
            })?;
            v.push(d.minutes());
        }
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.dedup();
        Ok(v)
    }

    /// Whether `email` is an IT admin.
    pub fn is_it_admin(&self, email: &str) -> bool {
        self.it_admins.iter().any(|a| a.eq_ignore_ascii_case(email))
    }
}

/// `[digest]`: IT's digest in the status channel (`slack.status_channel`, else
/// `teams.status_conversation`), on a schedule and on demand (`/access digest`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// When to post it: a five-field cron expression (`minute hour day-of-month month
    /// day-of-week`, e.g. `"0 9 * * MON"`) read in `timezone`. Empty: only on demand.
    pub schedule: String,
    /// The IANA time zone the schedule and the digest's times are read in, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// How far back the digest looks, e.g. `7d`.
    pub period: String,
    /// Grants ending within this long are listed as expiring soon, e.g. `3d`.
    pub expiring_within: String,
    /// An entitlement requested at least this often in the period, every time approved by people
    /// and never denied, is suggested for an `auto_approve` policy.
    pub suggest_min_requests: u64,
    /// How many entitlements the "most requested" list shows.
    pub top: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            schedule: String::new(),
            timezone: "UTC".into(),
            period: "7d".into(),
            expiring_within: "3d".into(),
            suggest_min_requests: 10,
            top: 5,
        }
    }
}

/// `[oncall]`: who is on call, for policies (`context.on_call_level`). Off when `provider` is unset.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnCallConfig {
    /// `pagerduty` or `opsgenie` (unset: off; nobody counts as on call).
    pub provider: Option<String>,
    /// REST API base: `https://api.pagerduty.com` (the default; PagerDuty's EU accounts use the
    /// same host); for Opsgenie the default becomes `https://api.opsgenie.com` (EU:
    /// `https://api.eu.opsgenie.com`).
    pub base_url: String,
    /// REST API key. Default env: `PAGERDUTY_TOKEN` (Opsgenie: `OPSGENIE_API_KEY`).
    pub token: SecretSource,
    /// Escalation policies whose on-calls count (at least one of these or `schedule_ids`).
    pub escalation_policy_ids: Vec<String>,
    /// Schedules whose on-calls count.
    pub schedule_ids: Vec<String>,
    /// How often the snapshot of who is on call is refreshed, in seconds; after three times this
    /// without an answer, nobody counts as on call.
    pub cache_secs: u64,
    /// Per-call timeout, in seconds.
    pub timeout_secs: u64,
}

impl Default for OnCallConfig {
    fn default() -> Self {
        Self {
            provider: None,
            base_url: "https://api.pagerduty.com".into(),
            token: SecretSource::default(),
            escalation_policy_ids: Vec::new(),
            schedule_ids: Vec::new(),
            cache_secs: 60,
            timeout_secs: 10,
        }
    }
}

impl DigestConfig {
    fn bad(message: String) -> ConfigError {
        ConfigError::Parse {
            path: PathBuf::from("[digest]"),
            message,
        }
    }

    /// The schedule, parsed (`None`: no scheduled digest). Errors say what is wrong and where.
    pub fn schedule(&self) -> Result<Option<crate::cron::Schedule>, ConfigError> {
        let tz = self.tz()?;
        if self.schedule.trim().is_empty() {
            return Ok(None);
        }
        crate::cron::Schedule::parse(&self.schedule, tz)
            .map(Some)
            .map_err(|e| Self::bad(format!("schedule {:?}: {e}", self.schedule)))
    }

    /// The time zone.
    pub fn tz(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.timezone.parse().map_err(|_| {
            Self::bad(format!(
                "timezone {:?} is not an IANA time zone (like \"Europe/Berlin\" or \"UTC\")",
                self.timezone
            ))
        })
    }

    /// The period in milliseconds.
    pub fn period_ms(&self) -> Result<i64, ConfigError> {
        crate::domain::AccessDuration::parse(&self.period)
            .map(|d| d.millis())
            .map_err(|e| Self::bad(format!("period {:?}: {e}", self.period)))
    }

    /// The "expiring soon" window in milliseconds.
    pub fn expiring_within_ms(&self) -> Result<i64, ConfigError> {
        crate::domain::AccessDuration::parse(&self.expiring_within)
            .map(|d| d.millis())
            .map_err(|e| Self::bad(format!("expiring_within {:?}: {e}", self.expiring_within)))
    }

    /// Checks every key, so that a bad schedule stops the start with a clear error.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.schedule()?;
        self.period_ms()?;
        self.expiring_within_ms()?;
        if self.top == 0 {
            return Err(Self::bad("top must be at least 1".into()));
        }
        Ok(())
    }
}

/// `[admin]`: the admin pages (`/admin`): the ledger, one request's history, charts, export.
/// Off unless `enabled`. docs/admin.md.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the pages.
    pub enabled: bool,
    /// `oidc` (grantry signs people in with the organisation's identity provider) or `header`
    /// (a reverse proxy in front authenticates and names the person in `header`).
    pub auth: String,
    /// `header` auth: the header the proxy sets to the signed-in person's email. The proxy must
    /// set it on every request and strip it from what clients send.
    pub header: String,
    /// `oidc` auth: the issuer; its discovery document is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// `oidc` auth: the client id registered with the identity provider.
    pub client_id: String,
    /// `oidc` auth: the client secret. Default env: `GRANTRY_ADMIN_CLIENT_SECRET`.
    pub client_secret: SecretSource,
    /// `oidc` auth: where the identity provider sends people back, registered with it:
    /// `https://<grantry's host>/admin/callback`.
    pub redirect_url: String,
    /// The key that signs session cookies (at least 32 characters). Default env:
    /// `GRANTRY_ADMIN_SESSION_SECRET`.
    pub session_secret: SecretSource,
    /// How long a sign-in lasts, in hours.
    pub session_hours: u64,
    /// Mark cookies `Secure` (sent over HTTPS only). Turn off only for a local trial over HTTP.
    pub secure_cookies: bool,
    /// Who may read the pages besides `[lifecycle] it_admins` (emails), e.g. auditors.
    pub viewers: Vec<String>,
    /// Rows per page of the ledger.
    pub page_size: i64,
    /// Per-call timeout for calls to the identity provider, in seconds.
    pub timeout_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            auth: "oidc".into(),
            header: "X-Forwarded-Email".into(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: SecretSource::default(),
            redirect_url: String::new(),
            session_secret: SecretSource::default(),
            session_hours: 8,
            secure_cookies: true,
            viewers: Vec::new(),
            page_size: 50,
            timeout_secs: 10,
        }
    }
}

impl AdminConfig {
    fn bad(message: String) -> ConfigError {
        ConfigError::Parse {
            path: PathBuf::from("[admin]"),
            message,
        }
    }

    /// Checks the keys the chosen `auth` needs, so a half-configured login stops the start.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        match self.auth.as_str() {
            "header" if self.header.trim().is_empty() => Err(Self::bad(
                "auth = \"header\" needs header (e.g. \"X-Forwarded-Email\")".into(),
            )),
            "header" => Ok(()),
            "oidc" => {
                for (key, v) in [
                    ("issuer", &self.issuer),
                    ("client_id", &self.client_id),
                    ("redirect_url", &self.redirect_url),
                ] {
                    if v.trim().is_empty() {
                        return Err(Self::bad(format!("auth = \"oidc\" needs {key}")));
                    }
                }
                Ok(())
            }
            other => Err(Self::bad(format!(
                "auth = \"{other}\": use \"oidc\" or \"header\""
            ))),
        }?;
        if self.page_size < 1 || self.page_size > 1000 {
            return Err(Self::bad("page_size must be between 1 and 1000".into()));
        }
        if self.session_hours == 0 {
            return Err(Self::bad("session_hours must be at least 1".into()));
        }
        Ok(())
    }
}

/// One `[connectors.<name>]` table: `type` picks the connector, the rest is its own.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ConnectorConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub slack: SlackConfig,
    pub teams: TeamsConfig,
    pub jobs: JobsConfig,
    pub catalog: CatalogConfig,
    pub policy: PolicyConfig,
    pub directory: DirectoryConfig,
    pub requests: RequestsConfig,
    pub approvals: ApprovalsConfig,
    pub lifecycle: LifecycleConfig,
    pub digest: DigestConfig,
    pub oncall: OnCallConfig,
    pub admin: AdminConfig,
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// `[service_desks.<name>]`: where catalog apps with `service_desk` keep their tickets.
    pub service_desks: BTreeMap<String, ConnectorConfig>,
    /// Folder relative paths are resolved against (the config file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Prefix of environment overrides: `GRANTRY__DATABASE__URL=…`.
pub const ENV_PREFIX: &str = "GRANTRY__";

impl Config {
    /// Reads `path` (a missing file is an error) and applies environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let mut cfg = Self::from_toml(&text, path, &vars)?;
        cfg.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    /// Parses TOML text and applies the given `GRANTRY__…` overrides.
    pub fn from_toml(
        text: &str,
        path: &Path,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        for (var, value) in overrides {
            apply_override(&mut table, var, value)?;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// `GRANTRY__JOBS__WORKERS=0` sets `jobs.workers = 0`; values are read as TOML when they parse
/// (numbers, booleans), else as strings. Keys are lower-cased.
fn apply_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Override {
            var: var.to_string(),
            message: "empty key segment".into(),
        });
    }
    let parsed: toml::Value = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = path.split_last().expect("non-empty split");
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| ConfigError::Override {
            var: var.to_string(),
            message: format!("'{p}' is not a table"),
        })?;
    }
    cur.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_leave_a_core_to_a_database_on_this_host_unless_set() {
        assert!(std::env::var_os("TOKIO_WORKER_THREADS").is_none());
        let mut server = ServerConfig::default();
        assert_eq!(server.workers("sqlite://g.db", 2), Some(1));
        assert_eq!(server.workers("sqlite://g.db", 8), Some(7));
        assert_eq!(server.workers("sqlite://g.db", 1), Some(1));
        for here in [
            "postgres://grantry@127.0.0.1:5432/g",
            "postgresql://localhost/g",
            "postgres://[::1]:5432/g",
            "postgres:///g?host=/var/run/postgresql",
            "postgres:///g",
        ] {
            assert_eq!(server.workers(here, 2), Some(1), "{here}");
            assert_eq!(server.workers(here, 8), Some(7), "{here}");
        }
        for elsewhere in [
            "postgres://db/g",
            "postgres://10.0.0.5/g",
            "postgres://localhost,db.internal/g",
            "not a url",
        ] {
            assert_eq!(
                server.workers(elsewhere, 2),
                None,
                "{elsewhere}: tokio's own, one per core"
            );
        }
        server.worker_threads = 3;
        assert_eq!(server.workers("sqlite://g.db", 2), Some(3));
        assert_eq!(server.workers("postgres://db/g", 2), Some(3));
    }

    #[test]
    fn env_overrides_nested_keys_with_types() {
        let cfg = Config::from_toml(
            "[jobs]\nworkers = 4\n",
            Path::new("x.toml"),
            &[
                ("GRANTRY__JOBS__WORKERS".into(), "0".into()),
                ("GRANTRY__DATABASE__URL".into(), "sqlite:///tmp/x.db".into()),
            ],
        )
        .unwrap();
        assert_eq!(cfg.jobs.workers, 0);
        assert_eq!(cfg.database.url, "sqlite:///tmp/x.db");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_toml("[jobs]\nworkerz = 4\n", Path::new("x.toml"), &[]).unwrap_err();
        assert!(err.to_string().contains("workerz"), "{err}");
    }

    #[test]
    fn a_bad_digest_schedule_or_zone_is_named() {
        let load = |digest: &str| {
            Config::from_toml(&format!("[digest]\n{digest}\n"), Path::new("x.toml"), &[])
                .unwrap()
                .digest
        };
        let ok = load("schedule = \"0 9 * * MON\"\ntimezone = \"Europe/Berlin\"");
        assert!(ok.check().is_ok());
        assert!(ok.schedule().unwrap().is_some());
        assert!(
            load("").schedule().unwrap().is_none(),
            "no schedule by default"
        );
        let err = load("schedule = \"0 25 * * MON\"").check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "[digest]: schedule \"0 25 * * MON\": hour: 25 is out of range 0-23"
        );
        let err = load("timezone = \"Mars/Olympus\"").check().unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
        assert!(load("period = \"7x\"").check().is_err());
    }

    #[test]
    fn oncall_is_off_unless_a_provider_is_named() {
        let cfg = Config::from_toml("", Path::new("x.toml"), &[]).unwrap();
        assert_eq!(cfg.oncall.provider, None);
        assert_eq!(cfg.oncall.cache_secs, 60);
        let cfg = Config::from_toml(
            "[oncall]\nprovider = \"pagerduty\"\ntoken = { env = \"PD\" }\nescalation_policy_ids = [\"PT20YPA\"]\ncache_secs = 30\n",
            Path::new("x.toml"),
            &[],
        )
        .unwrap();
        assert_eq!(cfg.oncall.provider.as_deref(), Some("pagerduty"));
        assert_eq!(cfg.oncall.token.env.as_deref(), Some("PD"));
        assert_eq!(cfg.oncall.escalation_policy_ids, ["PT20YPA"]);
        assert_eq!(cfg.oncall.base_url, "https://api.pagerduty.com");
    }

    #[test]
    fn admin_pages_are_off_by_default_and_a_half_configured_login_is_named() {
        let load = |admin: &str| {
            Config::from_toml(&format!("[admin]\n{admin}\n"), Path::new("x.toml"), &[])
                .unwrap()
                .admin
        };
        let off = Config::from_toml("", Path::new("x.toml"), &[])
            .unwrap()
            .admin;
        assert!(!off.enabled && off.check().is_ok());
        assert!(load("enabled = true\nauth = \"header\"").check().is_ok());
        let err = load("enabled = true\nclient_id = \"c\"")
            .check()
            .unwrap_err();
        assert_eq!(err.to_string(), "[admin]: auth = \"oidc\" needs issuer");
        let err = load("enabled = true\nauth = \"basic\"")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("\"basic\""), "{err}");
        let ok = load(
            "enabled = true\nissuer = \"https://idp\"\nclient_id = \"c\"\nredirect_url = \"https://g/admin/callback\"",
        );
        assert!(ok.check().is_ok());
        assert!(ok.secure_cookies, "cookies are Secure unless turned off");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("xoxb-very-secret");
        assert!(!format!("{s:?}").contains("xoxb"));
    }
}
