//! Group commit on the ack path: many requests filed at once share transactions, and each
//! caller still gets its own, exact answer (created, duplicate of the first, or its own error).
//! Intake's reads likewise: concurrent questions share a query, each gets its own facts.

mod common;

use futures_util::future::join_all;
use grantry::domain::{AccessDuration, AccessRequest, RequestId, RequestState};
use grantry::store::decisions::DecisionRecord;
use grantry::store::filing::{Filed, Filing, FilingApproval, FilingEvent};
use grantry::store::rulings::{Ruled, Ruling};
use grantry::store::{Job, Store, StoreOptions};
use serde_json::json;

async fn store(dir: &std::path::Path) -> (Store, common::TestDb) {
    let db = common::TestDb::create(dir).await;
    let store = Store::open(&StoreOptions {
        url: db.url.clone(),
        synchronous: "full".into(),
        read_connections: 4,
    })
    .await
    .unwrap();
    (store, db)
}

/// Another writer's append to the audit chain (as offboarding someone would), at `at_ms`.
async fn append_elsewhere(store: &Store, at_ms: i64) {
    let mut tx = store.begin().await.unwrap();
    tx.audit(
        at_ms,
        grantry::store::audit::NewAuditEvent {
            actor: "it@example.com",
            action: "person.offboarded",
            request_id: None,
            grant_id: None,
            detail: json!({}),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// A store in which `email` was offboarded.
async fn store_with_offboarded(dir: &std::path::Path, email: &str) -> (Store, common::TestDb) {
    let (store, db) = store(dir).await;
    let mut tx = store.begin().await.unwrap();
    tx.mark_offboarded(email, "it@example.com", 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (store, db)
}

/// Grant `G-<n>-<g>` of `p<n>@example.com` to `github/team-<g>`, on request `request_id`.
fn team_grant(
    request_id: &str,
    n: usize,
    g: usize,
    state: &str,
    expires_at: i64,
) -> grantry::store::grants::GrantRecord {
    grantry::store::grants::GrantRecord {
        id: format!("G-{n}-{g}"),
        request_id: request_id.to_string(),
        subject_email: format!("p{n}@example.com"),
        app: "github".into(),
        entitlement: format!("team-{g}"),
        connector: "scim".into(),
        account_id: "a".into(),
        target: "t".into(),
        receipt: "{}".into(),
        state: state.into(),
        approved_by: None,
        granted_at: 1,
        expires_at: Some(expires_at),
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    }
}

fn filing(n: usize, key: Option<String>) -> Filing {
    let id = RequestId::generate();
    let now = 1_700_000_000_000 + n as i64;
    Filing {
        request: AccessRequest {
            id: id.clone(),
            platform: "slack".into(),
            requester_chat_id: format!("U{n}"),
            requester_email: format!("p{n}@example.com"),
            subject_email: format!("p{n}@example.com"),
            app: "github".into(),
            entitlement: "platform-admins".into(),
            duration: Some(AccessDuration::parse("4h").unwrap()),
            reason: format!("reason {n}"),
            ticket: None,
            extends_grant: None,
            state: RequestState::PendingApproval,
            created_at_ms: now,
            updated_at_ms: now,
        },
        idempotency_key: key,
        reply_channel: Some("C1".into()),
        decision: DecisionRecord {
            request_id: id.as_str().to_string(),
            kind: "policy".into(),
            outcome: "needs_approval".into(),
            actor: "policy".into(),
            policy_ids: "[]".into(),
            reasons: "[]".into(),
            at: now,
        },
        events: vec![
            FilingEvent {
                actor: format!("p{n}@example.com"),
                action: "request.submitted".into(),
                detail: json!({"n": n}),
            },
            FilingEvent {
                actor: "policy".into(),
                action: "request.routed".into(),
                detail: json!({"n": n}),
            },
        ],
        approvals: vec![
            FilingApproval {
                email: "owner1@example.com".into(),
                name: "Owner One".into(),
                chat_user_id: Some("UO1".into()),
                on_behalf_of: None,
            },
            FilingApproval {
                email: "owner2@example.com".into(),
                name: "Owner Two".into(),
                chat_user_id: None,
                on_behalf_of: Some("On behalf of someone".into()),
            },
        ],
        jobs: vec![Job::Notify {
            platform: "slack".into(),
            to: format!("U{n}"),
            text: format!("filed {n}"),
            ephemeral_channel: None,
        }],
        max_attempts: 5,
        ticket: None,
    }
}

async fn any(db: &common::TestDb) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&db.url).await.unwrap()
}

async fn count(db: &common::TestDb, sql: &str) -> i64 {
    let mut c = any(db).await;
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_filings_each_get_their_own_rows_and_a_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let filings: Vec<Filing> = (0..200)
        .map(|n| filing(n, Some(format!("key-{n}"))))
        .collect();
    let ids: Vec<String> = filings
        .iter()
        .map(|f| f.request.id.as_str().to_string())
        .collect();
    let answers = join_all(filings.into_iter().map(|f| {
        let s = store.clone();
        tokio::spawn(async move { s.file(f).await })
    }))
    .await;
    for a in answers {
        assert_eq!(a.unwrap().unwrap(), Filed::Created);
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 200);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM decisions").await, 200);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events").await, 400);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM approvals").await, 400);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 600);
    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { events: 400, .. }
    ));
    // Every card job points at an approval of its own request, and each approval has one.
    let mut approval_ids = std::collections::HashSet::new();
    for id in &ids {
        let rid = RequestId::from_stored(id.clone());
        let approvals = store.approvals(&rid).await.unwrap();
        assert_eq!(approvals.len(), 2, "{id}");
        approval_ids.extend(approvals.iter().map(|a| a.id));
        assert_eq!(
            approvals[1].on_behalf_of.as_deref(),
            Some("On behalf of someone")
        );
        let events = store.audit_for_request(id).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["request.submitted", "request.routed"]
        );
    }
    let cards: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'post_approval_card'")
            .fetch_all(&mut any(&db).await)
            .await
            .unwrap();
    assert_eq!(cards.len(), 400);
    let mut seen = std::collections::HashSet::new();
    for c in cards {
        // The payload is the job as the workers read it (built in SQL, it must match serde's).
        let job: grantry::store::Job = serde_json::from_str(&c).unwrap();
        let grantry::store::Job::PostApprovalCard { approval_id } = job else {
            panic!("not a card: {c}");
        };
        assert!(approval_ids.contains(&approval_id), "{c}");
        assert!(
            seen.insert(approval_id),
            "two cards for approval {approval_id}"
        );
    }
    assert_eq!(seen, approval_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_files_once_and_every_delivery_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let answers = join_all((0..40).map(|n| {
        let s = store.clone();
        let f = filing(n, Some("slack:trigger-1".into()));
        let id = f.request.id.clone();
        tokio::spawn(async move { (id, s.file(f).await.unwrap()) })
    }))
    .await;
    let answers: Vec<(RequestId, Filed)> = answers.into_iter().map(|a| a.unwrap()).collect();
    let created: Vec<&RequestId> = answers
        .iter()
        .filter(|(_, f)| *f == Filed::Created)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (_, f) in &answers {
        if let Filed::Duplicate { id, state } = f {
            assert_eq!(id, created[0]);
            assert_eq!(*state, RequestState::PendingApproval);
        }
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events").await, 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_filing_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let first = filing(0, None);
    let taken = first.request.id.clone();
    assert_eq!(store.file(first).await.unwrap(), Filed::Created);
    // Twenty good filings and, among them, one reusing a stored request id (a primary-key
    // violation, which no idempotency key covers): it must fail, the others must not.
    let mut filings: Vec<Filing> = (1..=20).map(|n| filing(n, None)).collect();
    let mut bad = filing(99, None);
    bad.request.id = taken;
    bad.decision.request_id = bad.request.id.as_str().to_string();
    filings.insert(10, bad);
    let answers = join_all(filings.into_iter().map(|f| {
        let s = store.clone();
        let n = f.request.requester_chat_id.clone();
        tokio::spawn(async move { (n, s.file(f).await) })
    }))
    .await;
    for a in answers {
        let (n, r) = a.unwrap();
        if n == "U99" {
            assert!(r.is_err(), "the faulty filing was accepted");
        } else {
            assert_eq!(r.unwrap(), Filed::Created, "{n}");
        }
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 21);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_events").await, 42);
    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { events: 42, .. }
    ));
}

