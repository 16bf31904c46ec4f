//! Approve-to-membership latency: the time from an owner's Approve click (sent to grantry over
//! loopback, signed) until the person is a member of the group in a real SCIM server
//! (`scim2-server`). Approvals run one after another, so each figure is one request's own path:
//! verify, compare-and-set, enqueue, worker wake-up, three SCIM calls, the grant committed.
//!
//! `cargo run --release --bin grantry-provision-bench -- --approvals 1000` (needs `.venv-scim`,
//! which `scripts/test` installs, and ../shared/oracles/scim/run_server.py).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
struct Args {
    /// How many approvals to time (a multiple of 20).
    #[arg(long, default_value_t = 1000)]
    approvals: usize,
    /// Python with scim2-server installed.
    #[arg(long, default_value = ".venv-scim/bin/python")]
    python: String,
    /// The SCIM runner script.
    #[arg(long, default_value = "../shared/oracles/scim/run_server.py")]
    scim_runner: String,
    /// Database URL (default: SQLite in a temp folder).
    #[arg(long)]
    database: Option<String>,
}

const SECRET: &str = "bench-secret";
const ENTITLEMENTS: usize = 20;

/// A Slack Web API stand-in that says ok to everything (cards and DMs are not what is measured).
async fn slack_stub() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/api", listener.local_addr()?);
    let app = axum::Router::new().fallback(|| async {
        axum::Json(
            json!({"ok": true, "channel": "D0BENCH", "ts": "1700000000.000100",
                          "user": {"id": "U0BENCH"}, "message": {"ts": "1700000000.000100"}}),
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn scim_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value> {
    let mut rb = http.request(method, url).bearer_auth("bench-scim");
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let r = rb.send().await?;
    if !r.status().is_success() {
        bail!("SCIM answered {}", r.status());
    }
    Ok(r.json().await.unwrap_or(Value::Null))
}

async fn post_signed(http: &reqwest::Client, url: &str, body: &str) -> Result<String> {
    let ts = chrono::Utc::now().timestamp();
    let sig = grantry::chat::slack::signature::sign(SECRET.as_bytes(), ts, body.as_bytes());
    let r = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body.to_string())
        .send()
        .await?;
    if r.status() != 200 {
        bail!("{url} answered {}", r.status());
    }
    Ok(r.text().await?)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let people = args.approvals.div_ceil(ENTITLEMENTS);
    let http = reqwest::Client::new();

    // The real SCIM server.
    let mut scim = tokio::process::Command::new(&args.python)
        .arg(&args.scim_runner)
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--bearer-token",
            "bench-scim",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start scim2-server (run scripts/test once to install .venv-scim)")?;
    let mut lines = BufReader::new(scim.stdout.take().context("stdout")?).lines();
    let first = lines
        .next_line()
        .await?
        .context("scim2-server printed nothing")?;
    let scim_url = first
        .trim()
        .strip_prefix("SCIM_BASE_URL=")
        .context("SCIM_BASE_URL line")?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    for _ in 0..100 {
        if scim_call(
            &http,
            reqwest::Method::GET,
            format!("{scim_url}/ServiceProviderConfig"),
            None,
        )
        .await
        .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dir = std::env::temp_dir().join(format!("grantry-provision-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut catalog = String::from(
        "[[apps]]\nid = \"github\"\nconnector = \"scim\"\nowners = [\"bob@example.com\"]\n",
    );
    for e in 0..ENTITLEMENTS {
        catalog.push_str(&format!(
            "[[apps.entitlements]]\nid = \"team-{e}\"\nmax_duration = \"1w\"\n"
        ));
    }
    std::fs::write(dir.join("catalog.toml"), catalog)?;
    let mut file = String::from("[[people]]\nemail = \"bob@example.com\"\nslack_id = \"U222\"\n");
    let mut users = Vec::new();
    for n in 0..people {
        let email = format!("p{n}@example.com");
        file.push_str(&format!("[[people]]\nemail = \"{email}\"\nslack_id = \"U8{n:03}\"\nmanager = \"bob@example.com\"\n"));
        let u = scim_call(&http, reqwest::Method::POST, format!("{scim_url}/Users"),
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": email}))).await?;
        users.push(u["id"].as_str().context("user id")?.to_string());
    }
    std::fs::write(dir.join("people.toml"), file)?;
    let mut groups = Vec::new();
    for e in 0..ENTITLEMENTS {
        let g = scim_call(&http, reqwest::Method::POST, format!("{scim_url}/Groups"),
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("team-{e}")}))).await?;
        groups.push(g["id"].as_str().context("group id")?.to_string());
    }
    let slack = slack_stub().await?;
    let db = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("grantry.db").display()));
    std::fs::write(dir.join("signing"), SECRET)?;
    std::fs::write(dir.join("bot"), "xoxb-bench")?;
    std::fs::write(dir.join("scim"), "bench-scim")?;
    let config_path = dir.join("grantry.toml");
    std::fs::write(
        &config_path,
        format!(
            "[database]\nurl = \"{db}\"\n[catalog]\npath = \"catalog.toml\"\n[directory]\npeople_file = \"people.toml\"\n\
             [slack]\napi_base_url = \"{slack}\"\nsigning_secret = {{ file = {:?} }}\nbot_token = {{ file = {:?} }}\n\
             [jobs]\nworkers = 2\n[connectors.scim]\ntype = \"scim\"\nbase_url = \"{scim_url}\"\ntoken_file = {:?}\n",
            dir.join("signing").display().to_string(),
            dir.join("bot").display().to_string(),
            dir.join("scim").display().to_string(),
        ),
    )?;
    let config = grantry::config::Config::load(&config_path)?;
    let app = Arc::new(grantry::App::build(config, Arc::new(grantry::clock::SystemClock)).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(grantry::serve(
        app.clone(),
        listener,
        std::future::pending(),
    ));

    let mut took = Vec::with_capacity(args.approvals);
    for i in 0..args.approvals {
        let (n, e) = (i / ENTITLEMENTS, i % ENTITLEMENTS);
        let command = format!(
            "token=x&team_id=T1&channel_id=C1&user_id=U8{n:03}&command=%2Faccess&text=github+team-{e}+for+1d+because+provisioning+bench+run&trigger_id=pb.{i}"
        );
        let reply: Value = serde_json::from_str(
            &post_signed(&http, &format!("{base}/slack/commands"), &command).await?,
        )?;
        let id = reply["text"]
            .as_str()
            .and_then(|t| t.split_whitespace().find(|w| w.starts_with("R-")))
            .with_context(|| format!("no request id in the reply: {reply}"))?
            .to_string();
        let payload = json!({
            "type": "block_actions", "user": {"id": "U222"}, "team": {"id": "T1"},
            "channel": {"id": "DU222"}, "container": {"type": "message", "message_ts": "1.1", "channel_id": "DU222"},
            "trigger_id": format!("pbc.{i}"),
            "actions": [{"action_id": "grantry.approve", "block_id": "b", "value": id, "type": "button"}]
        });
        let click = serde_urlencoded::to_string([("payload", payload.to_string())])?;
        let started = Instant::now();
        post_signed(&http, &format!("{base}/slack/interactions"), &click).await?;
        let url = format!("{scim_url}/Groups/{}?attributes=members", groups[e]);
        loop {
            let g = scim_call(&http, reqwest::Method::GET, url.clone(), None).await?;
            let held = g["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x["value"] == users[n].as_str()));
            if held {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("request {id} was not provisioned within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    let mean = took.iter().map(Duration::as_secs_f64).sum::<f64>() / took.len() as f64 * 1000.0;
    println!(
        "approve → SCIM membership over {} approvals: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, mean {:.1} ms",
        took.len(),
        percentile(&took, 0.50),
        percentile(&took, 0.90),
        percentile(&took, 0.99),
        percentile(&took, 1.0),
        mean
    );
    let _ = scim.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
