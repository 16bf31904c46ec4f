//! Ack-path load generator over loopback, at fixed concurrency levels; prints requests/s, p50 and
//! p99 per level and checks through `/metrics` that every acked request changed the store.
//!
//! `--mode commands` (default): signed `/access` slash commands, each with its own trigger id, so
//! every one files a new request. `--mode clicks`: signed `block_actions` Approve clicks by the
//! app's owner, each on its own pending request (filed first, untimed).
//!
//! `cargo run --release --bin grantry-bench -- --url http://127.0.0.1:18105 --secret bench-secret`
//! against `PORT=18105 scripts/bench-server`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// grantry's base URL.
    #[arg(long, default_value = "http://127.0.0.1:18105")]
    url: String,
    /// The signing secret grantry verifies with.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// Concurrency levels, comma-separated.
    #[arg(long, default_value = "1,16,64")]
    concurrency: String,
    /// Seconds per level.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// `commands` (file new requests) or `clicks` (approve pending ones).
    #[arg(long, default_value = "commands")]
    mode: String,
    /// Clicks mode: requests filed before each level (the most clicks it can time).
    #[arg(long, default_value_t = 30_000)]
    prefile: usize,
}

/// Numbers every slash command this run sends, so each has its own trigger id.
static COMMANDS: AtomicU64 = AtomicU64::new(0);

fn command_body() -> String {
    let n = COMMANDS.fetch_add(1, Ordering::Relaxed);
    format!(
        "token=x&team_id=T111&team_domain=acme&channel_id=C111&channel_name=general&user_id=U111&user_name=alice\
         &command=%2Faccess&text=github+platform-admins+for+4h+because+incident&api_app_id=A111\
         &response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT111%2F1%2Fx&trigger_id=bench.{n}.{}",
        std::process::id()
    )
}

/// Bob (an owner of `github`) clicks Approve on `request_id`'s card in his DM.
fn click_body(n: u64, request_id: &str) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": "U222", "username": "bob", "team_id": "T111"},
        "api_app_id": "A111",
        "token": "x",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "D222", "is_ephemeral": false},
        "trigger_id": format!("click.{n}.{}", std::process::id()),
        "team": {"id": "T111", "domain": "acme"},
        "channel": {"id": "D222", "name": "directmessage"},
        "actions": [{"action_id": "grantry.approve", "block_id": "grantry.decision", "value": request_id,
                     "type": "button", "action_ts": "1700000000.000200"}],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap_or_default()
}

/// Sum of `grantry_requests{state=…}` over the states `keep` accepts.
async fn requests_in(
    http: &reqwest::Client,
    url: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("grantry_requests{state=\""))
        .filter_map(|l| {
            let (state, rest) = l.split_once('"')?;
            keep(state).then_some(rest)
        })
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// One signed POST; the answer's text, or `None` on a transport error or a non-2xx status.
async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    path: &str,
    body: String,
) -> Option<String> {
    let ts = chrono::Utc::now().timestamp();
    let sig = grantry::chat::slack::signature::sign(secret.as_bytes(), ts, body.as_bytes());
    let resp = http
        .post(format!("{url}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.text().await.ok()
}

/// The request id in a slash command's answer (`Request R-XXXXXXXXXX sent to …`).
fn request_id(text: &str) -> Option<String> {
    let at = text.find("R-")?;
    let id: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    grantry::domain::RequestId::parse(&id).map(|r| r.as_str().to_string())
}

struct Level {
    latencies: Vec<u64>,
    errors: u64,
    secs: f64,
}

/// Runs `c` tasks sending `next(n)` until the deadline or until `next` has nothing more.
async fn run_level(
    args: &Args,
    http: &reqwest::Client,
    c: usize,
    path: &'static str,
    next: Arc<dyn Fn(u64) -> Option<String> + Send + Sync>,
    ok: fn(&str) -> bool,
) -> Result<Level> {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (http, url, secret, counter, next) = (
            http.clone(),
            args.url.clone(),
            args.secret.clone(),
            counter.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let Some(body) = next(counter.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let start = Instant::now();
                match post(&http, &url, &secret, path, body).await {
                    Some(text) if ok(&text) => lat.push(start.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Level {
        latencies,
        errors,
        secs,
    })
}

/// Files `n` requests (64 at a time) and returns their ids.
async fn prefile(args: &Args, http: &reqwest::Client, n: usize) -> Result<Vec<String>> {
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (http, url, secret, ids, counter) = (
            http.clone(),
            args.url.clone(),
            args.secret.clone(),
            ids.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let k = counter.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                let body = command_body();
                if let Some(id) = post(&http, &url, &secret, "/slack/commands", body)
                    .await
                    .as_deref()
                    .and_then(request_id)
                {
                    if let Ok(mut v) = ids.lock() {
                        v.push(id);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let ids = ids.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(ids)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let clicks = match args.mode.as_str() {
        "commands" => false,
        "clicks" => true,
        other => bail!("--mode {other}: expected commands or clicks"),
    };
    println!("| conc | req/s | p50 ms | p99 ms | acked | persisted | errors |");
    println!("|---|---|---|---|---|---|---|");
    for c in args.concurrency.split(',') {
        let c: usize = c.trim().parse().context("concurrency")?;
        let (level, changed) = if clicks {
            let ids = Arc::new(prefile(&args, &http, args.prefile).await?);
            let pending = |s: &str| s == "pending_approval";
            let before = requests_in(&http, &args.url, pending).await?;
            let next = {
                let ids = ids.clone();
                Arc::new(move |n: u64| ids.get(n as usize).map(|id| click_body(n, id)))
            };
            let level = run_level(&args, &http, c, "/slack/interactions", next, |t| {
                t.is_empty()
            })
            .await?;
            let after = requests_in(&http, &args.url, pending).await?;
            if level.latencies.len() >= ids.len() {
                eprintln!(
                    "every prefiled request was clicked before the deadline: raise --prefile"
                );
            }
            (level, before.saturating_sub(after))
        } else {
            let before = requests_in(&http, &args.url, |_| true).await?;
            let next = Arc::new(|_: u64| Some(command_body()));
            let level = run_level(&args, &http, c, "/slack/commands", next, |t| {
                t.contains("Request R-")
            })
            .await?;
            let after = requests_in(&http, &args.url, |_| true).await?;
            (level, after - before)
        };
        let acked = level.latencies.len() as u64;
        println!(
            "| {c} | {:.0} | {:.2} | {:.2} | {acked} | {changed} | {} |",
            acked as f64 / level.secs,
            percentile(&level.latencies, 0.50),
            percentile(&level.latencies, 0.99),
            level.errors
        );
        if changed < acked {
            bail!("{} acked requests are not in the store", acked - changed);
        }
    }
    Ok(())
}