#[tokio::test]
async fn intake_facts_reads_offboarding_holdings_and_delegations_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = store_with_offboarded(dir.path(), "gone@example.com").await;
    let mut tx = store.begin().await.unwrap();
    tx.set_delegation("owner1@example.com", "deputy@example.com", 5_000, 1)
        .await
        .unwrap();
    tx.set_delegation("owner2@example.com", "old@example.com", 500, 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let facts = store
        .intake_facts(
            &["alice@example.com", "gone@example.com"],
            "alice@example.com",
            &["owner1@example.com", "owner2@example.com"],
            1_000,
        )
        .await
        .unwrap();
    assert!(facts.is_offboarded("gone@example.com"));
    assert!(!facts.is_offboarded("alice@example.com"));
    assert!(facts.held.is_empty());
    assert_eq!(
        facts.delegations.get("owner1@example.com"),
        Some(&("deputy@example.com".to_string(), 5_000))
    );
    assert!(
        !facts.delegations.contains_key("owner2@example.com"),
        "ended"
    );
    let none = store
        .intake_facts(&["alice@example.com"], "alice@example.com", &[], 1_000)
        .await
        .unwrap();
    assert!(none.offboarded.is_empty() && none.delegations.is_empty());
}

#[tokio::test]
async fn concurrent_intake_reads_share_a_query_and_each_gets_its_own_facts() {
    let dir = tempfile::tempdir().unwrap();
    // p0..p39 each hold `n % 3` active grants (one more, revoked, that must not show), p7 was
    // offboarded, and owner<n> delegated to deputy<n> until n * 100.
    let (store, _db) = store_with_offboarded(dir.path(), "p7@example.com").await;
    for n in 0..40usize {
        let f = filing(n, None);
        let request_id = f.request.id.as_str().to_string();
        store.file(f).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        for g in 0..=(n % 3) {
            let state = if g == n % 3 { "revoked" } else { "active" };
            // Ordered by expiry: team-1 ends before team-0.
            let grant = team_grant(&request_id, n, g, state, 10_000 - g as i64);
            tx.insert_grant(&grant).await.unwrap();
        }
        tx.set_delegation(
            &format!("owner{n}@example.com"),
            &format!("deputy{n}@example.com"),
            n as i64 * 100,
            1,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    let asks = (0..40usize).map(|n| {
        let store = store.clone();
        async move {
            let me = format!("p{n}@example.com");
            let owner = format!("owner{n}@example.com");
            let facts = store
                .intake_facts(
                    &[&me, "p7@example.com"],
                    &me,
                    &[&owner, "nobody@example.com"],
                    // Odd n ask when their delegation ends (it is over), even n just before.
                    n as i64 * 100 - if n % 2 == 1 { 0 } else { 1 },
                )
                .await
                .unwrap();
            (n, facts)
        }
    });
    for (n, facts) in join_all(asks).await {
        assert_eq!(facts.offboarded, vec!["p7@example.com".to_string()], "{n}");
        let held: Vec<&str> = facts.held.iter().map(String::as_str).collect();
        let expected: &[&str] = match n % 3 {
            0 => &[],
            1 => &["github/team-0"],
            _ => &["github/team-1", "github/team-0"],
        };
        assert_eq!(held, expected, "{n}");
        let owner = format!("owner{n}@example.com");
        if n % 2 == 1 {
            assert!(facts.delegations.is_empty(), "{n}: ended at its now");
        } else {
            assert_eq!(
                facts.delegations.get(&owner),
                Some(&(format!("deputy{n}@example.com"), n as i64 * 100)),
                "{n}"
            );
            assert_eq!(facts.delegations.len(), 1, "{n}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_reads_cancelled_midway_leave_every_other_caller_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = store_with_offboarded(dir.path(), "gone@example.com").await;
    for round in 0..20u64 {
        let tasks: Vec<_> = (0..30u64)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .intake_facts(
                            &["gone@example.com", "here@example.com"],
                            &format!("p{n}@example.com"),
                            &[],
                            1,
                        )
                        .await
                })
            })
            .collect();
        // Some callers go away before asking, some while reading for others (that read's
        // questions are then asked again by their callers): aborts after 0 to ~1 ms.
        let until = std::time::Instant::now() + std::time::Duration::from_micros(round * 50);
        while std::time::Instant::now() < until {
            tokio::task::yield_now().await;
        }
        for (n, t) in tasks.iter().enumerate() {
            if (n as u64 + round).is_multiple_of(4) {
                t.abort();
            }
        }
        for (n, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(facts) => {
                    let facts = facts.unwrap_or_else(|e| panic!("round {round}, {n}: {e}"));
                    assert_eq!(facts.offboarded, vec!["gone@example.com".to_string()]);
                }
                Err(e) => assert!(e.is_cancelled(), "round {round}, {n}: {e}"),
            }
        }
    }
}

