//! Graceful shutdown of the real binary: SIGTERM during load loses nothing that was acknowledged,
//! refuses the rest (connection refused, or 503), exits within `server.shutdown_timeout_secs`,
//! and what was queued completes after a restart; a job still running at the bound is released
//! to the queue and runs exactly once later.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{now_secs, open_store, signal, Grantry};
use common::*;
use grantry::domain::RequestId;

const STORY: &str = "github platform-admins for 4h because incident INC-42";

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 200 with the request's id: acknowledged to Slack.
    Accepted(String),
    /// 503: refused while shutting down.
    Unavailable,
    /// No HTTP answer (connection refused or closed): Slack would retry.
    NoAnswer,
    /// Anything else is a bug.
    Other(u16, String),
}

async fn send_command(http: &reqwest::Client, base: &str, trigger: &str) -> Outcome {
    let body = slash_command_body("U111", STORY, trigger);
    // One timestamp for the signature and its header (two clock reads can straddle a second).
    let ts = now_secs();
    let sig = grantry::chat::slack::signature::sign(SIGNING_SECRET.as_bytes(), ts, body.as_bytes());
    let sent = http
        .post(format!("{base}/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(_) => return Outcome::NoAnswer,
    };
    let status = resp.status().as_u16();
    let Ok(text) = resp.text().await else {
        return Outcome::NoAnswer;
    };
    if status == 503 {
        return Outcome::Unavailable;
    }
    let id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_string))
        .filter(|t| t.contains("sent to"))
        .and_then(|t| {
            t.split_whitespace()
                .find(|w| w.starts_with("R-"))
                .map(str::to_string)
        });
    match (status, id) {
        (200, Some(id)) => Outcome::Accepted(id),
        _ => Outcome::Other(status, text),
    }
}

#[tokio::test]
async fn sigterm_under_load_loses_nothing_acknowledged_and_exits_in_time() {
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let config = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    let bound = Duration::from_secs(8);
    let env = [
        ("GRANTRY__JOBS__WORKERS", "2".to_string()),
        ("GRANTRY__SERVER__SHUTDOWN_DRAIN_SECS", "1".to_string()),
        (
            "GRANTRY__SERVER__SHUTDOWN_TIMEOUT_SECS",
            bound.as_secs().to_string(),
        ),
    ];
    let mut first = Grantry::start(&config, &env).await;

    // 16 concurrent senders keep the server busy until it has refused a good number of requests.
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (outcomes, next, refused) = (outcomes.clone(), next.clone(), refused.clone());
        let base = first.base_url.clone();
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= 5_000 || refused.load(Ordering::SeqCst) >= 32 {
                    return;
                }
                let o = send_command(&http, &base, &format!("trig-load-{n}")).await;
                if matches!(o, Outcome::Unavailable | Outcome::NoAnswer) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    // Like Slack, do not hammer a server that went away.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes.lock().unwrap().push(o);
            }
        }));
    }
    eventually(60, "100 requests acknowledged", || async {
        let n = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| matches!(o, Outcome::Accepted(_)))
            .count();
        (n >= 100).then_some(())
    })
    .await;

    let signalled = Instant::now();
    first.sigterm();
    // Draining: still alive, but no longer ready, so a load balancer stops routing here.
    // The signal is handled asynchronously: ask until the answer turns.
    let http = reqwest::Client::new();
    let url = format!("{}/readyz", first.base_url);
    eventually(5, "/readyz answers 503 while draining", || async {
        let r = http
            .get(&url)
            .send()
            .await
            .expect("still serving while draining");
        (r.status() == 503 && r.text().await.unwrap() == "shutting down").then_some(())
    })
    .await;

    let status = first.exit_within(bound + Duration::from_secs(3)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    for s in senders {
        s.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let accepted: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let other: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Other(..)))
        .collect();
    let refused_n = outcomes.len() - accepted.len() - other.len();
    eprintln!(
        "shutdown under load: {} sent, {} acknowledged, {refused_n} refused, exit {took:?} after SIGTERM",
        outcomes.len(),
        accepted.len()
    );
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(
        refused_n >= 1,
        "the load did not outlast the shutdown: nothing was refused"
    );

    // Every acknowledged request is stored, and nothing was stored without an acknowledgement.
    let store = open_store(&db.url).await;
    for id in &accepted {
        let r = store
            .request(&RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} was acknowledged but is not stored"));
        assert_eq!(r.state.as_str(), "pending_approval");
    }
    let stored = store.recent_requests(100_000).await.unwrap().len();
    assert_eq!(stored, accepted.len());

    // After a restart, every queued job completes, each exactly once.
    let second = Grantry::start(&config, &[("GRANTRY__JOBS__WORKERS", "2".into())]).await;
    eventually(60, "every job done", || async {
        let jobs = store.jobs(None, 100_000).await.unwrap();
        jobs.iter().all(|j| j.state == "done").then_some(())
    })
    .await;
    let jobs = store.jobs(None, 100_000).await.unwrap();
    assert_eq!(jobs.len(), 2 * accepted.len(), "two approval cards each");
    assert!(jobs.iter().all(|j| j.attempts == 1), "a job ran twice");
    assert_eq!(
        slack.calls_of("chat.postMessage").len(),
        2 * accepted.len(),
        "one card per approver per request"
    );
    drop(second);
}

