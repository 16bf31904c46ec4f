//! Prometheus metrics: counters kept in this process (outbound calls, their errors and rate
//! limits, job outcomes) plus gauges and a histogram read from the store at scrape time
//! (requests by state, queue depth and age, decision latency), so every replica reports the same
//! store-wide figures and its own call counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use crate::store::StoreError;
use crate::App;

/// `(name, labels)` → count.
type Counters = BTreeMap<(&'static str, Vec<(&'static str, String)>), u64>;

fn counters() -> &'static Mutex<Counters> {
    static C: OnceLock<Mutex<Counters>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Adds one to a counter.
pub fn inc(name: &'static str, labels: &[(&'static str, &str)]) {
    let key = (
        name,
        labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    );
    if let Ok(mut c) = counters().lock() {
        *c.entry(key).or_insert(0) += 1;
    }
}

/// A Slack Web API call's outcome: `ok`, `rate_limited`, or the error class.
pub fn slack_call(method: &str, outcome: &str) {
    inc(
        "grantry_slack_api_calls_total",
        &[("method", method), ("outcome", outcome)],
    );
}

/// A connector call's outcome: `ok`, `transient`, `permanent`.
pub fn connector_call(connector: &str, operation: &str, outcome: &str) {
    inc(
        "grantry_connector_calls_total",
        &[
            ("connector", connector),
            ("operation", operation),
            ("outcome", outcome),
        ],
    );
}

/// An on-call refresh's outcome: `ok`, `transient`, `permanent`.
pub fn oncall_refresh(provider: &str, outcome: &str) {
    inc(
        "grantry_oncall_refreshes_total",
        &[("provider", provider), ("outcome", outcome)],
    );
}

/// A job run's outcome: `done`, `retry`, `failed`.
pub fn job_run(kind: &str, outcome: &str) {
    inc(
        "grantry_job_runs_total",
        &[("kind", kind), ("outcome", outcome)],
    );
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(ls: &[(&str, String)]) -> String {
    if ls.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = ls
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "grantry_slack_api_calls_total",
        "counter",
        "Slack Web API calls by method and outcome (ok, rate_limited, transient, permanent).",
    ),
    (
        "grantry_connector_calls_total",
        "counter",
        "Connector calls by connector, operation and outcome (ok, transient, permanent).",
    ),
    (
        "grantry_job_runs_total",
        "counter",
        "Job runs by kind and outcome (done, retry, failed).",
    ),
    (
        "grantry_oncall_refreshes_total",
        "counter",
        "Refreshes of who is on call by provider and outcome (ok, transient, permanent).",
    ),
];

/// Upper bounds (seconds) of the decision latency histogram.
const DECISION_BUCKETS: [i64; 9] = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400];

/// The whole exposition, Prometheus text format 0.0.4.
pub async fn render(app: &App) -> Result<String, StoreError> {
    let mut out = String::new();
    let now = app.now_ms();
    let _ = writeln!(
        out,
        "# HELP grantry_requests Requests by state.\n# TYPE grantry_requests gauge"
    );
    for (state, n) in app.store.count_requests_by_state().await? {
        let _ = writeln!(out, "grantry_requests{} {n}", labels(&[("state", state)]));
    }
    let _ = writeln!(
        out,
        "# HELP grantry_jobs Jobs by state and kind.\n# TYPE grantry_jobs gauge"
    );
    for (state, kind, n) in app.store.count_jobs().await? {
        let _ = writeln!(
            out,
            "grantry_jobs{} {n}",
            labels(&[("state", state), ("kind", kind)])
        );
    }
    let oldest = app.store.oldest_queued_job().await?;
    let _ = writeln!(
        out,
        "# HELP grantry_job_queue_oldest_age_seconds Age of the oldest job due and waiting.\n# TYPE grantry_job_queue_oldest_age_seconds gauge\ngrantry_job_queue_oldest_age_seconds {}",
        oldest.map(|t| ((now - t).max(0) as f64) / 1000.0).unwrap_or(0.0)
    );
    let (buckets, count, sum_ms) = app
        .store
        .decision_latency_buckets(&DECISION_BUCKETS.map(|s| s * 1000))
        .await?;
    let _ = writeln!(out, "# HELP grantry_decision_latency_seconds Time from request to an approver's decision.\n# TYPE grantry_decision_latency_seconds histogram");
    for (le, n) in DECISION_BUCKETS.iter().zip(&buckets) {
        let _ = writeln!(
            out,
            "grantry_decision_latency_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "grantry_decision_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "grantry_decision_latency_seconds_sum {}",
        sum_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "grantry_decision_latency_seconds_count {count}");
    if let Some(taken_at) = app.on_call.taken_at_ms() {
        let _ = writeln!(
            out,
            "# HELP grantry_oncall_snapshot_age_seconds Age of this process's answer to who is on call (stale after three oncall.cache_secs).\n# TYPE grantry_oncall_snapshot_age_seconds gauge\ngrantry_oncall_snapshot_age_seconds {}",
            ((now - taken_at).max(0) as f64) / 1000.0
        );
    }
    let snapshot = counters().lock().map(|c| c.clone()).unwrap_or_default();
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((n, ls), v) in snapshot.iter().filter(|((n, _), _)| n == name) {
            let _ = writeln!(out, "{n}{} {v}", labels(ls));
        }
    }
    Ok(out)
}