/// Text that could end a quoted literal, escape a quote or stand for a parameter is stored and
/// read back exactly as given, everywhere a filing writes text (on PostgreSQL a batch's values
/// are written into its query as literals, store/batch.rs), and a duplicate is still found by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_looks_like_sql_is_stored_exactly_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let nasty = "it's \\' ''; DROP TABLE requests; -- $1 ? \\x00 E'\\n' 😀 \u{7f}\n\tend\\";
    let mut f = filing(1, Some(format!("slack:{nasty}")));
    f.request.reason = nasty.to_string();
    f.request.requester_chat_id = nasty.to_string();
    f.approvals[0].name = nasty.to_string();
    f.approvals[1].on_behalf_of = Some(nasty.to_string());
    f.events[0].detail = json!({ "reason": nasty });
    f.jobs = vec![Job::Notify {
        platform: "slack".into(),
        to: "U1".into(),
        text: nasty.to_string(),
        ephemeral_channel: None,
    }];
    let request = f.request.clone();
    assert_eq!(store.file(f).await.unwrap(), Filed::Created);

    assert_eq!(
        store.request(&request.id).await.unwrap(),
        Some(request.clone())
    );
    let approvals = store.approvals(&request.id).await.unwrap();
    assert_eq!(approvals[0].approver_name, nasty);
    assert_eq!(approvals[1].on_behalf_of.as_deref(), Some(nasty));
    let events = store.audit_for_request(request.id.as_str()).await.unwrap();
    let detail: serde_json::Value = serde_json::from_str(&events[0].detail).unwrap();
    assert_eq!(detail["reason"], nasty);
    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { events: 2, .. }
    ));
    let texts: Vec<String> = sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'notify'")
        .fetch_all(&mut any(&db).await)
        .await
        .unwrap();
    let Ok(Job::Notify { text, .. }) = serde_json::from_str::<Job>(&texts[0]) else {
        panic!("not a notice: {texts:?}");
    };
    assert_eq!(text, nasty);

    // Delivered again, it is found by its key and names the first.
    let again = store
        .file(filing(2, Some(format!("slack:{nasty}"))))
        .await
        .unwrap();
    assert_eq!(
        again,
        Filed::Duplicate {
            id: request.id.clone(),
            state: RequestState::PendingApproval
        }
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 1);
}

