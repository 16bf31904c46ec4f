//! Socket Mode: with `slack.mode = "socket"` grantry connects out to Slack (here, the stand-in)
//! and the same handlers serve envelopes: a slash command, then an approve click, each acked on
//! the socket. The HTTP Slack endpoints are closed when no signing secret is configured.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn socket_mode_serves_commands_and_clicks_through_the_same_handlers() {
    let t = spawn_app_with(|c| {
        let token = c.base_dir.join("app_token");
        std::fs::write(&token, "xapp-test-token").unwrap();
        c.slack.mode = "socket".into();
        c.slack.app_token.file = Some(token);
        // Socket Mode needs no signing secret: none is configured.
        c.slack.signing_secret.file = None;
        c.slack.signing_secret.env = Some("GRANTRY_TEST_UNSET_SIGNING_SECRET".into());
    })
    .await;
    eventually(10, "socket connected", || async {
        t.slack.socket_connected().then_some(())
    })
    .await;
    let open = t.slack.calls_of("apps.connections.open");
    assert_eq!(
        open[0].authorization.as_deref(),
        Some("Bearer xapp-test-token")
    );

    // A slash command, as Socket Mode delivers it (the form's fields as JSON).
    let raw = std::fs::read_to_string(oracle("slack/slash_command.form")).unwrap();
    let mut fields: serde_json::Map<String, Value> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw.trim())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
    fields.insert("command".into(), "/access".into());
    fields.insert("user_id".into(), "U111".into());
    fields.insert(
        "text".into(),
        "github platform-admins for 4h because incident INC-42".into(),
    );
    t.slack.socket_send(json!({"envelope_id": "env-1", "type": "slash_commands", "payload": fields, "accepts_response_payload": true}));
    let ack = eventually(10, "ack of the command", || async {
        t.slack
            .socket_acks()
            .into_iter()
            .find(|a| a["envelope_id"] == "env-1")
    })
    .await;
    let text = ack["payload"]["text"].as_str().unwrap();
    assert!(text.starts_with("Request R-"), "{ack}");
    let id = text.split_whitespace().nth(1).unwrap().to_string();

    // Bob's approve click, as an interactive envelope (Slack's block_actions shape).
    let mut click: Value =
        serde_json::from_str(&std::fs::read_to_string(oracle("slack/block_actions.json")).unwrap())
            .unwrap();
    click["user"]["id"] = "U222".into();
    click["actions"][0]["action_id"] = "grantry.approve".into();
    click["actions"][0]["value"] = id.clone().into();
    t.slack
        .socket_send(json!({"envelope_id": "env-2", "type": "interactive", "payload": click}));
    eventually(10, "ack of the click", || async {
        t.slack
            .socket_acks()
            .into_iter()
            .find(|a| a["envelope_id"] == "env-2")
    })
    .await;
    eventually(10, "approved", || async {
        (t.state_of(&id).await != "pending_approval").then_some(())
    })
    .await;

    // With no signing secret, the HTTP endpoints refuse everything.
    let body = slash_command_body("U111", "help", "h");
    let r = post_signed(
        t.http(),
        &format!("{}/slack/commands", t.base_url),
        &body,
        t.now_secs(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = t
        .http()
        .post(format!("{}/slack/commands", t.base_url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
