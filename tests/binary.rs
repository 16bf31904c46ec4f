//! The real `grantry` binary: killed between approve and provisioning it resumes on restart
//! with exactly one membership; `grantry audit verify` passes, then fails after the database's CLI edits a row.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::process::free_port;
use common::*;
use grantry::store::{Store, StoreOptions};
use tokio::process::{Child, Command};

const STORY: &str = "github platform-admins for 4h because incident INC-42";

async fn start(config: &std::path::Path, port: u16, workers: usize) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_grantry"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("GRANTRY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("GRANTRY__JOBS__WORKERS", workers.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start grantry");
    let http = reqwest::Client::new();
    eventually(30, "grantry answers /readyz", || async {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    child
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn open(db: &TestDb) -> Store {
    Store::connect(&StoreOptions {
        url: db.url.clone(),
        synchronous: "normal".into(),
        read_connections: 1,
    })
    .await
    .unwrap()
}

fn grantry_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_grantry"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// Runs the story up to the approval against a process with no workers; returns the request id.
async fn file_and_approve(port: u16) -> String {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let resp = post_signed(
        &http,
        &format!("{base}/slack/commands"),
        &slash_command_body("U111", STORY, "trig-bin"),
        now_secs(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = body["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let click = block_actions_body("U222", "grantry.approve", &id, "DU222", "1.1");
    let resp = post_signed(
        &http,
        &format!("{base}/slack/interactions"),
        &click,
        now_secs(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    id
}

#[tokio::test]
async fn killed_between_approve_and_provisioning_it_resumes_with_one_membership() {
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let config = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    let alice = scim.create_user("alice@example.com").await;
    let group = scim.create_group("platform-admins").await;

    // A process that only takes requests: the approval is acked and its job stored, not run.
    let port = free_port();
    let mut first = start(&config, port, 0).await;
    let id = file_and_approve(port).await;
    let store = open(&db).await;
    let queued = store.jobs(Some("queued"), 100).await.unwrap();
    assert!(
        queued
            .iter()
            .any(|j| j.kind == "provision" && j.payload.contains(&id)),
        "provision job stored"
    );
    assert!(scim.members(&group).await.is_empty());

    // SIGKILL: no chance to clean up.
    first.start_kill().unwrap();
    first.wait().await.unwrap();

    // Restarted with workers, the job runs: exactly one membership, one grant.
    let port = free_port();
    let mut second = start(&config, port, 2).await;
    eventually(20, "membership after restart", || async {
        scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
    eventually(10, "request active", || async {
        let r = store
            .request(&grantry::domain::RequestId::parse(&id).unwrap())
            .await
            .unwrap()?;
        (r.state.as_str() == "active").then_some(())
    })
    .await;
    assert_eq!(scim.members(&group).await, vec![alice.clone()]);
    assert_eq!(store.grants(None, 100).await.unwrap().len(), 1);
    let created = store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "grant.created")
        .count();
    assert_eq!(created, 1);

    // SIGTERM: a graceful stop, in time.
    let pid = second.id().unwrap() as i32;
    send_sigterm(pid);
    let status = tokio::time::timeout(Duration::from_secs(15), second.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

fn send_sigterm(pid: i32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn audit_verify_passes_then_names_the_row_edited_behind_its_back() {
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let config = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    scim.create_user("alice@example.com").await;
    scim.create_group("platform-admins").await;
    let port = free_port();
    let mut app = start(&config, port, 1).await;
    let id = file_and_approve(port).await;
    let store = open(&db).await;
    eventually(20, "grant recorded", || async {
        store.grant_for_request(&id).await.unwrap()
    })
    .await;
    app.start_kill().unwrap();
    app.wait().await.unwrap();

    let ok = grantry_cli(&config, &["audit", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("audit chain whole"));

    // The auditor's export states the chain verified, then has every event.
    let export = grantry_cli(&config, &["audit", "export", "--format", "jsonl"]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let text = String::from_utf8_lossy(&export.stdout).to_string();
    let head: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(head["chain_verified"], true);
    assert!(text
        .lines()
        .skip(1)
        .any(|l| l.contains("\"request.approved\"") && l.contains("bob@example.com")));
    let csv = grantry_cli(
        &config,
        &[
            "audit",
            "export",
            "--format",
            "csv",
            "--since",
            "2020-01-01",
        ],
    );
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    assert!(
        csv.starts_with("# grantry audit export; chain_verified=true"),
        "{csv}"
    );
    assert!(csv
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("seq,at,actor,action"));

    // Edit rows behind grantry's back with the database's own CLI.
    let edit = |sql: &str| {
        let out = if db.is_postgres() {
            std::process::Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", &db.url, "-c", sql])
                .output()
                .expect("psql installed")
        } else {
            std::process::Command::new("sqlite3")
                .arg(db.url.trim_start_matches("sqlite://"))
                .arg(sql)
                .output()
                .expect("sqlite3 installed")
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Someone rewrites who approved.
    edit("UPDATE audit_events SET actor = 'mallory@example.com' WHERE action = 'request.approved'");
    let bad = grantry_cli(&config, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1));
    let tampered = grantry_cli(&config, &["audit", "export"]);
    assert_eq!(
        tampered.status.code(),
        Some(1),
        "an export of a broken chain says so and fails"
    );
    assert!(String::from_utf8_lossy(&tampered.stdout)
        .lines()
        .next()
        .unwrap()
        .contains("\"chain_verified\":false"));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("BROKEN at event 3") && err.contains("request.approved"),
        "{err}"
    );

    // Put it back, then remove a row instead.
    edit("UPDATE audit_events SET actor = 'bob@example.com' WHERE action = 'request.approved'");
    assert!(grantry_cli(&config, &["audit", "verify"]).status.success());
    edit("DELETE FROM audit_events WHERE seq = 2");
    let bad = grantry_cli(&config, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("event 2 is missing"));

    // `policy explain` shows the decisions, approvers and trail behind the request.
    let explain = grantry_cli(&config, &["policy", "explain", &id]);
    assert!(
        explain.status.success(),
        "{}",
        String::from_utf8_lossy(&explain.stderr)
    );
    let text = String::from_utf8_lossy(&explain.stdout).to_string();
    assert!(
        text.contains("anyone-may-ask")
            && text.contains("bob@example.com")
            && text.contains("request.approved"),
        "{text}"
    );

    // And the ledger lists the grant.
    let list = grantry_cli(&config, &["grants", "list", "--json"]);
    assert!(list.status.success());
    let line: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["request_id"], id.as_str());
    assert_eq!(line["approved_by"], "bob@example.com");
}