/// On SQLite the filer writes a batch in one round trip when it knows the chain's head from its
/// own last commit. Another writer's append in between, or a duplicate, sends the batch the long
/// way (the database refuses the guess): the chain stays whole and every answer is right.
#[tokio::test]
async fn a_head_moved_by_another_writer_or_a_duplicate_is_caught_and_the_chain_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let first = filing(1, Some("slack:k1".into()));
    let first_id = first.request.id.clone();
    assert_eq!(store.file(first).await.unwrap(), Filed::Created);
    assert_eq!(
        store
            .file(filing(2, Some("slack:k2".into())))
            .await
            .unwrap(),
        Filed::Created
    );

    // Another writer appends to the chain between two filings.
    append_elsewhere(&store, 1_700_000_000_500).await;
    assert_eq!(
        store
            .file(filing(3, Some("slack:k3".into())))
            .await
            .unwrap(),
        Filed::Created
    );

    // A second delivery of the first request, then a request with no key.
    assert_eq!(
        store
            .file(filing(4, Some("slack:k1".into())))
            .await
            .unwrap(),
        Filed::Duplicate {
            id: first_id,
            state: RequestState::PendingApproval
        }
    );
    assert_eq!(store.file(filing(5, None)).await.unwrap(), Filed::Created);

    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { events: 9, .. }
    ));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 4);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM decisions").await, 4);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM approvals").await, 8);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 12);
}

