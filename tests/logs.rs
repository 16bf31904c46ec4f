//! Production logs: JSON lines (`GRANTRY_LOG_FORMAT=json`), each line a request causes carrying its
//! request id (the caller's `X-Request-Id` when it is a plain token, else a new one, echoed in the
//! response); never a body, a user's text or a secret.

mod common;

use std::time::Duration;

use common::process::{now_secs, Grantry};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn json_logs_carry_the_request_id_and_never_bodies_or_secrets() {
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let config = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    let log = dir.path().join("grantry.log");
    let env = [
        ("GRANTRY_LOG_FORMAT", "json".to_string()),
        ("RUST_LOG", "debug".to_string()),
        ("GRANTRY__JOBS__WORKERS", "1".to_string()),
    ];
    let mut app = Grantry::start_with_log(&config, &env, Some(&log)).await;
    let http = reqwest::Client::new();
    let reason = "because secret-project-zephyr needs it";
    let body = slash_command_body(
        "U111",
        &format!("github platform-admins for 4h {reason}"),
        "trig-log",
    );

    // A request with an ingress's id: the id is kept, echoed and logged.
    let resp = post_signed(
        &http,
        &format!("{}/slack/commands", app.base_url),
        &body,
        now_secs(),
        &[("x-request-id", "ingress-7f3a-42")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "ingress-7f3a-42");
    // A badly signed one with an id unfit for logs: a fresh id replaces it.
    let resp = http
        .post(format!("{}/slack/commands", app.base_url))
        .header("x-request-id", "evil\" id")
        .header("x-slack-signature", "v0=00")
        .header("x-slack-request-timestamp", now_secs().to_string())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let fresh = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(fresh.len(), 36, "a UUID: {fresh}");

    app.sigterm();
    app.exit_within(Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_request = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let first = of_request("ingress-7f3a-42");
    assert!(
        first
            .iter()
            .any(|l| l["fields"]["status"] == 200 && l["span"]["path"] == "/slack/commands"),
        "{text}"
    );
    let second = of_request(&fresh);
    assert!(
        second
            .iter()
            .any(|l| l["level"] == "WARN"
                && l["fields"]["message"].as_str().unwrap().contains("signed")),
        "the refusal is logged with its request id: {text}"
    );
    for secret in [
        SIGNING_SECRET,
        BOT_TOKEN,
        scim::TOKEN,
        "secret-project-zephyr",
        "evil",
    ] {
        assert!(!text.contains(secret), "{secret:?} reached the log");
    }
}
