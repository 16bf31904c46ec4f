//! The generic webhook connector against a local receiver that checks every signature the way
//! docs/connectors.md tells receivers to, and answers as a team's endpoint would.

mod common;

use std::time::Duration;

use common::webhook::Receiver;
use grantry::connectors::{webhook::WebhookConnector, Change, Connector, ConnectorError, Subject};

const SECRET: &str = "webhook-shared-secret-never-logged";

fn connector(url: &str, secret: &str) -> WebhookConnector {
    std::env::set_var("GRANTRY_TEST_WEBHOOK_SECRET", secret);
    let t: toml::Table = toml::from_str(&format!(
        "url = \"{url}\"\nsecret_env = \"GRANTRY_TEST_WEBHOOK_SECRET\"\ntimeout_secs = 5"
    ))
    .unwrap();
    WebhookConnector::from_settings("crm", &t).unwrap()
}

#[tokio::test]
async fn webhook_events_are_signed_and_the_answer_confirms_or_fails_the_change() {
    let receiver = Receiver::start(SECRET).await;
    let (state, url) = (receiver.state.clone(), receiver.url.clone());
    let c = connector(&url, SECRET);
    let ada = c
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(ada.id, "ada@example.com");

    assert_eq!(
        c.grant(&ada, "sales-manager").await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        c.grant(&ada, "sales-manager").await.unwrap(),
        Change::AlreadyInPlace
    );
    let members = c.list_members("sales-manager").await.unwrap();
    assert_eq!(
        members.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec!["ada@example.com"]
    );
    assert_eq!(
        c.revoke(&ada, "sales-manager").await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        c.revoke(&ada, "sales-manager").await.unwrap(),
        Change::AlreadyInPlace
    );

    let first = state.lock().unwrap().events[0].clone();
    assert_eq!(first["type"], "grant");
    assert_eq!(first["connector"], "crm");
    assert_eq!(first["account"]["id"], "ada@example.com");
    assert_eq!(first["target"], "sales-manager");

    // The receiver refuses the change: permanent, with its message.
    match c.grant(&ada, "unknown-role").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("no role named unknown-role"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    // 429 with Retry-After, 503 then success.
    state.lock().unwrap().faults.push((429, Some("4")));
    assert!(matches!(
        c.grant(&ada, "sales-manager").await,
        Err(ConnectorError::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(4)
    ));
    state.lock().unwrap().faults.push((503, None));
    assert!(matches!(
        c.grant(&ada, "sales-manager").await,
        Err(ConnectorError::Transient { .. })
    ));
    assert_eq!(
        c.grant(&ada, "sales-manager").await.unwrap(),
        Change::Applied
    );
    // A receiver that does not know the path: permanent.
    state.lock().unwrap().faults.push((404, None));
    assert!(matches!(
        c.grant(&ada, "x").await,
        Err(ConnectorError::Permanent { .. })
    ));

    // A wrong secret: the receiver answers 401, a permanent error that names what to check.
    let wrong = connector(&url, "not-the-secret");
    match wrong.grant(&ada, "sales-manager").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("same secret"), "{message}");
            assert!(!message.contains("not-the-secret"));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}
