//! The durable job queue seen from outside: workers wake at once on a new job, transient
//! failures retry with backoff until given up, permanent ones fail at once and people are told.

mod common;

use std::time::{Duration, Instant};

use common::*;

const STORY: &str = "github platform-admins for 4h because incident INC-42";

#[tokio::test]
async fn workers_wake_at_once_when_a_job_is_enqueued() {
    // Idle workers would poll only once a minute: the card must still go out at once.
    let t = spawn_app_with(|c| {
        c.jobs.poll_interval_ms = 60_000;
        c.jobs.sweep_interval_ms = 60_000;
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // workers are idle, waiting
    let started = Instant::now();
    t.file_request(STORY).await;
    eventually(5, "cards posted", || async {
        (t.slack.calls_of("chat.postMessage").len() >= 2).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_permanent_connector_error_fails_the_request_and_tells_people() {
    let t = spawn_app_with(|c| c.slack.status_channel = Some("CITSTATUS".into())).await;
    t.scim.create_group("platform-admins").await; // but Alice has no account in the app
    let id = t.file_request(STORY).await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(10, "request failed", || async {
        (t.state_of(&id).await == "failed").then_some(())
    })
    .await;
    let job = t
        .app
        .store
        .jobs(Some("failed"), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == "provision")
        .unwrap();
    assert_eq!(job.attempts, 1, "a permanent error is not retried");
    assert!(job
        .last_error
        .unwrap()
        .contains("no user with userName or email alice@example.com"));
    eventually(10, "requester and IT told", || async {
        let posts = t.slack.calls_of("chat.postMessage");
        let requester = posts.iter().any(|c| {
            c.body["channel"] == "U111"
                && c.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("granting it failed")
        });
        let it = posts.iter().any(|c| {
            c.body["channel"] == "CITSTATUS"
                && c.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("needs a human")
        });
        (requester && it).then_some(())
    })
    .await;
    let actions: Vec<String> = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"request.failed".to_string()),
        "{actions:?}"
    );

    // IT fixes the cause (the account now exists) and retries: provisioned, and audited.
    t.scim.create_user("alice@example.com").await;
    let said = grantry::flow::lifecycle::retry(&t.app, "cli:carol", &id.to_lowercase())
        .await
        .unwrap();
    assert!(said.starts_with("Provisioning"), "{said}");
    eventually(15, "active after the retry", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
    let retried = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "request.retried")
        .unwrap();
    assert_eq!(retried.actor, "cli:carol");
    // Only a failed request can be retried.
    let again = grantry::flow::lifecycle::retry(&t.app, "cli:carol", &id)
        .await
        .unwrap();
    assert!(again.contains("not failed"), "{again}");
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_give_up_with_the_error_kept() {
    let mut t = spawn_app_with(|c| c.jobs.max_attempts = 3).await;
    t.scim.kill(); // the SCIM server is down for good
    let id = t.file_request(STORY).await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "request failed after retries", || async {
        (t.state_of(&id).await == "failed").then_some(())
    })
    .await;
    let job = t
        .app
        .store
        .jobs(Some("failed"), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == "provision")
        .unwrap();
    assert_eq!(job.attempts, 3);
    let err = job.last_error.unwrap();
    assert!(err.contains("could not connect"), "{err}");
    assert!(
        !err.contains("scim-test-token"),
        "a secret leaked into an error: {err}"
    );
}

#[tokio::test]
async fn a_slack_error_no_retry_can_fix_is_not_retried_and_it_is_told() {
    let t = spawn_app_with(|c| c.slack.status_channel = Some("CITSTATUS".into())).await;
    t.slack.fail_next(common::slack::Fault {
        method: "chat.postMessage".into(),
        status: 200,
        retry_after: None,
        body: serde_json::json!({"ok": false, "error": "channel_not_found"}),
    });
    t.file_request(STORY).await;
    let it = eventually(10, "IT told", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "CITSTATUS")
    })
    .await;
    assert!(
        it.body["text"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{:?}",
        it.body
    );
    let failed = t.app.store.jobs(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 1, "channel_not_found is not retried");
}

#[tokio::test]
async fn metrics_show_requests_queue_decisions_and_outbound_calls() {
    let t = spawn_app().await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;
    t.slack.fail_next(common::slack::Fault {
        method: "chat.postMessage".into(),
        status: 429,
        retry_after: Some(0),
        body: serde_json::json!({"ok": false, "error": "ratelimited"}),
    });
    let id = t.file_request(STORY).await;
    t.click("U222", "grantry.approve", &id).await;
    eventually(15, "active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
    // The counters move as the jobs' calls come back, which may be after the request went
    // active (a notice still on its way): read until every one is there.
    let expected = [
        "grantry_requests{state=\"active\"} 1",
        "grantry_decision_latency_seconds_count 1",
        "grantry_decision_latency_seconds_bucket{le=\"+Inf\"} 1",
        "grantry_connector_calls_total{connector=\"scim\",operation=\"grant\",outcome=\"ok\"}",
        "grantry_slack_api_calls_total{method=\"chat.postMessage\",outcome=\"rate_limited\"}",
        "# TYPE grantry_job_queue_oldest_age_seconds gauge",
    ];
    // The 429 met whichever message went first (the approval card or a notice): its job retried.
    let retried = |body: &str| {
        body.lines().any(|l| {
            l.starts_with("grantry_job_runs_total{kind=\"")
                && l.contains("outcome=\"retry\"")
                && (l.contains("post_approval_card") || l.contains("notify"))
        })
    };
    let last = std::sync::Mutex::new(String::new());
    eventually_or_explain(
        15,
        "every metric, and a job retry counted",
        || async {
            let body = t.metrics().await;
            let done = expected.iter().all(|l| body.contains(l)) && retried(&body);
            *last.lock().unwrap() = body;
            done.then_some(())
        },
        || async {
            let body = last.lock().unwrap().clone();
            let missing: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|l| !body.contains(l))
                .collect();
            format!(
                "\nmissing {missing:?}, retry counted: {}\n{body}",
                retried(&body)
            )
        },
    )
    .await;
}
