//! Two `grantry serve` processes on one PostgreSQL database and one SCIM server, as in a
//! Kubernetes Deployment with two replicas: 500 requests from 50 people for 10 entitlements, each
//! slash command delivered twice (Slack's retry lands on the other replica) and each approval
//! click sent to both replicas at once; then every grant expires while both replicas sweep.
//!
//! Proves: one request per command, one decision per request, every request active, exactly one
//! provisioning (grant, `grant.created`, SCIM membership) each, no job run twice, both replicas
//! did work, the audit chain stays whole; after expiry exactly one revocation and one
//! `grant.revoked` per grant.
//!
//! Needs PostgreSQL: `GRANTRY_TEST_POSTGRES` (an admin URL), else the server at
//! postgres://postgres@127.0.0.1:5432/test; fails when neither answers. `scripts/test` runs it in
//! its PostgreSQL pass only (on SQLite there is nothing different to prove: one process is the
//! supported shape there).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::process::{now_secs, open_store, Grantry};
use common::*;
use sqlx::Connection;

const PEOPLE: usize = 50;
const ENTITLEMENTS: usize = 10;
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn postgres_admin() -> String {
    let url = std::env::var("GRANTRY_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES.to_string());
    if let Err(e) = sqlx::PgConnection::connect(&url).await {
        panic!(
            "the replicas test needs PostgreSQL: {url} does not answer ({e}). Start one, or set \
             GRANTRY_TEST_POSTGRES to an admin URL (scripts/test does both)."
        );
    }
    url
}

fn user_email(n: usize) -> String {
    format!("user{n:02}@example.com")
}

fn user_slack(n: usize) -> String {
    format!("U5{n:03}")
}

/// A catalog of one app with ten entitlements owned by Bob and Carol, and a people file of 50
/// requesters plus the owners.
fn write_catalog_and_people(dir: &std::path::Path) {
    let mut catalog = String::from(
        "[[apps]]\nid = \"github\"\nname = \"GitHub\"\nconnector = \"scim\"\n\
         owners = [\"bob@example.com\", \"carol@example.com\"]\nrisk = \"high\"\n",
    );
    for e in 0..ENTITLEMENTS {
        catalog.push_str(&format!(
            "\n  [[apps.entitlements]]\n  id = \"team-{e}\"\n  kind = \"team\"\n  target = \"team-{e}\"\n  \
             max_duration = \"8h\"\n  default_duration = \"4h\"\n"
        ));
    }
    std::fs::write(dir.join("catalog.toml"), catalog).unwrap();
    let mut people = String::from(
        "[[people]]\nemail = \"bob@example.com\"\nname = \"Bob Owner\"\nslack_id = \"U222\"\n\n\
         [[people]]\nemail = \"carol@example.com\"\nname = \"Carol Owner\"\nslack_id = \"U333\"\n",
    );
    for n in 0..PEOPLE {
        people.push_str(&format!(
            "\n[[people]]\nemail = \"{}\"\nname = \"User {n}\"\nslack_id = \"{}\"\nmanager = \"bob@example.com\"\n",
            user_email(n),
            user_slack(n)
        ));
    }
    std::fs::write(dir.join("people.toml"), people).unwrap();
}

/// Signs and posts a body; returns (status, body text).
async fn post(http: &reqwest::Client, url: String, body: String) -> (u16, String) {
    let r = post_signed(http, &url, &body, now_secs(), &[]).await;
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn request_id_in(reply: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(reply).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("sent to") || text.contains("already received"),
        "{text}"
    );
    text.split_whitespace()
        .find(|w| w.starts_with("R-"))
        .unwrap()
        .to_string()
}

/// Runs `f` on every item, at most `limit` at a time; results in completion order.
async fn bounded<I, T, F, Fut>(items: Vec<I>, limit: usize, f: F) -> Vec<T>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut set = tokio::task::JoinSet::new();
    for item in items {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let fut = f(item);
        set.spawn(async move {
            let out = fut.await;
            drop(permit);
            out
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

async fn count_by(pg: &mut sqlx::PgConnection, sql: &str) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pg)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// How long the whole scenario may take (it takes ~15 s): past it the test fails and says what
/// each database session was doing, instead of waiting for CI's own limit.
const SCENARIO_LIMIT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_give_one_outcome_per_request_and_per_expiry() {
    let admin = postgres_admin().await;
    let db = TestDb::create_postgres(&admin).await;
    let phase = Phase::default();
    let scenario = scenario(&db, &phase);
    tokio::pin!(scenario);
    tokio::select! {
        () = &mut scenario => {}
        () = tokio::time::sleep(SCENARIO_LIMIT) => {
            // Read while the replicas still run (the scenario is dropped, and they with it,
            // after the panic).
            let report = stuck_report(&db.url).await;
            panic!(
                "two replicas: not done in {SCENARIO_LIMIT:?}, stuck at: {}\n{report}",
                phase.get()
            );
        }
    }
}

/// Where the scenario is, for the report of one that does not finish.
#[derive(Default, Clone)]
struct Phase(Arc<std::sync::Mutex<&'static str>>);

impl Phase {
    fn set(&self, what: &'static str) {
        *self.0.lock().unwrap() = what;
    }

    fn get(&self) -> &'static str {
        &self.0.lock().unwrap()
    }
}

/// What every session on the test's database is doing, and which wait on which.
async fn stuck_report(url: &str) -> String {
    let read = async {
        let mut pg = sqlx::PgConnection::connect(url).await?;
        let sessions: Vec<(i32, String, String, String, String, String)> = sqlx::query_as(
            "SELECT pid, application_name, COALESCE(state, ''), \
             COALESCE(wait_event_type || ':' || wait_event, ''), \
             COALESCE((now() - xact_start)::text, ''), left(query, 300) \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut pg)
        .await?;
        let waits: Vec<(i32, String, String)> = sqlx::query_as(
            "SELECT pid, mode || ' on ' || locktype, pg_blocking_pids(pid)::text \
             FROM pg_locks WHERE NOT granted",
        )
        .fetch_all(&mut pg)
        .await?;
        Ok::<_, sqlx::Error>(format!(
            "sessions (pid, application, state, wait, transaction's age, query): {sessions:#?}\n\
             locks waited for (pid, lock, blocked by): {waits:#?}"
        ))
    };
    match tokio::time::timeout(Duration::from_secs(20), read).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => format!("(the database could not be read: {e})"),
        Err(_) => "(the database did not answer in 20 s)".to_string(),
    }
}

async fn scenario(db: &TestDb, phase: &Phase) {
    phase.set("starting SCIM, Slack's stand-in and two replicas");
    let scim = Scim::start().await;
    let slack = SlackStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), db, &slack.base_url(), &scim.base_url, "");
    write_catalog_and_people(dir.path());
    let mut scim_users = HashMap::new();
    for n in 0..PEOPLE {
        scim_users.insert(scim.create_user(&user_email(n)).await, n);
    }
    let mut groups = Vec::new();
    for e in 0..ENTITLEMENTS {
        groups.push(scim.create_group(&format!("team-{e}")).await);
    }

    let env = [
        ("GRANTRY__JOBS__WORKERS", "2".to_string()),
        // Production-like lease: a job is taken over only when its worker is gone.
        ("GRANTRY__JOBS__LEASE_SECS", "120".to_string()),
        ("GRANTRY__CONNECTORS__SCIM__TIMEOUT_SECS", "30".to_string()),
        ("GRANTRY__DATABASE__READ_CONNECTIONS", "8".to_string()),
    ];
    // The first replica files through its pipelined connection (store/pg_direct.rs); the
    // second's URL carries a parameter only sqlx reads, so it files through sqlx's pool: the two
    // ways share the audit chain's head.
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let env_b: Vec<(&str, String)> = env
        .iter()
        .cloned()
        .chain([(
            "GRANTRY__DATABASE__URL",
            format!("{}{separator}statement-cache-capacity=100", db.url),
        )])
        .collect();
    // Both start at once on an empty database, as a new Deployment does: migrations run once.
    let (a, b) = tokio::join!(
        Grantry::start(&config, &env),
        Grantry::start(&config, &env_b)
    );
    let replicas = [a.base_url.clone(), b.base_url.clone()];
    // Every request has a deadline: a replica that stops answering fails the test, not CI.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let filers: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'grantry-filer'",
    )
    .fetch_one(&mut sqlx::PgConnection::connect(&db.url).await.unwrap())
    .await
    .unwrap();
    assert_eq!(
        filers, 1,
        "the first replica's filer has its own connection, the second's none"
    );
    let store = open_store(&db.url).await;
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();

    phase.set("500 slash commands, each to both replicas");
    // 500 slash commands; each is delivered twice at once, to both replicas (a Slack retry).
    let commands: Vec<(usize, usize)> = (0..PEOPLE)
        .flat_map(|n| (0..ENTITLEMENTS).map(move |e| (n, e)))
        .collect();
    let started = std::time::Instant::now();
    let filed: Vec<(usize, String)> = bounded(
        commands.iter().copied().enumerate().collect(),
        16,
        |(i, (n, e))| {
            let http = http.clone();
            let (first, second) = (replicas[i % 2].clone(), replicas[(i + 1) % 2].clone());
            async move {
                let body = slash_command_body(
                    &user_slack(n),
                    &format!("github team-{e} for 4h because on-call rotation {i}"),
                    &format!("trig-{i}"),
                );
                let (x, y) = tokio::join!(
                    post(&http, format!("{first}/slack/commands"), body.clone()),
                    post(&http, format!("{second}/slack/commands"), body),
                );
                assert_eq!((x.0, y.0), (200, 200), "{x:?} {y:?}");
                let (id_x, id_y) = (request_id_in(&x.1), request_id_in(&y.1));
                assert_eq!(
                    id_x, id_y,
                    "a retry on the other replica filed a second request"
                );
                let fresh = [&x.1, &y.1]
                    .iter()
                    .filter(|t| t.contains("sent to"))
                    .count();
                assert_eq!(fresh, 1, "exactly one delivery files it: {x:?} {y:?}");
                (i, id_x)
            }
        },
    )
    .await;
    let intake_took = started.elapsed();
    assert_eq!(filed.len(), 500);
    let ids: HashSet<&String> = filed.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 500, "500 commands, 500 distinct requests");
    assert_eq!(store.recent_requests(10_000).await.unwrap().len(), 500);

    phase.set("500 approval clicks, each to both replicas");
    // Each approval click is sent to both replicas at once (Bob for even, Carol for odd ones).
    let started = std::time::Instant::now();
    let clicks: Vec<()> = bounded(filed.clone(), 16, |(i, id)| {
        let http = http.clone();
        let replicas = replicas.clone();
        async move {
            let approver = if i % 2 == 0 { "U222" } else { "U333" };
            let body = block_actions_body(
                approver,
                "grantry.approve",
                &id,
                &format!("D{approver}"),
                "1.1",
            );
            let (x, y) = tokio::join!(
                post(
                    &http,
                    format!("{}/slack/interactions", replicas[0]),
                    body.clone()
                ),
                post(&http, format!("{}/slack/interactions", replicas[1]), body),
            );
            assert_eq!((x.0, y.0), (200, 200));
        }
    })
    .await;
    assert_eq!(clicks.len(), 500);
    let clicks_took = started.elapsed();

    phase.set("waiting for 500 requests to be active");
    eventually(240, "all 500 requests active", || async {
        let states = store.count_requests_by_state().await.unwrap();
        (states == vec![("active".to_string(), 500)]).then_some(())
    })
    .await;
    let active_after = started.elapsed();
    eventually(60, "every job done", || async {
        let states = count_by(
            &mut sqlx::PgConnection::connect(&db.url).await.unwrap(),
            "SELECT state, COUNT(*) FROM jobs GROUP BY state",
        )
        .await;
        (states.len() == 1 && states.contains_key("done")).then_some(())
    })
    .await;

    phase.set("checking decisions, grants and SCIM's groups");
    // One decision, one provisioning, one grant per request; the second click was refused.
    let per_action = |action: &'static str| {
        let db_url = db.url.clone();
        async move {
            let mut c = sqlx::PgConnection::connect(&db_url).await.unwrap();
            count_by(
                &mut c,
                &format!(
                    "SELECT request_id, COUNT(*) FROM audit_events WHERE action = '{action}' \
                     GROUP BY request_id"
                ),
            )
            .await
        }
    };
    for (action, expected) in [
        ("request.submitted", 1),
        ("request.approved", 1),
        ("request.provisioning", 1),
        ("grant.created", 1),
        ("approval.refused", 1),
    ] {
        let counts = per_action(action).await;
        assert_eq!(counts.len(), 500, "{action}: requests with the event");
        assert!(
            counts.values().all(|c| *c == expected),
            "{action}: some request has it more than {expected} times"
        );
    }
    let refusals: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM audit_events WHERE action = 'approval.refused'")
            .fetch_all(&mut pg)
            .await
            .unwrap();
    assert!(refusals.iter().all(|d| d.contains("already_decided")));
    let grants = store.grants(Some("active"), 10_000).await.unwrap();
    assert_eq!(grants.len(), 500);
    let grant_requests: HashSet<&str> = grants.iter().map(|g| g.request_id.as_str()).collect();
    assert_eq!(grant_requests.len(), 500, "one grant per request");

    // SCIM holds exactly the 50 people in each of the 10 groups.
    for g in &groups {
        let members = scim.members(g).await;
        let distinct: HashSet<&String> = members.iter().collect();
        assert_eq!(members.len(), PEOPLE, "group {g}");
        assert_eq!(distinct.len(), PEOPLE, "group {g} has a member twice");
        assert!(members.iter().all(|m| scim_users.contains_key(m)));
    }

    // No job ran twice; both replicas ran jobs.
    let attempts = count_by(
        &mut pg,
        "SELECT kind || ':' || attempts, COUNT(*) FROM jobs GROUP BY kind, attempts",
    )
    .await;
    assert!(
        attempts.keys().all(|k| k.ends_with(":1")),
        "jobs run more than once: {attempts:?}"
    );
    assert_eq!(attempts.get("provision:1"), Some(&500));
    let by_replica = count_by(
        &mut pg,
        "SELECT split_part(locked_by, '-', 2), COUNT(*) FROM jobs GROUP BY 1",
    )
    .await;
    let pids = [
        a.child.id().unwrap().to_string(),
        b.child.id().unwrap().to_string(),
    ];
    for pid in &pids {
        assert!(
            by_replica.get(pid).is_some_and(|n| *n > 0),
            "replica {pid} ran no job: {by_replica:?}"
        );
    }

    phase.set("expiring every grant");
    // Every grant expires while both replicas sweep: each is revoked exactly once.
    let started = std::time::Instant::now();
    let past = chrono::Utc::now().timestamp_millis() - 1_000;
    sqlx::query("UPDATE grants SET expires_at = $1 WHERE state = 'active'")
        .bind(past)
        .execute(&mut pg)
        .await
        .unwrap();
    phase.set("waiting for 500 grants to be revoked");
    eventually(240, "all 500 grants revoked", || async {
        let revoked = store.grants(Some("revoked"), 10_000).await.unwrap().len();
        (revoked == 500).then_some(())
    })
    .await;
    let sweep_took = started.elapsed();
    eventually(60, "every job done", || async {
        let states = count_by(
            &mut sqlx::PgConnection::connect(&db.url).await.unwrap(),
            "SELECT state, COUNT(*) FROM jobs GROUP BY state",
        )
        .await;
        (states.len() == 1 && states.contains_key("done")).then_some(())
    })
    .await;
    for action in ["grant.expiring", "grant.revoked"] {
        let counts = per_action(action).await;
        assert_eq!(counts.len(), 500, "{action}");
        assert!(
            counts.values().all(|c| *c == 1),
            "{action} twice for a grant"
        );
    }
    let attempts = count_by(
        &mut pg,
        "SELECT kind || ':' || attempts, COUNT(*) FROM jobs GROUP BY kind, attempts",
    )
    .await;
    assert_eq!(attempts.get("revoke:1"), Some(&500), "{attempts:?}");
    assert!(attempts.keys().all(|k| k.ends_with(":1")), "{attempts:?}");
    assert_eq!(
        store.count_requests_by_state().await.unwrap(),
        vec![("expired".to_string(), 500)]
    );
    for g in &groups {
        assert!(
            scim.members(g).await.is_empty(),
            "group {g} still has members"
        );
    }

    phase.set("grantry audit verify");
    // The hash chain, appended to by two processes at once, is whole.
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_grantry"))
        .arg("--config")
        .arg(&config)
        .args(["audit", "verify"])
        .env("GRANTRY__DATABASE__URL", &db.url)
        .kill_on_drop(true)
        .output();
    let verify = tokio::time::timeout(Duration::from_secs(60), verify)
        .await
        .expect("grantry audit verify finished within 60 s")
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    eprintln!(
        "two replicas: 1000 command deliveries in {intake_took:?}, 1000 clicks in {clicks_took:?}, \
         500 active {active_after:?} after the first click, 500 revoked {sweep_took:?} after expiry; \
         jobs per replica {by_replica:?}"
    );
}
