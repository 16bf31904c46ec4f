//! Test harness: a real SCIM 2.0 server (Python scim2-server), a local stand-in for Slack's Web
//! API that answers with Slack's documented responses, and the app on a random port with a fresh
//! database and a clock the test moves.
#![allow(dead_code)]

pub mod oidc;
pub mod prism;
pub mod process;
pub mod scim;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grantry::clock::{Clock, ManualClock};
use grantry::config::Config;
use grantry::App;

pub use scim::Scim;
pub use slack::SlackStandIn;

/// Asserts that a Slack view submission's answer (`response_action: errors`) shows an inline error
/// on `field` that contains `text`.
#[track_caller]
pub fn assert_inline_error(answer: &serde_json::Value, field: &str, text: &str) {
    let error = answer["errors"][field].as_str().unwrap_or_default();
    assert!(
        error.contains(text),
        "no inline error on {field} containing {text:?}: {answer}"
    );
}

pub const SIGNING_SECRET: &str = "test-signing-secret";
pub const BOT_TOKEN: &str = "xoxb-test-token";

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn oracle(path: &str) -> PathBuf {
    manifest_dir().join("../shared/oracles").join(path)
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or_explain(secs, what, f, || async { String::new() }).await
}

/// [`eventually`], and on a timeout the panic also carries what `explain` says (the state
/// that was waited on, read then).
pub async fn eventually_or_explain<T, F, Fut, E, EFut>(
    secs: u64,
    what: &str,
    mut f: F,
    explain: E,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    E: FnOnce() -> EFut,
    EFut: std::future::Future<Output = String>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        // Each attempt is bounded too: one that never returns (a request nobody answers, a
        // statement waiting on a lock) fails the wait instead of hanging the test.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_secs(1));
        match tokio::time::timeout(left, f()).await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(_) => panic!(
                "timed out waiting for: {what} (an attempt did not return in {left:?}){}",
                explain().await
            ),
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}{}", explain().await);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A fresh database for one test: a SQLite file in the test's folder, or, when
/// `GRANTRY_TEST_POSTGRES` names a PostgreSQL server (an admin URL), a new database there that is
/// dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn create(dir: &Path) -> TestDb {
        match std::env::var("GRANTRY_TEST_POSTGRES") {
            Ok(admin) if !admin.is_empty() && admin != "skip" => {
                Self::create_postgres(&admin).await
            }
            _ => TestDb {
                url: format!("sqlite://{}", dir.join("grantry.db").display()),
                pg: None,
            },
        }
    }

    /// A new database on the PostgreSQL server `admin` connects to, dropped when this is dropped.
    pub async fn create_postgres(admin: &str) -> TestDb {
        use sqlx::Connection;
        let name = format!("grantry_t_{}", rand_suffix().replace('-', "_"));
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} does not answer: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        // The admin URL's parameters (`?sslmode=disable`) carry over to the test's database.
        let (path, query) = match admin.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (admin, String::new()),
        };
        let base = path
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(path.to_string());
        TestDb {
            url: format!("{base}/{name}{query}"),
            pg: Some((admin.to_string(), name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside async: a thread with its own runtime does the cleanup.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Writes the example catalog and people file plus secrets into `dir`, and returns the config
/// for them, pointing Slack and SCIM at the given base URLs and the store at `db`.
pub fn write_config(
    dir: &Path,
    db: &TestDb,
    slack_base: &str,
    scim_base: &str,
    extra: &str,
) -> PathBuf {
    let examples = manifest_dir().join("examples");
    std::fs::copy(examples.join("catalog.toml"), dir.join("catalog.toml")).unwrap();
    std::fs::copy(examples.join("people.toml"), dir.join("people.toml")).unwrap();
    std::fs::write(dir.join("signing_secret"), SIGNING_SECRET).unwrap();
    std::fs::write(dir.join("bot_token"), BOT_TOKEN).unwrap();
    std::fs::write(dir.join("scim_token"), scim::TOKEN).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[database]
url = "{db}"
synchronous = "normal"
[catalog]
path = "catalog.toml"
[directory]
people_file = "people.toml"
[slack]
api_base_url = "{slack_base}"
signing_secret = {{ file = "{dir}/signing_secret" }}
bot_token = {{ file = "{dir}/bot_token" }}
timeout_secs = 2
[jobs]
workers = 2
backoff_base_ms = 20
backoff_max_ms = 500
lease_secs = 2
poll_interval_ms = 100
sweep_interval_ms = 50
[connectors.scim]
type = "scim"
base_url = "{scim_base}"
token_file = "{dir}/scim_token"
timeout_secs = 3
{extra}
"#,
        db = db.url,
        dir = dir.display(),
    );
    let path = dir.join("grantry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The app running in this process on a random port.
pub struct TestApp {
    pub base_url: String,
    pub app: Arc<App>,
    pub clock: Arc<ManualClock>,
    pub slack: SlackStandIn,
    pub scim: Scim,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Starts SCIM, the Slack stand-in and the app. `tweak` edits the config before start.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_at(|c, _, _| tweak(c)).await
}

/// The same, telling `tweak` the app's base URL and the test's folder (for settings that name
/// the app's own address, like the admin pages' OIDC redirect URL).
pub async fn spawn_app_at(tweak: impl FnOnce(&mut Config, &str, &Path)) -> TestApp {
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let path = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    let mut config = Config::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tweak(&mut config, &base_url, dir.path());
    let clock = Arc::new(ManualClock::new());
    let app = Arc::new(
        App::build(config, clock.clone() as Arc<dyn Clock>)
            .await
            .unwrap(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grantry::serve(app.clone(), listener, async move {
        let _ = rx.await;
    }));
    TestApp {
        base_url,
        app,
        clock,
        slack,
        scim,
        db,
        dir,
        http: reqwest::Client::new(),
        stop: Some(tx),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The oracle slash command with `command`, `text` and `user_id` replaced (every other field as
/// Slack sends it).
pub fn slash_command_body(user_id: &str, text: &str, trigger_id: &str) -> String {
    let raw = std::fs::read_to_string(oracle("slack/slash_command.form")).unwrap();
    let mut fields: Vec<(String, String)> = serde_urlencoded::from_str(raw.trim()).unwrap();
    for (k, v) in fields.iter_mut() {
        match k.as_str() {
            "command" => *v = "/access".into(),
            "text" => *v = text.into(),
            "user_id" => *v = user_id.into(),
            "trigger_id" => *v = trigger_id.into(),
            _ => {}
        }
    }
    serde_urlencoded::to_string(&fields).unwrap()
}

/// The oracle block_actions payload with the clicker, action and value replaced, form-encoded.
pub fn block_actions_body(
    user_id: &str,
    action_id: &str,
    value: &str,
    channel: &str,
    ts: &str,
) -> String {
    let raw = std::fs::read_to_string(oracle("slack/block_actions.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    v["user"]["id"] = user_id.into();
    v["actions"][0]["action_id"] = action_id.into();
    v["actions"][0]["block_id"] = "grantry.decision".into();
    v["actions"][0]["value"] = value.into();
    v["container"]["channel_id"] = channel.into();
    v["container"]["message_ts"] = ts.into();
    v["container"]["is_ephemeral"] = false.into();
    v["channel"]["id"] = channel.into();
    serde_urlencoded::to_string([("payload", v.to_string())]).unwrap()
}

/// Signs and POSTs a body to `url` as Slack would, at `now_secs`.
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    now_secs: i64,
    extra_headers: &[(&str, &str)],
) -> reqwest::Response {
    let sig =
        grantry::chat::slack::signature::sign(SIGNING_SECRET.as_bytes(), now_secs, body.as_bytes());
    let mut req = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", now_secs.to_string())
        .header("x-slack-signature", sig)
        .body(body.to_string());
    for (k, v) in extra_headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

impl TestApp {
    pub fn now_secs(&self) -> i64 {
        self.clock.now_ms() / 1000
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// What `/metrics` shows now.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends `/access <text>` as `user_id`; returns (status, JSON body).
    pub async fn command(
        &self,
        user_id: &str,
        text: &str,
        trigger: &str,
    ) -> (u16, serde_json::Value) {
        let body = slash_command_body(user_id, text, trigger);
        let resp = post_signed(
            &self.http,
            &format!("{}/slack/commands", self.base_url),
            &body,
            self.now_secs(),
            &[],
        )
        .await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Clicks a card button as `user_id`; returns the status.
    pub async fn click(&self, user_id: &str, action_id: &str, request_id: &str) -> u16 {
        let body = block_actions_body(
            user_id,
            action_id,
            request_id,
            &format!("D{user_id}"),
            "1.2",
        );
        post_signed(
            &self.http,
            &format!("{}/slack/interactions", self.base_url),
            &body,
            self.now_secs(),
            &[],
        )
        .await
        .status()
        .as_u16()
    }

    /// Clicks Deny as `user_id`, waits for the reason modal, and submits it (Slack's
    /// view_submission shape). Returns the submission's HTTP status and body.
    pub async fn deny(&self, user_id: &str, request_id: &str, reason: &str) -> (u16, String) {
        let opened_before = self.slack.calls_of("views.open").len();
        assert_eq!(self.click(user_id, "grantry.deny", request_id).await, 200);
        let modal = eventually(5, "deny modal", || async {
            self.slack
                .calls_of("views.open")
                .into_iter()
                .skip(opened_before)
                .find(|c| c.body["view"]["private_metadata"] == request_id)
        })
        .await;
        assert_eq!(modal.body["view"]["callback_id"], "grantry.deny");
        self.submit_deny(user_id, request_id, reason).await
    }

    /// Submits the deny-reason modal (as if it was open).
    pub async fn submit_deny(
        &self,
        user_id: &str,
        request_id: &str,
        reason: &str,
    ) -> (u16, String) {
        let raw = std::fs::read_to_string(oracle("slack/view_submission.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        v["user"]["id"] = user_id.into();
        v["view"]["callback_id"] = "grantry.deny".into();
        v["view"]["private_metadata"] = request_id.into();
        v["view"]["state"]["values"] = serde_json::json!({"reason": {"reason": {"type": "plain_text_input", "value": reason}}});
        let body = serde_urlencoded::to_string([("payload", v.to_string())]).unwrap();
        let r = post_signed(
            &self.http,
            &format!("{}/slack/interactions", self.base_url),
            &body,
            self.now_secs(),
            &[],
        )
        .await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Files the story's request as Alice (U111); returns its id.
    pub async fn file_request(&self, text: &str) -> String {
        let (status, body) = self
            .command("U111", text, &format!("trig-{}", rand_suffix()))
            .await;
        assert_eq!(status, 200, "{body}");
        let t = body["text"].as_str().unwrap().to_string();
        t.split_whitespace()
            .find(|w| w.starts_with("R-"))
            .unwrap_or_else(|| panic!("no request id in {t:?}"))
            .trim_end_matches([',', '.', ':'])
            .to_string()
    }

    pub async fn state_of(&self, id: &str) -> String {
        let id = grantry::domain::RequestId::parse(id).unwrap();
        self.app
            .store
            .request(&id)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str()
            .to_string()
    }

    /// (audit head seq, request count): "nothing changed" checks.
    pub async fn fingerprint(&self) -> (i64, usize, usize) {
        let (seq, _) = self.app.store.audit_head().await.unwrap();
        let reqs = self.app.store.recent_requests(10_000).await.unwrap().len();
        let jobs = self.app.store.jobs(None, 10_000).await.unwrap().len();
        (seq, reqs, jobs)
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
