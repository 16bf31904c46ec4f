//! Opsgenie as the on-call source: the documented Who-is-On-Call request (path, query, GenieKey
//! header) per schedule, levels from the schedules' order, 429 with Retry-After transient, 401
//! permanent with no key in the message.

use std::time::Duration;

use grantry::config::Secret;
use grantry::oncall::opsgenie::Opsgenie;
use grantry::oncall::{OnCall, OnCallError};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The shape Opsgenie documents for `flat=true`: `data._parent` names the schedule,
/// `data.onCallRecipients` the people on call now.
fn on_calls(schedule: &str, people: &[&str]) -> serde_json::Value {
    json!({
        "data": {
            "_parent": {"id": schedule, "name": format!("{schedule} schedule"), "enabled": true},
            "onCallRecipients": people,
        },
        "took": 0.104,
        "requestId": "5a1b2c3d-0000-4000-8000-000000000001"
    })
}

#[tokio::test]
async fn opsgenie_schedules_give_levels_in_order() {
    let server = MockServer::start().await;
    for (id, people) in [
        ("primary-id", vec!["alice@example.com"]),
        ("secondary-id", vec!["bob@example.com", "carol@example.com"]),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/schedules/{id}/on-calls")))
            .and(query_param("scheduleIdentifierType", "id"))
            .and(query_param("flat", "true"))
            .and(header("authorization", "GenieKey og-test-key"))
            .respond_with(ResponseTemplate::new(200).set_body_json(on_calls(id, &people)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let og = Opsgenie::new(
        &server.uri(),
        Secret::new("og-test-key"),
        vec!["primary-id".into(), "secondary-id".into()],
        Duration::from_secs(5),
    );
    let shifts = og.on_call_now().await.unwrap();
    let got: Vec<(String, i64)> = shifts.iter().map(|s| (s.email.clone(), s.level)).collect();
    assert_eq!(
        got,
        [
            ("alice@example.com".to_string(), 1),
            ("bob@example.com".to_string(), 2),
            ("carol@example.com".to_string(), 2)
        ]
    );
    assert!(shifts.iter().all(|s| s.covers(0)));
}

#[tokio::test]
async fn opsgenie_errors_are_classed_and_never_show_the_key() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/schedules/busy/on-calls"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    Mock::given(path("/v2/schedules/locked/on-calls"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"message": "Could not authenticate", "took": 0.0, "requestId": "x"}),
        ))
        .mount(&server)
        .await;
    let og = |id: &str| {
        Opsgenie::new(
            &server.uri(),
            Secret::new("og-secret-key"),
            vec![id.into()],
            Duration::from_secs(5),
        )
    };
    match og("busy").on_call_now().await {
        Err(OnCallError::Transient { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("expected transient, got {other:?}"),
    }
    match og("locked").on_call_now().await {
        Err(OnCallError::Permanent { message }) => {
            assert!(
                message.contains("401") && message.contains("Could not authenticate"),
                "{message}"
            );
            assert!(!message.contains("og-secret-key"));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}