/// Batches that fail among batches that do not: redeliveries of stored requests (their batch
/// fails on the taken key) and another writer's appends (the head moves under the batches
/// built on it), amid a stream of new filings. On PostgreSQL a batch is sent behind the one in
/// flight, built on the head that one leaves (store/in_flight.rs): when the one before rolls
/// back, it must roll back too and be written again. Every caller gets its own answer, nothing
/// is written twice, and the chain stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_behind_one_that_rolls_back_are_written_again_and_every_answer_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let mut first_ids = Vec::new();
    for k in 0..5 {
        let f = filing(1_000 + k, Some(format!("stored-{k}")));
        first_ids.push(f.request.id.clone());
        assert_eq!(store.file(f).await.unwrap(), Filed::Created);
    }
    // Sixteen callers, each filing ten in turn (as the ack path's clients do, so that batches
    // go out while others are in flight), and another writer appending now and then.
    let appends = {
        let s = store.clone();
        tokio::spawn(async move {
            for k in 0..4 {
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                append_elsewhere(&s, 1_700_000_100_000 + k).await;
            }
        })
    };
    let callers = (0..16).map(|c| {
        let s = store.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in (c * 10)..(c * 10 + 10) {
                // Every eighth a redelivery of a stored request.
                let (f, first) = if n % 8 == 3 {
                    let k = (n / 8) % 5;
                    (filing(n, Some(format!("stored-{k}"))), Some(k))
                } else {
                    (filing(n, Some(format!("new-{n}"))), None)
                };
                answers.push((first, s.file(f).await.unwrap()));
            }
            answers
        })
    });
    let answers = join_all(callers).await;
    appends.await.unwrap();
    let (mut created, mut redelivered) = (0, 0);
    for (first, filed) in answers.into_iter().flat_map(|a| a.unwrap()) {
        match first {
            None => {
                assert_eq!(filed, Filed::Created);
                created += 1;
            }
            Some(k) => {
                assert_eq!(
                    filed,
                    Filed::Duplicate {
                        id: first_ids[k].clone(),
                        state: RequestState::PendingApproval
                    }
                );
                redelivered += 1;
            }
        }
    }
    assert_eq!((created, redelivered), (140, 20));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 145);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM decisions").await, 145);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM approvals").await, 290);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 435);
    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { events: 294, .. }
    ));
}

/// PostgreSQL only (on SQLite there is no such connection): the filer files on a connection of
/// its own (store/pg_direct.rs, `application_name` grantry-filer), and when the server ends it
/// the next filing opens another. At most the filing in flight as it ended fails (unacked, so
/// nothing accepted is lost); the chain stays whole.
#[tokio::test]
async fn postgres_files_on_its_own_connection_and_opens_another_when_the_server_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    if !db.is_postgres() {
        return;
    }
    let filers = "SELECT COUNT(*) FROM pg_stat_activity \
                  WHERE datname = current_database() AND application_name = 'grantry-filer'";
    assert_eq!(store.file(filing(1, None)).await.unwrap(), Filed::Created);
    assert_eq!(count(&db, filers).await, 1, "the filer's own connection");

    count(
        &db,
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'grantry-filer'",
    )
    .await;
    common::eventually(10, "the filer's connection to end", || async {
        (count(&db, filers).await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let mut failed = 0;
    let mut created = 1;
    for n in 2..6 {
        match store.file(filing(n, None)).await {
            Ok(Filed::Created) => created += 1,
            Ok(other) => panic!("{other:?}"),
            Err(_) => failed += 1,
        }
    }
    assert!(
        failed <= 1,
        "{failed} filings failed after the connection ended"
    );
    assert_eq!(count(&db, filers).await, 1, "a new connection of its own");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, created);
    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { .. }
    ));
}

