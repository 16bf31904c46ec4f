//! The kill test: 1,000 access requests (50 people × 20 entitlements) are filed and approved
//! through the real `grantry` binary while it is killed with SIGKILL at random moments and
//! started again. Clients behave as Slack and people do: a command or click that got no answer
//! is sent again (the same signed body, so the same trigger id).
//!
//! The killing goes on until every approved request is provisioned, so processes die in the
//! middle of intake, approval and provisioning alike.
//!
//! Proves: afterwards every request is active, each has exactly one grant and one `grant.created`,
//! every SCIM group holds exactly its 50 members (none missing, none twice), and the audit chain
//! verifies. `GRANTRY_KILL_REQUESTS` (a multiple of 20) changes the count; the figures are printed
//! and recorded in docs/reliability.md.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{now_secs, open_store, Grantry};
use common::*;
use rand::Rng;
use tokio::sync::RwLock;

const ENTITLEMENTS: usize = 20;

fn user_email(n: usize) -> String {
    format!("user{n:03}@example.com")
}

fn user_slack(n: usize) -> String {
    format!("U7{n:03}")
}

fn write_catalog_and_people(dir: &std::path::Path, people: usize) {
    let mut catalog = String::from(
        "[[apps]]\nid = \"github\"\nname = \"GitHub\"\nconnector = \"scim\"\nowners = [\"bob@example.com\"]\n",
    );
    for e in 0..ENTITLEMENTS {
        catalog.push_str(&format!(
            "\n  [[apps.entitlements]]\n  id = \"team-{e}\"\n  target = \"team-{e}\"\n  max_duration = \"1w\"\n"
        ));
    }
    std::fs::write(dir.join("catalog.toml"), catalog).unwrap();
    let mut file = String::from(
        "[[people]]\nemail = \"bob@example.com\"\nname = \"Bob Owner\"\nslack_id = \"U222\"\n",
    );
    for n in 0..people {
        file.push_str(&format!(
            "\n[[people]]\nemail = \"{}\"\nslack_id = \"{}\"\nmanager = \"bob@example.com\"\n",
            user_email(n),
            user_slack(n)
        ));
    }
    std::fs::write(dir.join("people.toml"), file).unwrap();
}

