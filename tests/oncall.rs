//! On-call as a policy context source. The PagerDuty client against a local server answering with
//! PagerDuty's documented `GET /oncalls` example (tests/data/pagerduty/), paged through `more`; a
//! 429 with `Retry-After` is transient; and end to end: the primary on-call's request for a listed
//! entitlement is auto-approved with no approval card (the grant cites `oncall-prod-access`), the
//! same person's request for an unlisted entitlement, a third-level on-call's and someone not on
//! call go to the owners; a snapshot PagerDuty stopped refreshing counts nobody as on call.

mod common;

use std::time::Duration;

use common::*;
use grantry::config::{Secret, SecretSource};
use grantry::oncall::pagerduty::{PagerDuty, ACCEPT};
use grantry::oncall::{OnCall, OnCallError};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PD_TOKEN: &str = "u+pd-read-only-key-never-logged";
const POLICY: &str = "PT20YPA";
const SCHEDULE: &str = "PI7DH85";

fn documented(file: &str) -> Value {
    let path = manifest_dir().join("tests/data/pagerduty").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The documented on-call entry, with `include[]=users`' full user object (the documented user,
/// re-identified) and the given level and shift around now.
fn entry(user_id: &str, email: &str, level: i64) -> Value {
    let mut e = documented("oncalls.json")["oncalls"][0].clone();
    let mut user = documented("user.json")["user"].clone();
    user["id"] = user_id.into();
    user["email"] = email.into();
    user["self"] = format!("https://api.pagerduty.com/users/{user_id}").into();
    e["user"] = user;
    e["escalation_level"] = level.into();
    let now = chrono::Utc::now();
    e["start"] = (now - chrono::Duration::hours(2)).to_rfc3339().into();
    e["end"] = (now + chrono::Duration::hours(6)).to_rfc3339().into();
    e
}

/// The documented response envelope around `oncalls`.
fn page(oncalls: Vec<Value>, offset: usize, more: bool) -> Value {
    let mut p = documented("oncalls.json");
    p["oncalls"] = Value::Array(oncalls);
    p["offset"] = offset.into();
    p["limit"] = 100.into();
    p["more"] = more.into();
    p
}

/// Two pages: Alice primary and the documented user at level 2, then Bob at level 3.
async fn pagerduty() -> MockServer {
    let server = MockServer::start().await;
    let common = || {
        Mock::given(method("GET"))
            .and(path("/oncalls"))
            .and(header("authorization", format!("Token token={PD_TOKEN}")))
            .and(header("accept", ACCEPT))
            .and(query_param("escalation_policy_ids[]", POLICY))
            .and(query_param("include[]", "users"))
            .and(query_param("time_zone", "UTC"))
            .and(query_param("limit", "100"))
    };
    common()
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![
                entry("PALICE1", "Alice@Example.com", 1),
                entry("PXPGF42", "125.greenholt.earline@graham.name", 2),
            ],
            0,
            true,
        )))
        .mount(&server)
        .await;
    common()
        .and(query_param("offset", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![entry("PBOB333", "bob@example.com", 3)],
            2,
            false,
        )))
        .mount(&server)
        .await;
    server
}

fn client(base: &str, schedules: Vec<String>) -> PagerDuty {
    PagerDuty::new(
        base,
        Secret::new(PD_TOKEN),
        vec![POLICY.into()],
        schedules,
        Duration::from_secs(3),
    )
}