/// An approver's ruling as the filer writes it: `owner1`'s Approve on request `n`.
fn ruling(id: &RequestId, approval_id: i64, n: i64) -> Ruling {
    Ruling {
        request_id: id.clone(),
        approval_id,
        to: RequestState::Provisioning,
        outcome: "approved",
        shorter: None,
        decision: DecisionRecord {
            request_id: id.to_string(),
            kind: "approver".into(),
            outcome: "approved".into(),
            actor: "owner1@example.com".into(),
            policy_ids: "[]".into(),
            reasons: "[]".into(),
            at: 1_700_000_100_000 + n,
        },
        events: vec![
            FilingEvent {
                actor: "owner1@example.com".into(),
                action: "request.approved".into(),
                detail: json!({"n": n}),
            },
            FilingEvent {
                actor: "system".into(),
                action: "request.provisioning".into(),
                detail: json!({"n": n}),
            },
        ],
        jobs: vec![Job::Provision {
            request_id: id.to_string(),
        }],
        at_ms: 1_700_000_100_000 + n,
        max_attempts: 5,
    }
}

/// Rulings on 40 requests at once, each given twice (a double click), with filings between:
/// each request is decided once, by its first ruling; the second loses and writes nothing; the
/// other approver's slot is closed; the chain stays whole. A ruling whose slot is no longer
/// pending loses too.
#[tokio::test]
async fn concurrent_rulings_each_decide_their_own_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    let filings: Vec<Filing> = (0..40).map(|n| filing(n, None)).collect();
    let ids: Vec<RequestId> = filings.iter().map(|f| f.request.id.clone()).collect();
    for r in join_all(filings.into_iter().map(|f| store.file(f))).await {
        assert_eq!(r.unwrap(), Filed::Created);
    }
    let mut rulings = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let (req, slot) = store
            .read_for_click(id, "slack", "UO1")
            .await
            .unwrap()
            .expect("the request is there");
        assert_eq!(req.state, RequestState::PendingApproval);
        let slot = slot.expect("owner1's slot is pending");
        assert_eq!(slot.approver_email, "owner1@example.com");
        rulings.push(ruling(id, slot.id, n as i64));
        rulings.push(ruling(id, slot.id, n as i64));
    }
    assert!(
        store
            .read_for_click(&ids[0], "slack", "UNOBODY")
            .await
            .unwrap()
            .is_some_and(|(_, slot)| slot.is_none()),
        "no slot for someone who is not an approver"
    );
    // Read at once (PostgreSQL: one query for the clicks waiting), each gets its own answer:
    // the approver's slot on its request, none for someone else, nothing for no request.
    let missing = RequestId::generate();
    let asked: Vec<(&RequestId, &str)> = ids
        .iter()
        .map(|id| (id, "UO1"))
        .chain([(&ids[1], "UNOBODY"), (&missing, "UO1")])
        .collect();
    let reads = join_all(
        asked
            .iter()
            .map(|(id, who)| store.read_for_click(id, "slack", who)),
    )
    .await;
    for ((id, who), read) in asked.iter().zip(reads) {
        let read = read.unwrap();
        if *id == &missing {
            assert!(read.is_none(), "no request {id}");
            continue;
        }
        let (req, slot) = read.expect("the request is there");
        assert_eq!(&req.id, *id);
        match *who {
            "UO1" => assert_eq!(slot.expect("a slot").request_id, id.as_str()),
            _ => assert!(slot.is_none(), "{who} has no slot on {id}"),
        }
    }
    let more: Vec<Filing> = (40..60).map(|n| filing(n, None)).collect();
    let (ruled, filed) = tokio::join!(
        join_all(rulings.into_iter().map(|v| store.file_ruling(v))),
        join_all(more.into_iter().map(|f| store.file(f))),
    );
    assert!(filed.into_iter().all(|r| r.unwrap() == Filed::Created));
    let ruled: Vec<Ruled> = ruled.into_iter().map(Result::unwrap).collect();
    for pair in ruled.chunks(2) {
        assert_eq!(
            pair.iter().filter(|r| **r == Ruled::Written).count(),
            1,
            "{pair:?}"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM requests WHERE state = 'provisioning'"
        )
        .await,
        40
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM decisions WHERE kind = 'approver'"
        )
        .await,
        40
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM approvals WHERE state = 'approved'"
        )
        .await,
        40
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM approvals WHERE state = 'closed'").await,
        40
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs WHERE kind = 'provision'").await,
        40
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'request.approved'"
        )
        .await,
        40
    );

    // The slot was closed since the read (another approver decided, a delegation): lost.
    let late = filing(99, None);
    let id = late.request.id.clone();
    store.file(late).await.unwrap();
    let (_, slot) = store
        .read_for_click(&id, "slack", "UO1")
        .await
        .unwrap()
        .unwrap();
    let slot = slot.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.close_approvals(&id, slot.id, "closed", 1).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.file_ruling(ruling(&id, slot.id, 99)).await.unwrap(),
        Ruled::Lost
    );
    assert_eq!(
        store.request(&id).await.unwrap().unwrap().state,
        RequestState::PendingApproval,
        "nothing written"
    );

    // Two approvers' rulings on one request at once, the first's slot closed since its read:
    // the second decides it, the first loses (in one batch or in two).
    let two = filing(100, None);
    let id = two.request.id.clone();
    store.file(two).await.unwrap();
    let slot_of = |email: &str| {
        format!("SELECT id FROM approvals WHERE request_id = '{id}' AND approver_email = '{email}'")
    };
    let first = count(&db, &slot_of("owner1@example.com")).await;
    let second = count(&db, &slot_of("owner2@example.com")).await;
    let mut c = any(&db).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE approvals SET state = 'closed' WHERE id = {first}"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let (a, b) = tokio::join!(
        store.file_ruling(ruling(&id, first, 100)),
        store.file_ruling(ruling(&id, second, 101)),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (Ruled::Lost, Ruled::Written));
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM approvals WHERE id = {second} AND state = 'approved'")
        )
        .await,
        1,
        "the slot that decided it"
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM decisions WHERE request_id = '{id}' AND kind = 'approver'"
            )
        )
        .await,
        1
    );

    // Another writer appends to the chain between the filer's batches: a batch written as all
    // won on the head the filer kept (PostgreSQL, one round trip) is refused by the chain's key
    // and written the long way; the ruling still decides its request, the chain stays whole.
    let after = filing(101, None);
    let id = after.request.id.clone();
    store.file(after).await.unwrap();
    let (_, slot) = store
        .read_for_click(&id, "slack", "UO1")
        .await
        .unwrap()
        .unwrap();
    append_elsewhere(&store, 1_700_000_000_900).await;
    assert_eq!(
        store
            .file_ruling(ruling(&id, slot.unwrap().id, 102))
            .await
            .unwrap(),
        Ruled::Written
    );
    assert_eq!(
        store.request(&id).await.unwrap().unwrap().state,
        RequestState::Provisioning
    );
    assert!(matches!(
        grantry::audit::verify(&store).await.unwrap(),
        grantry::audit::Verdict::Whole { .. }
    ));
}