/// Posts a signed body to whichever process is up, until it answers 200; returns the body and
/// how many tries it took.
async fn deliver(
    http: &reqwest::Client,
    current: &RwLock<String>,
    path: &str,
    body: &str,
) -> (String, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        let base = current.read().await.clone();
        let ts = now_secs();
        let sig =
            grantry::chat::slack::signature::sign(SIGNING_SECRET.as_bytes(), ts, body.as_bytes());
        let sent = http
            .post(format!("{base}{path}"))
            .timeout(Duration::from_secs(5))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body.to_string())
            .send()
            .await;
        // No answer (the process was killed mid-request) or not a 200: send it again.
        if let Ok(r) = sent {
            if r.status() == 200 {
                if let Ok(text) = r.text().await {
                    return (text, tries);
                }
            }
        }
        assert!(tries < 2_000, "{path} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request_id_in(reply: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(reply).unwrap();
    let text = v["text"].as_str().unwrap();
    text.split_whitespace()
        .find(|w| w.starts_with("R-"))
        .unwrap_or_else(|| panic!("no request id in {text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let total: usize = std::env::var("GRANTRY_KILL_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let people = total / ENTITLEMENTS;
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let config = write_config(dir.path(), &db, &slack.base_url(), &scim.base_url, "");
    write_catalog_and_people(dir.path(), people);
    let mut scim_users = HashSet::new();
    for n in 0..people {
        scim_users.insert(scim.create_user(&user_email(n)).await);
    }
    let mut groups = Vec::new();
    for e in 0..ENTITLEMENTS {
        groups.push(scim.create_group(&format!("team-{e}")).await);
    }
    let env = [
        ("GRANTRY__JOBS__WORKERS", "2".to_string()),
        // A killed worker's job is taken over after this.
        ("GRANTRY__JOBS__LEASE_SECS", "3".to_string()),
        ("GRANTRY__JOBS__BACKOFF_BASE_MS", "200".to_string()),
        ("GRANTRY__JOBS__BACKOFF_MAX_MS", "2000".to_string()),
        ("GRANTRY__JOBS__MAX_ATTEMPTS", "50".to_string()),
        ("GRANTRY__JOBS__POLL_INTERVAL_MS", "500".to_string()),
    ];
    let first = Grantry::start(&config, &env).await;
    let current = Arc::new(RwLock::new(first.base_url.clone()));
    let running = Arc::new(tokio::sync::Mutex::new(first));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The killer: SIGKILL at a random moment, start again, repeat until the clients are done.
    let killer = {
        let (running, current, done, config) = (
            running.clone(),
            current.clone(),
            done.clone(),
            config.clone(),
        );
        let env = env.clone();
        tokio::spawn(async move {
            let mut kills = 0u32;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let wait = rand::rng().random_range(300..2_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let mut g = running.lock().await;
                let pid = g.child.id().unwrap();
                common::process::signal(pid, "KILL");
                let _ = g.child.wait().await;
                kills += 1;
                let next = Grantry::start(&config, &env).await;
                *current.write().await = next.base_url.clone();
                *g = next;
            }
            kills
        })
    };

    let started = Instant::now();
    let http = reqwest::Client::new();
    let work: Vec<(usize, usize)> = (0..people)
        .flat_map(|n| (0..ENTITLEMENTS).map(move |e| (n, e)))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(work));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (queue, current, http) = (queue.clone(), current.clone(), http.clone());
        clients.spawn(async move {
            let mut out = Vec::new();
            let mut retries = 0;
            loop {
                let Some((n, e)) = queue.lock().unwrap().pop() else {
                    return (out, retries);
                };
                let command = slash_command_body(
                    &user_slack(n),
                    &format!("github team-{e} for 1w because kill test {n}-{e}"),
                    &format!("kill-{n}-{e}"),
                );
                let (reply, tries) = deliver(&http, &current, "/slack/commands", &command).await;
                retries += tries - 1;
                let id = request_id_in(&reply);
                let click = block_actions_body("U222", "grantry.approve", &id, "DU222", "1.1");
                let (_, tries) = deliver(&http, &current, "/slack/interactions", &click).await;
                retries += tries - 1;
                out.push(((n, e), id));
            }
        });
    }
    let mut filed = HashMap::new();
    let mut client_retries = 0;
    while let Some(r) = clients.join_next().await {
        let (out, retries) = r.unwrap();
        client_retries += retries;
        filed.extend(out);
    }
    let delivered = started.elapsed();
    assert_eq!(filed.len(), total);
    let ids: HashSet<&String> = filed.values().collect();
    assert_eq!(
        ids.len(),
        total,
        "one request per command, whatever the retries"
    );

    // The killing goes on while the approved requests are provisioned.
    let store = open_store(&db.url).await;
    eventually(400, "every request active", || async {
        let states = store.count_requests_by_state().await.unwrap();
        (states == vec![("active".to_string(), total as i64)]).then_some(())
    })
    .await;
    let settled = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.await.unwrap();

    let grants = store.grants(Some("active"), 100_000).await.unwrap();
    assert_eq!(grants.len(), total);
    let per_request: HashSet<&str> = grants.iter().map(|g| g.request_id.as_str()).collect();
    assert_eq!(per_request.len(), total, "one grant per request");
    for id in ids.iter().take(50) {
        let created = store
            .audit_for_request(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "grant.created")
            .count();
        assert_eq!(created, 1, "{id}");
    }
    for g in &groups {
        let members = scim.members(g).await;
        let distinct: HashSet<&String> = members.iter().collect();
        assert_eq!(
            distinct.len(),
            members.len(),
            "group {g} holds someone twice"
        );
        assert_eq!(members.len(), people, "group {g}");
        assert!(members.iter().all(|m| scim_users.contains(m)));
    }
    let verdict = grantry::audit::verify(&store).await.unwrap();
    assert!(
        matches!(verdict, grantry::audit::Verdict::Whole { .. }),
        "{verdict:?}"
    );
    println!(
        "kill test ({}): {total} requests, {kills} SIGKILLs, {client_retries} client re-sends; \
         all delivered in {:.1} s, all active in {:.1} s; {} grants, {} SCIM memberships, none doubled",
        if db.is_postgres() { "PostgreSQL" } else { "SQLite" },
        delivered.as_secs_f64(),
        settled.as_secs_f64(),
        grants.len(),
        people * ENTITLEMENTS
    );
}