#[tokio::test]
async fn a_job_still_running_at_the_bound_is_released_and_runs_once_after_restart() {
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let config = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    let alice = scim.create_user("alice@example.com").await;
    let group = scim.create_group("platform-admins").await;
    // Long SCIM timeout and lease: only the shutdown bound can end the job in hand.
    let env = [
        ("GRANTRY__JOBS__WORKERS", "1".to_string()),
        ("GRANTRY__JOBS__LEASE_SECS", "600".to_string()),
        ("GRANTRY__CONNECTORS__SCIM__TIMEOUT_SECS", "120".to_string()),
        ("GRANTRY__SERVER__SHUTDOWN_TIMEOUT_SECS", "2".to_string()),
    ];
    let mut first = Grantry::start(&config, &env).await;
    let http = reqwest::Client::new();
    let Outcome::Accepted(id) = send_command(&http, &first.base_url, "trig-held").await else {
        panic!("request not accepted");
    };
    let store = open_store(&db.url).await;
    eventually(20, "cards posted", || async {
        (slack.calls_of("chat.postMessage").len() == 2).then_some(())
    })
    .await;

    // The app hangs: provisioning is in hand when SIGTERM comes.
    signal(scim.pid(), "STOP");
    let click = block_actions_body("U222", "grantry.approve", &id, "DU222", "1.1");
    let resp = post_signed(
        &http,
        &format!("{}/slack/interactions", first.base_url),
        &click,
        now_secs(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    eventually(20, "provision job in hand", || async {
        let jobs = store.jobs(Some("running"), 10).await.unwrap();
        jobs.iter().any(|j| j.kind == "provision").then_some(())
    })
    .await;
    let signalled = Instant::now();
    first.sigterm();
    let status = first.exit_within(Duration::from_secs(6)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "{:?}",
        signalled.elapsed()
    );
    let job = store
        .jobs(None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == "provision")
        .unwrap();
    assert_eq!(
        (job.state.as_str(), job.attempts),
        ("queued", 0),
        "released, the cut-off try not counted"
    );

    // The app recovers; a new process takes the job at once (no lease to wait out).
    signal(scim.pid(), "CONT");
    let _second = Grantry::start(&config, &env).await;
    eventually(20, "request active", || async {
        let r = store
            .request(&RequestId::parse(&id).unwrap())
            .await
            .unwrap()?;
        (r.state.as_str() == "active").then_some(())
    })
    .await;
    assert_eq!(scim.members(&group).await, vec![alice]);
    // The job is marked done just after its change commits (the request turns active first).
    let job = eventually(20, "provision job done", || async {
        let job = store
            .jobs(None, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.kind == "provision")?;
        (job.state == "done").then_some(job)
    })
    .await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 1));
    let created = store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "grant.created")
        .count();
    assert_eq!(created, 1);
}