/// PostgreSQL: the statements of a shared click read and of a batch of rulings, planned on
/// empty tables and as a prepared statement keeps them (a generic plan), look every row up by
/// an index key: no table or index is read whole, so their plans stay right as the tables
/// grow. (A plan made while a table was small and never analysed is kept by a prepared
/// statement: such plans once read all of `approvals` per click, docs/benchmarks.md.)
#[tokio::test]
async fn click_read_and_ruling_plans_look_rows_up_by_key_on_empty_tables() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    if !db.is_postgres() {
        return; // SQLite plans each statement with its own index choices; nothing kept.
    }
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for n in [1, 5, 64] {
        let (settings, statements) = grantry::store::rulings::key_lookup_statements(n).unwrap();
        for (k, (sql, params, under_settings)) in statements.iter().enumerate() {
            let name = format!("plan_check_{n}_{k}");
            let mut tx = c.begin().await.unwrap();
            if *under_settings {
                sqlx::raw_sql(sqlx::AssertSqlSafe(settings.to_string()))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            sqlx::raw_sql("SET LOCAL plan_cache_mode = force_generic_plan")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {sql}")))
                .execute(&mut *tx)
                .await
                .unwrap();
            let nulls = vec!["NULL"; *params].join(", ");
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "EXPLAIN EXECUTE {name}({nulls})"
            )))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            tx.rollback().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DEALLOCATE {name}")))
                .execute(&mut c)
                .await
                .unwrap();
            let shown = plan.join("\n");
            for whole in ["Seq Scan", "Hash", "Merge Join"] {
                assert!(
                    !shown.contains(whole),
                    "{whole} in the plan of {sql}:\n{shown}"
                );
            }
            for (i, line) in plan.iter().enumerate() {
                if line.contains("Index Scan") || line.contains("Index Only Scan") {
                    assert!(
                        plan.get(i + 1).is_some_and(|l| l.contains("Index Cond")),
                        "an index read whole in the plan of {sql}:\n{shown}"
                    );
                }
            }
        }
    }
    store.close().await;
}

