//! On PostgreSQL no index holds a request's state: the reads by state go through partial indexes
//! over the requests under way, so a move between two states under way changes no index (a HOT
//! update: the new version beside the old, no index entry written). SQLite, which rewrites a row
//! in place, keeps its indexes on the state and none by subject (migrations/sqlite/0013 says why).

mod common;

use grantry::domain::RequestState;
use grantry::store::{Store, StoreOptions};
use sqlx::{AnyConnection, Connection, Row};

/// The indexes PostgreSQL's reads by state may use: the partial ones.
const PARTIAL: [&str; 3] = [
    "requests_requester_under_way",
    "requests_subject_under_way",
    "requests_extending",
];

async fn store(dir: &std::path::Path) -> (Store, common::TestDb, AnyConnection) {
    let db = common::TestDb::create(dir).await;
    let store = Store::open(&StoreOptions {
        url: db.url.clone(),
        synchronous: "full".into(),
        read_connections: 2,
    })
    .await
    .unwrap();
    sqlx::any::install_default_drivers();
    let conn = AnyConnection::connect(&db.url).await.unwrap();
    (store, db, conn)
}

async fn insert_request(c: &mut AnyConnection, id: &str, state: &str) {
    sqlx::query(
        "INSERT INTO requests (id, platform, requester_chat_id, requester_email, subject_email, app, \
         entitlement, reason, state, created_at, updated_at) \
         VALUES ($1, 'slack', 'U1', 'alice@example.com', 'alice@example.com', 'github', 'admins', \
         'because', $2, 1, 1)",
    )
    .bind(id)
    .bind(state)
    .execute(c)
    .await
    .unwrap();
}

#[tokio::test]
async fn under_way_is_true_in_exactly_the_states_the_domain_names() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db, mut c) = store(dir.path()).await;
    for s in RequestState::ALL {
        insert_request(&mut c, &format!("R-{}", s.as_str()), s.as_str()).await;
    }
    let rows =
        sqlx::query("SELECT state, CASE WHEN under_way THEN 1 ELSE 0 END AS w FROM requests")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(rows.len(), RequestState::ALL.len());
    for row in rows {
        let state: String = row.get("state");
        let stored = row.get::<i32, _>("w") == 1;
        let s = RequestState::parse(&state).unwrap();
        assert_eq!(stored, s.is_under_way(), "{state}");
    }
    // And it follows the state: a request that settles leaves it.
    sqlx::query("UPDATE requests SET state = 'active' WHERE id = 'R-provisioning'")
        .execute(&mut c)
        .await
        .unwrap();
    let w: i32 = sqlx::query_scalar(
        "SELECT CASE WHEN under_way THEN 1 ELSE 0 END FROM requests WHERE id = 'R-provisioning'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(w, 0);
    store.close().await;
}

#[tokio::test]
async fn no_index_of_requests_holds_the_state_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, mut c) = store(dir.path()).await;
    if !db.is_postgres() {
        return; // SQLite keeps requests_state: a move there is one index entry moved.
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'requests'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for want in PARTIAL {
        assert!(
            indexes.iter().any(|(n, _)| n == want),
            "{want}: {indexes:?}"
        );
    }
    for (name, def) in &indexes {
        let words: Vec<&str> = def
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .collect();
        assert!(
            !words.contains(&"state") && !words.contains(&"updated_at"),
            "{name} holds a column every state move changes: {def}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn reads_by_state_go_through_the_partial_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, mut c) = store(dir.path()).await;
    let reads = grantry::store::requests::reads_by_state();
    assert_eq!(reads.len(), 7);
    for (k, (sql, params)) in reads.iter().enumerate() {
        if !db.is_postgres() && sql.contains("subject_email = $1") {
            continue; // SQLite reads a person's requests as subject from the table.
        }
        let plan: Vec<String> = if db.is_postgres() {
            // A generic plan, with sequential scans priced out: one shows only where no index
            // can serve the statement at all.
            let mut tx = c.begin().await.unwrap();
            sqlx::raw_sql(
                "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PREPARE by_state_{k} AS {sql}"
            )))
            .execute(&mut *tx)
            .await
            .unwrap();
            let nulls = vec!["NULL"; *params].join(", ");
            let plan = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "EXPLAIN EXECUTE by_state_{k}({nulls})"
            )))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            tx.rollback().await.unwrap();
            plan
        } else {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..*params {
                q = q.bind(None::<String>);
            }
            q.fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(3))
                .collect()
        };
        let shown = plan.join("\n");
        assert!(
            !shown.contains("Seq Scan on requests")
                && !plan
                    .iter()
                    .any(|l| l.trim_start().starts_with("SCAN requests")),
            "requests read whole for {sql}:\n{shown}"
        );
        let used: Vec<&str> = shown
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .filter(|w| w.starts_with("requests_"))
            .collect();
        assert!(!used.is_empty(), "no index of requests for {sql}:\n{shown}");
        if !db.is_postgres() {
            continue; // Any index will do: none is kept out of SQLite's moves.
        }
        for index in used {
            assert!(
                PARTIAL.contains(&index),
                "{index}, not a partial index, for {sql}:\n{shown}"
            );
        }
    }
    store.close().await;
}

#[tokio::test]
async fn a_move_between_states_under_way_writes_no_index_entry_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, mut c) = store(dir.path()).await;
    if !db.is_postgres() {
        return; // SQLite rewrites a row in place: nothing to count.
    }
    insert_request(&mut c, "R-1", "pending_approval").await;
    let mut tx = c.begin().await.unwrap();
    let mut hot_after = Vec::new();
    for to in ["approved", "provisioning", "active"] {
        sqlx::query("UPDATE requests SET state = $1, updated_at = updated_at + 1 WHERE id = 'R-1'")
            .bind(to)
            .execute(&mut *tx)
            .await
            .unwrap();
        let hot: i64 =
            sqlx::query_scalar("SELECT pg_stat_get_xact_tuples_hot_updated('requests'::regclass)")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        hot_after.push(hot);
    }
    tx.rollback().await.unwrap();
    // Two HOT moves under way; settling (provisioning → active) leaves the partial indexes, so it
    // is a new version with its entries in the others.
    assert_eq!(hot_after, vec![1, 2, 2]);
    store.close().await;
}
