//! Fault injection: a proxy in front of the real SCIM server fails 30% of calls with 503, holds
//! 5% past the connector's timeout, and answers 5% with 429 and `Retry-After`; Slack's API
//! answers the first messages with 429 (`Retry-After`) and 503. Every request is still provisioned
//! exactly once, every requester is told, and the retries show in `/metrics`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::slack::Fault;
use common::*;
use rand::Rng;

const PEOPLE: usize = 10;
const ENTITLEMENTS: usize = 10;

#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
    unavailable: AtomicU64,
    too_slow: AtomicU64,
    rate_limited: AtomicU64,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<Counts>,
}

async fn proxy(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let roll: f64 = rand::rng().random();
    if roll < 0.30 {
        p.counts.unavailable.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream busy").into_response();
    }
    if roll < 0.35 {
        p.counts.rate_limited.fetch_add(1, Ordering::SeqCst);
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    if roll < 0.40 {
        // Past the connector's 1 s timeout: the caller gives up; the call is not forwarded.
        p.counts.too_slow.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        return (StatusCode::GATEWAY_TIMEOUT, "too late").into_response();
    }
    p.counts.forwarded.fetch_add(1, Ordering::SeqCst);
    let path = uri.path_and_query().map(|x| x.as_str()).unwrap_or("/");
    let mut rb = p
        .http
        .request(
            method,
            format!("{}{}", p.upstream, path.trim_start_matches("/v2")),
        )
        .body(body);
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            rb = rb.header(k, v);
        }
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").cloned();
    let mut out = (status, resp.bytes().await.unwrap()).into_response();
    if let Some(ct) = ct {
        out.headers_mut().insert("content-type", ct);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_provisioned_once_through_a_failing_scim_server_and_slack() {
    let scim = Scim::start().await;
    let counts = Arc::new(Counts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}/v2", listener.local_addr().unwrap());
    let state = Proxy {
        upstream: scim.base_url.clone(),
        http: reqwest::Client::new(),
        counts: counts.clone(),
    };
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback(proxy).with_state(state))
            .await
            .unwrap()
    });

    let t = spawn_app_with(move |c| {
        c.connectors.get_mut("scim").unwrap().settings.insert("base_url".into(), toml::Value::String(proxy_url));
        c.connectors.get_mut("scim").unwrap().settings.insert("timeout_secs".into(), toml::Value::Integer(1));
        c.jobs.backoff_base_ms = 100;
        c.jobs.backoff_max_ms = 1_000;
        // A provision attempt makes up to three SCIM calls and fails ~78-81% of the time through this proxy:
        // with 40 attempts, one request in ~5,000-20,000 uses them all up and ends `failed` (the likely
        // cause of one timeout on PostgreSQL in CI). 100 attempts make that ~1e-10 per request.
        c.jobs.max_attempts = 100;
        c.jobs.workers = 8;
        let mut catalog = String::from(
            "[[apps]]\nid = \"github\"\nconnector = \"scim\"\nowners = [\"bob@example.com\"]\n",
        );
        for e in 0..ENTITLEMENTS {
            catalog.push_str(&format!("[[apps.entitlements]]\nid = \"team-{e}\"\nmax_duration = \"1w\"\n"));
        }
        std::fs::write(c.base_dir.join("catalog.toml"), catalog).unwrap();
        let mut people = String::from("[[people]]\nemail = \"bob@example.com\"\nslack_id = \"U222\"\n");
        for n in 0..PEOPLE {
            people.push_str(&format!("[[people]]\nemail = \"p{n}@example.com\"\nslack_id = \"U9{n:02}\"\nmanager = \"bob@example.com\"\n"));
        }
        std::fs::write(c.base_dir.join("people.toml"), people).unwrap();
    })
    .await;
    // Slack fails too: the first approval cards and DMs meet 429s and 503s.
    for i in 0..10 {
        t.slack.fail_next(Fault {
            method: "chat.postMessage".into(),
            status: if i % 2 == 0 { 429 } else { 503 },
            retry_after: (i % 2 == 0).then_some(1),
            body: serde_json::json!({"ok": false, "error": if i % 2 == 0 { "ratelimited" } else { "service_unavailable" }}),
        });
    }
    let mut groups = Vec::new();
    for n in 0..PEOPLE {
        scim.create_user(&format!("p{n}@example.com")).await;
    }
    for e in 0..ENTITLEMENTS {
        groups.push(scim.create_group(&format!("team-{e}")).await);
    }

    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..PEOPLE {
        for e in 0..ENTITLEMENTS {
            let (status, b) = t
                .command(
                    &format!("U9{n:02}"),
                    &format!("github team-{e} for 1d because fault drill"),
                    &format!("f-{n}-{e}"),
                )
                .await;
            assert_eq!(status, 200);
            let text = b["text"].as_str().unwrap().to_string();
            let id = text
                .split_whitespace()
                .find(|w| w.starts_with("R-"))
                .unwrap()
                .to_string();
            assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
            ids.push(id);
        }
    }
    let total = PEOPLE * ENTITLEMENTS;
    // On a timeout, say where the requests and their jobs are.
    eventually_or_explain(
        400,
        "every request active",
        || async {
            let states = t.app.store.count_requests_by_state().await.unwrap();
            (states == vec![("active".to_string(), total as i64)]).then_some(())
        },
        || async {
            let requests = t.app.store.count_requests_by_state().await.unwrap();
            let jobs = t.app.store.count_jobs().await.unwrap();
            format!(" (requests {requests:?}, jobs {jobs:?})")
        },
    )
    .await;
    let took = started.elapsed();
    for g in &groups {
        let members = scim.members(g).await;
        let distinct: HashSet<&String> = members.iter().collect();
        assert_eq!(members.len(), PEOPLE, "group {g}");
        assert_eq!(distinct.len(), PEOPLE, "group {g} holds someone twice");
    }
    // Every "your access is active" message reached its requester despite Slack's faults.
    eventually(60, "every requester told", || async {
        let told: HashSet<String> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["channel"].as_str().unwrap_or("").starts_with("U9"))
            .filter_map(|c| {
                let text = c.body["text"].as_str()?.to_string();
                if !text.contains("is active") {
                    return None;
                }
                text.split_whitespace()
                    .map(|w| w.trim_matches(|ch: char| !ch.is_alphanumeric() && ch != '-'))
                    .find(|w| w.starts_with("R-"))
                    .map(str::to_string)
            })
            .collect();
        ids.iter().all(|id| told.contains(id)).then_some(())
    })
    .await;
    let metrics = t.metrics().await;
    let sum = |prefix: &str, needle: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let transient = sum("grantry_connector_calls_total", "outcome=\"transient\"");
    let retries = sum("grantry_job_runs_total", "outcome=\"retry\"");
    assert!(transient > 0.0 && retries > 0.0, "{metrics}");
    let c = &counts;
    println!(
        "fault injection: {total} requests active in {:.1} s; SCIM calls forwarded {}, 503 {}, 429 {}, held past the timeout {}; \
         /metrics: {transient} transient connector calls, {retries} job retries",
        took.as_secs_f64(),
        c.forwarded.load(Ordering::SeqCst),
        c.unavailable.load(Ordering::SeqCst),
        c.rate_limited.load(Ordering::SeqCst),
        c.too_slow.load(Ordering::SeqCst),
    );
    assert!(
        c.unavailable.load(Ordering::SeqCst) > 0
            && c.rate_limited.load(Ordering::SeqCst) > 0
            && c.too_slow.load(Ordering::SeqCst) > 0
    );
}
