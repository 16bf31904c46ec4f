//! Ack-path load generator: signed `/access` slash commands, each with its own trigger id (so
//! every one files a new request), at fixed concurrency levels over loopback. Prints requests/s,
//! p50 and p99 per level, and checks through `/metrics` that every acked request was persisted.
//!
//! `cargo run --release --bin grantry-bench -- --url http://127.0.0.1:18105 --secret bench-secret`
//! against `PORT=18105 scripts/bench-server`.

use std::sync::atomic::{AtomicU64, Ordering};
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
}

fn body(n: u64) -> String {
    format!(
        "token=x&team_id=T111&team_domain=acme&channel_id=C111&channel_name=general&user_id=U111&user_name=alice\
         &command=%2Faccess&text=github+platform-admins+for+4h+because+incident&api_app_id=A111\
         &response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT111%2F1%2Fx&trigger_id=bench.{n}.{}",
        std::process::id()
    )
}

async fn persisted(http: &reqwest::Client, url: &str) -> Result<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("grantry_requests{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let counter = Arc::new(AtomicU64::new(0));
    println!("| conc | req/s | p50 ms | p99 ms | acked | persisted | errors |");
    println!("|---|---|---|---|---|---|---|");
    for c in args.concurrency.split(',') {
        let c: usize = c.trim().parse().context("concurrency")?;
        let before = persisted(&http, &args.url).await?;
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let mut tasks = Vec::new();
        for _ in 0..c {
            let (http, url, secret, counter) = (
                http.clone(),
                args.url.clone(),
                args.secret.clone(),
                counter.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let b = body(n);
                    let ts = chrono::Utc::now().timestamp();
                    let sig =
                        grantry::chat::slack::signature::sign(secret.as_bytes(), ts, b.as_bytes());
                    let start = Instant::now();
                    let r = http
                        .post(format!("{url}/slack/commands"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-slack-request-timestamp", ts.to_string())
                        .header("x-slack-signature", sig)
                        .body(b)
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            let text = resp.text().await.unwrap_or_default();
                            if text.contains("Request R-") {
                                lat.push(start.elapsed().as_micros() as u64);
                            } else {
                                errors += 1;
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            all.extend(l);
            errors += e;
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let after = persisted(&http, &args.url).await?;
        let acked = all.len() as u64;
        println!(
            "| {c} | {:.0} | {:.2} | {:.2} | {acked} | {} | {errors} |",
            acked as f64 / secs,
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            after - before
        );
        if after - before < acked {
            bail!(
                "{} acked requests are not in the store",
                acked - (after - before)
            );
        }
    }
    Ok(())
}
