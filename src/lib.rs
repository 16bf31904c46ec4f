//! grantry keeps the grants: a Slack (and Teams) bot that governs access to SaaS apps.
//!
//! The parts, and what depends on what (see ARCHITECTURE.md):
//! `domain` (no I/O) ← `policy`, `routing`, `chat`, `connectors`, `store` ← `flow` (use cases)
//! ← `http` (inbound, ack fast) and `jobs` (everything slow, durable). [`App`] wires them.

pub mod audit;
pub mod chat;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod cron;
pub mod directory;
pub mod domain;
pub mod flow;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod oncall;
pub mod outbound;
pub mod policy;
pub mod routing;
mod server;
pub mod servicedesk;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat::ChatPlatform;
use clock::Clock;
use config::{Config, Secret};
use connectors::Connectors;
use directory::Directory;
use domain::Catalog;
use store::{Store, StoreOptions};

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("catalog {path}: {source}")]
    Catalog {
        path: String,
        source: domain::CatalogError,
    },
    #[error("cannot read catalog {path}: {message}")]
    CatalogRead { path: String, message: String },
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
    #[error(transparent)]
    Connector(#[from] connectors::ConnectorConfigError),
    #[error(transparent)]
    Desk(#[from] servicedesk::DeskConfigError),
    #[error("catalog app {app}: service_desk '{desk}' is not configured (configured: {known})")]
    UnknownDesk {
        app: String,
        desk: String,
        known: String,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Policy(#[from] policy::cedar::PolicyError),
    #[error("{0} is not set: grantry cannot {1} without it")]
    MissingSecret(&'static str, &'static str),
}

/// Everything handlers and workers share.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    /// The Cedar policies.
    pub policy: policy::cedar::Engine,
    pub directory: Arc<Directory>,
    pub connectors: Connectors,
    /// The service desks tickets are kept in (`[service_desks.<name>]`).
    pub service_desks: servicedesk::ServiceDesks,
    pub chats: HashMap<&'static str, Arc<dyn ChatPlatform>>,
    pub clock: Arc<dyn Clock>,
    pub slack_signing_secret: Secret,
    /// Slack's Web API, for what only Slack has (opening modals).
    pub slack: chat::slack::SlackClient,
    /// Socket Mode's app-level token (empty in HTTP mode).
    pub slack_app_token: Secret,
    /// The offboarding hook's shared secret (empty: the hook is closed).
    pub offboard_secret: Secret,
    /// Microsoft Teams' token validator (None: Teams is not configured; `/teams/messages` is 404).
    pub teams_auth: Option<chat::teams::auth::BotAuth>,
    /// Who is on call (a snapshot refreshed in the background; `[oncall]`).
    pub on_call: oncall::OnCallStatus,
    /// Set when shutdown begins: `/readyz` answers 503 so load balancers stop routing here.
    pub draining: std::sync::atomic::AtomicBool,
    /// The admin pages' sign-in (None: `[admin]` is off and `/admin` is 404).
    pub admin: Option<http::admin::Admin>,
}

impl App {
    /// Reads the catalog file named by the config and checks it against the configured connectors.
    pub fn load_catalog(config: &Config) -> Result<Catalog, StartError> {
        let path = config.resolve(&config.catalog.path);
        let text = std::fs::read_to_string(&path).map_err(|e| StartError::CatalogRead {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let names: Vec<String> = config.connectors.keys().cloned().collect();
        Catalog::parse(&text, Some(&names)).map_err(|source| StartError::Catalog {
            path: path.display().to_string(),
            source,
        })
    }

    /// Builds the app from its config: catalog, directory, connectors, chat clients, store
    /// (migrated). Secrets are read from where the config says.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<App, StartError> {
        config.approvals.check()?;
        config.lifecycle.warn_minutes()?;
        config.digest.check()?;
        let catalog = Self::load_catalog(&config)?;
        let directory = match &config.directory.people_file {
            Some(p) => Directory::load(&config.resolve(p))?,
            None => Directory::default(),
        };
        let connectors = Connectors::from_config(&config.connectors)?;
        let service_desks = servicedesk::ServiceDesks::from_config(&config.service_desks)?;
        for a in &catalog.apps {
            if let Some(d) = &a.service_desk {
                if service_desks.get(d).is_none() {
                    return Err(StartError::UnknownDesk {
                        app: a.id.clone(),
                        desk: d.clone(),
                        known: service_desks.names().join(", "),
                    });
                }
            }
        }
        let policy = policy::cedar::Engine::load(&config.resolve(&config.policy.dir))?;
        let on_call = oncall::OnCallStatus::from_config(&config.oncall)?;
        tracing::info!(policies = policy.len(), from = %policy.source, "policies loaded");
        let token = config
            .slack
            .bot_token
            .load("slack.bot_token", "SLACK_BOT_TOKEN")?;
        // A Teams-only deployment leaves Slack out: no bot token and Teams configured.
        let slack_enabled = !(token.is_empty() && config.teams.enabled());
        let signing = config
            .slack
            .signing_secret
            .load("slack.signing_secret", "SLACK_SIGNING_SECRET")?;
        let socket_mode = slack_enabled && config.slack.mode == "socket";
        if config.slack.mode != "socket" && config.slack.mode != "http" {
            return Err(StartError::Config(config::ConfigError::Parse {
                path: "[slack]".into(),
                message: format!(
                    "mode = \"{}\": use \"http\" or \"socket\"",
                    config.slack.mode
                ),
            }));
        }
        let app_token = config
            .slack
            .app_token
            .load("slack.app_token", "SLACK_APP_TOKEN")?;
        if socket_mode && app_token.is_empty() {
            return Err(StartError::MissingSecret(
                "SLACK_APP_TOKEN",
                "connect to Slack in Socket Mode",
            ));
        }
        if slack_enabled && signing.is_empty() && !socket_mode {
            return Err(StartError::MissingSecret(
                "SLACK_SIGNING_SECRET",
                "verify requests from Slack",
            ));
        }
        if slack_enabled && token.is_empty() {
            return Err(StartError::MissingSecret(
                "SLACK_BOT_TOKEN",
                "post to Slack",
            ));
        }
        let slack_client = chat::slack::SlackClient::new(
            &config.slack.api_base_url,
            token,
            Duration::from_secs(config.slack.timeout_secs),
        );
        let slack = chat::slack::SlackPlatform::new(slack_client.clone());
        let mut chats: HashMap<&'static str, Arc<dyn ChatPlatform>> = HashMap::new();
        if slack_enabled {
            chats.insert("slack", Arc::new(slack));
        }
        let store = Store::open(&StoreOptions {
            url: config.database.url.clone(),
            synchronous: config.database.synchronous.clone(),
            read_connections: config.database.read_connections,
        })
        .await?;
        let teams_auth = if config.teams.enabled() {
            let t = &config.teams;
            let password = t
                .app_password
                .load("teams.app_password", "TEAMS_APP_PASSWORD")?;
            if password.is_empty() {
                return Err(StartError::MissingSecret(
                    "TEAMS_APP_PASSWORD",
                    "call the Bot Connector for Teams",
                ));
            }
            let timeout = Duration::from_secs(t.timeout_secs);
            let connector = chat::teams::connector::BotConnector::new(
                chat::teams::connector::ConnectorSettings {
                    app_id: t.app_id.clone(),
                    app_password: password,
                    token_url: t.token_endpoint(),
                    scope: t.oauth_scope.clone(),
                    timeout,
                },
            );
            let book = Arc::new(flow::conversations::StoredConversations {
                store: store.clone(),
                clock: clock.clone(),
            });
            let platform = chat::teams::TeamsPlatform::new(
                connector,
                book,
                &t.service_url,
                t.tenant_id.clone(),
            );
            chats.insert("teams", Arc::new(platform));
            Some(chat::teams::auth::BotAuth::new(
                chat::teams::auth::Expectations {
                    metadata_url: t.openid_metadata_url.clone(),
                    issuer: t.token_issuer.clone(),
                    audience: t.app_id.clone(),
                    max_skew_secs: t.max_skew_secs,
                    keys_max_age: Duration::from_secs(t.keys_max_age_secs),
                },
                timeout,
            ))
        } else {
            None
        };
        let admin = http::admin::Admin::from_config(&config.admin)?;
        let offboard_secret = config
            .lifecycle
            .offboard_secret
            .load("lifecycle.offboard_secret", "GRANTRY_OFFBOARD_SECRET")?;
        Ok(App {
            config,
            store,
            catalog: Arc::new(catalog),
            policy,
            directory: Arc::new(directory),
            connectors,
            service_desks,
            chats,
            clock,
            slack_signing_secret: signing,
            slack: slack_client,
            slack_app_token: app_token,
            offboard_secret,
            teams_auth,
            on_call,
            draining: std::sync::atomic::AtomicBool::new(false),
            admin,
        })
    }

    /// Now, by the app's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Where IT's status messages go: `slack.status_channel`, else Teams'
    /// `teams.status_conversation` (platform, channel).
    pub fn status_channel(&self) -> Option<(&'static str, &str)> {
        match (
            &self.config.slack.status_channel,
            &self.config.teams.status_conversation,
        ) {
            (Some(c), _) if self.chats.contains_key("slack") => Some(("slack", c.as_str())),
            (_, Some(c)) if self.chats.contains_key("teams") => Some(("teams", c.as_str())),
            _ => None,
        }
    }

    /// A message to IT's status channel, when one is configured.
    pub fn status_notice(&self, text: String) -> Option<store::Job> {
        self.status_channel()
            .map(|(platform, channel)| store::Job::Notify {
                platform: platform.into(),
                to: channel.to_string(),
                text,
                ephemeral_channel: None,
            })
    }

    /// The platform owners and IT are reached on when nothing says otherwise (reviews): Slack
    /// when configured, else Teams.
    pub fn default_platform(&self) -> &'static str {
        if self.chats.contains_key("slack") || !self.chats.contains_key("teams") {
            "slack"
        } else {
            "teams"
        }
    }

    /// The chat platform with this name.
    pub fn chat(&self, name: &str) -> Option<&Arc<dyn ChatPlatform>> {
        self.chats.get(name)
    }
}

/// Runs the HTTP server, the job workers and the expiry sweeper until `shutdown` resolves; then
/// drains (`/readyz` 503 for `server.shutdown_drain_secs`), stops taking requests, lets in-flight
/// requests and the jobs in hand finish, and returns within `server.shutdown_timeout_secs`,
/// releasing any job still held to other replicas.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match flow::reviews::detect_role_changes(&app, &app.directory).await {
        Ok(changed) if !changed.is_empty() => {
            tracing::info!(
                people = changed.len(),
                "directory changes: grants sent to their owners for re-approval"
            )
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "could not compare the directory with its last snapshot")
        }
    }
    server::run(app, listener, shutdown).await
}