#[tokio::test]
async fn sqlites_intake_read_uses_no_temporary_btree_and_looks_every_row_up_by_key() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    if db.is_postgres() {
        return; // PostgreSQL reads with its own statement.
    }
    let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    for subjects in [1, 2, 64] {
        let sql = grantry::store::intake_facts::sqlite_statement(subjects);
        // The program (its opcodes, column 1), then the plan (its lines, column 3).
        let mut read = Vec::new();
        for (explain, column) in [("EXPLAIN", 1), ("EXPLAIN QUERY PLAN", 3)] {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("{explain} {sql}")))
                .bind("[\"a@example.com\",\"b@example.com\",\"c@example.com\"]")
                .bind("[\"o@example.com\",\"p@example.com\",\"q@example.com\"]")
                .bind(0_i64);
            for n in 0..subjects {
                q = q.bind(format!("s{n}@example.com"));
            }
            let rows = q.fetch_all(&mut c).await.unwrap();
            read.push(
                rows.iter()
                    .map(|r| sqlx::Row::get::<String, _>(r, column))
                    .collect::<Vec<_>>(),
            );
        }
        let (program, plan) = (&read[0], &read[1]);
        for op in ["OpenEphemeral", "SorterOpen", "OpenAutoindex"] {
            assert!(
                !program.iter().any(|o| o == op),
                "{op} for {subjects} subject(s)"
            );
        }
        let shown = plan.join("\n");
        for table in ["offboarded", "delegations", "grants"] {
            assert!(
                !shown.contains(&format!("SCAN {table}"))
                    && !shown.contains(&format!("SCAN {}", &table[..1])),
                "{table} read whole:\n{shown}"
            );
        }
        assert!(!shown.contains("TEMP B-TREE"), "{shown}");
        assert_eq!(
            shown.matches("USING INDEX grants_subject").count(),
            subjects,
            "{shown}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn a_subject_holding_more_than_200_grants_is_read_with_the_200_that_end_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = store(dir.path()).await;
    let f = filing(0, None);
    let request_id = f.request.id.as_str().to_string();
    store.file(f).await.unwrap();
    // 205 active grants of p0, inserted out of expiry order (g * 37 mod 205 visits every end once).
    let ends = |g: usize| 10_000 + ((g * 37) % 205) as i64;
    let mut tx = store.begin().await.unwrap();
    for g in 0..205usize {
        let grant = team_grant(&request_id, 0, g, "active", ends(g));
        tx.insert_grant(&grant).await.unwrap();
    }
    tx.commit().await.unwrap();
    let facts = store
        .intake_facts(&["p0@example.com"], "p0@example.com", &[], 1)
        .await
        .unwrap();
    let mut expected: Vec<usize> = (0..205).collect();
    expected.sort_by_key(|g| ends(*g));
    let expected: Vec<String> = expected[..200]
        .iter()
        .map(|g| format!("github/team-{g}"))
        .collect();
    assert_eq!(facts.held, expected);
    store.close().await;
}

/// The log lines written while it is alive, as text (this thread's, so this test's).
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_filing_held_up_by_a_lock_is_warned_of_and_written_once_the_lock_goes() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store(dir.path()).await;
    if !db.is_postgres() {
        return;
    }
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Captured(sink.clone()))
            .finish(),
    );
    // A session holds the audit chain's head, as one left open (or another replica stuck) would.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let filed = tokio::spawn({
        let store = store.clone();
        async move { store.file(filing(1, Some("held".into()))).await }
    });
    common::eventually(30, "a warning that the filer is slow", || async {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        text.contains("the filer has not written this yet")
            .then_some(())
    })
    .await;
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(text.contains("a new request"), "{text}");
    assert!(!filed.is_finished(), "it waits for the lock");

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let filed = tokio::time::timeout(std::time::Duration::from_secs(30), filed)
        .await
        .expect("written once the lock went")
        .unwrap();
    assert_eq!(filed.unwrap(), Filed::Created);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM requests").await, 1);
}