#[tokio::test]
async fn pagerduty_client_sends_the_documented_request_and_pages_through_more() {
    let server = pagerduty().await;
    let pd = client(&server.uri(), vec![]);
    let shifts = pd.on_call_now().await.unwrap();
    let got: Vec<(&str, i64)> = shifts.iter().map(|s| (s.email.as_str(), s.level)).collect();
    assert_eq!(
        got,
        [
            ("Alice@Example.com", 1),
            ("125.greenholt.earline@graham.name", 2),
            ("bob@example.com", 3)
        ]
    );
    assert_eq!(shifts[0].escalation_policy.as_deref(), Some(POLICY));
    assert_eq!(shifts[0].schedule.as_deref(), Some(SCHEDULE));
    let now = chrono::Utc::now().timestamp_millis();
    assert!(shifts.iter().all(|s| s.covers(now)));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "two pages, then more = false");
    assert!(requests[1].url.query().unwrap().contains("offset=2"));

    // Schedules are passed as schedule_ids[] beside the policies.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("schedule_ids[]", SCHEDULE))
        .and(query_param("schedule_ids[]", "PSECOND"))
        .and(query_param("escalation_policy_ids[]", POLICY))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented("oncalls.json")))
        .expect(1)
        .mount(&server)
        .await;
    let pd = client(&server.uri(), vec![SCHEDULE.into(), "PSECOND".into()]);
    // The documented example has no include[]=users: a user reference without an email is skipped.
    assert!(pd.on_call_now().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_429_is_transient_with_retry_after_and_a_401_is_permanent_without_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "Rate Limit Exceeded", "code": 2020}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Unauthorized", "code": 2006, "errors": ["Invalid token"]}}),
        ))
        .mount(&server)
        .await;
    let pd = client(&server.uri(), vec![]);
    match pd.on_call_now().await {
        Err(OnCallError::Transient {
            message,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(
                message.contains("429") && message.contains("Rate Limit Exceeded"),
                "{message}"
            );
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    match pd.on_call_now().await {
        Err(OnCallError::Permanent { message }) => {
            assert!(
                message.contains("401") && message.contains("token"),
                "{message}"
            );
            assert!(!message.contains(PD_TOKEN), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    // Nothing listening: transient, and the message names no token either.
    let pd = client("http://127.0.0.1:9", vec![]);
    let e = pd.on_call_now().await.unwrap_err();
    assert!(matches!(e, OnCallError::Transient { .. }), "{e:?}");
    assert!(!e.to_string().contains(PD_TOKEN));
}

/// `[oncall]` pointed at the local PagerDuty, refreshed every second; policies: the baseline and
/// the shipped oncall.cedar only (so nothing else auto-approves).
fn with_oncall(base: String) -> impl FnOnce(&mut grantry::config::Config) {
    move |c| {
        let dir = c.base_dir.join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["baseline.cedar", "oncall.cedar"] {
            std::fs::copy(
                manifest_dir().join("examples/policies").join(f),
                dir.join(f),
            )
            .unwrap();
        }
        let token = c.base_dir.join("pagerduty_token");
        std::fs::write(&token, PD_TOKEN).unwrap();
        c.oncall.provider = Some("pagerduty".into());
        c.oncall.base_url = base;
        c.oncall.token = SecretSource {
            env: None,
            file: Some(token),
        };
        c.oncall.escalation_policy_ids = vec![POLICY.into()];
        c.oncall.cache_secs = 1;
    }
}

async fn on_call_level(t: &TestApp, email: &str, level: i64) {
    eventually(10, &format!("{email} on call at level {level}"), || async {
        (t.app.on_call.level_of(email, t.app.now_ms()) == level).then_some(())
    })
    .await;
}

fn cards(t: &TestApp) -> usize {
    t.slack
        .calls_of("chat.postMessage")
        .iter()
        .filter(|c| c.body["blocks"].is_array())
        .count()
}

#[tokio::test]
async fn on_call_auto_approval_is_limited_to_the_listed_entitlements() {
    let pd = pagerduty().await;
    let t = spawn_app_with(with_oncall(pd.uri())).await;
    t.scim.create_user("alice@example.com").await;
    let admins = t.scim.create_group("platform-admins").await;
    on_call_level(&t, "alice@example.com", 1).await;
    on_call_level(&t, "bob@example.com", 3).await;

    // The primary on-call asks for a listed entitlement: granted with no human.
    let (_, b) = t
        .command(
            "U111",
            "github platform-admins for 4h because incident INC-42",
            "oc1",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(
        text.contains("approved automatically")
            && text.contains("primary or secondary on-call (policy oncall-prod-access)"),
        "{text}"
    );
    let id = text.split_whitespace().nth(2).unwrap().to_string();
    eventually(15, "membership", || async {
        (!t.scim.members(&admins).await.is_empty()).then_some(())
    })
    .await;
    let g = eventually(5, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(g.approved_by.as_deref(), Some("policy:oncall-prod-access"));
    assert_eq!(
        cards(&t),
        0,
        "no approval card for an auto-approved request"
    );
    let audit = t.app.store.audit_for_request(&id).await.unwrap();
    let auto = audit
        .iter()
        .find(|e| e.action == "request.auto_approved")
        .unwrap();
    let detail: Value = serde_json::from_str(&auto.detail).unwrap();
    assert_eq!(detail["on_call_level"], 1);
    assert_eq!(detail["policy_ids"], json!(["oncall-prod-access"]));

    // The same person, an entitlement the policy does not name: the owners decide.
    let (_, b) = t
        .command(
            "U111",
            "github readers for 1d because reading the deploy code",
            "oc2",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("for approval"), "{text}");
    eventually(10, "cards to the owners", || async {
        (cards(&t) >= 2).then_some(())
    })
    .await;

    // Third escalation level: not primary or secondary.
    let (_, b) = t
        .command(
            "U222",
            "github platform-admins for 4h because incident INC-42",
            "oc3",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("sent to Carol Owner for approval"), "{text}");

    // Not on call at all.
    let (_, b) = t
        .command(
            "U666",
            "github platform-admins for 4h because incident INC-42",
            "oc4",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("for approval"), "{text}");
    let id = text.split_whitespace().nth(1).unwrap().to_string();
    let audit = t.app.store.audit_for_request(&id).await.unwrap();
    let routed = audit.iter().find(|e| e.action == "request.routed").unwrap();
    let detail: Value = serde_json::from_str(&routed.detail).unwrap();
    assert_eq!(detail["on_call_level"], 0);
}

#[tokio::test]
async fn when_pagerduty_stops_answering_the_snapshot_goes_stale_and_nobody_is_on_call() {
    let pd = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![entry("PALICE1", "alice@example.com", 1)],
            0,
            false,
        )))
        .up_to_n_times(1)
        .mount(&pd)
        .await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&pd)
        .await;
    let t = spawn_app_with(with_oncall(pd.uri())).await;
    on_call_level(&t, "alice@example.com", 1).await;
    // Refreshes now fail; three periods (3 s) later the last answer no longer counts.
    eventually(10, "a failed refresh counted", || async {
        let m = t.metrics().await;
        (m.contains(r#"grantry_oncall_refreshes_total{provider="pagerduty",outcome="transient"}"#)
            && m.contains("grantry_oncall_snapshot_age_seconds "))
        .then_some(())
    })
    .await;
    t.clock.advance_ms(10_000);
    assert_eq!(
        t.app.on_call.level_of("alice@example.com", t.app.now_ms()),
        0
    );
    let (_, b) = t
        .command(
            "U111",
            "github platform-admins for 4h because incident INC-42",
            "oc5",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("for approval"), "{text}");
}
