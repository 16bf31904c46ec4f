//! The employee's side in Slack: the request modal (open, menus that follow the chosen app,
//! inline errors, a valid submission), every `/access` command, App Home, retried deliveries,
//! and hostile bodies that must change nothing. Payload shapes are Slack's (../shared/oracles/slack).

mod common;

use common::*;
use serde_json::{json, Value};

const STORY: &str = "github platform-admins for 4h because incident INC-42";

fn oracle_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(oracle(&format!("slack/{name}"))).unwrap())
        .unwrap()
}

/// `view.state.values` for our modal, as Slack sends them (block id = action id).
fn state(
    app: Option<&str>,
    ent: Option<&str>,
    dur: Option<&str>,
    reason: &str,
    subject: Option<&str>,
) -> Value {
    let select = |v: Option<&str>| match v {
        Some(v) => {
            json!({"type": "external_select", "selected_option": {"text": {"type": "plain_text", "text": v}, "value": v}})
        }
        None => json!({"type": "external_select", "selected_option": null}),
    };
    let mut values = json!({
        "app": {"app": select(app)},
        "entitlement": {"entitlement": select(ent)},
        "duration": {"duration": select(dur)},
        "reason": {"reason": {"type": "plain_text_input", "value": reason}},
        "ticket": {"ticket": {"type": "plain_text_input", "value": null}},
    });
    if let Some(s) = subject {
        values["subject"] = json!({"subject": {"type": "static_select",
            "selected_option": {"text": {"type": "plain_text", "text": s}, "value": s}}});
    }
    values
}

/// Slack's view_submission oracle, re-targeted at our modal.
fn submission(user: &str, view_id: &str, values: Value) -> String {
    let mut v = oracle_json("view_submission.json");
    v["user"]["id"] = user.into();
    v["view"]["id"] = view_id.into();
    v["view"]["callback_id"] = "grantry.request".into();
    v["view"]["state"]["values"] = values;
    serde_urlencoded::to_string([("payload", v.to_string())]).unwrap()
}

/// A block_suggestion, shaped like the view_submission oracle (same envelope, the typed value).
fn suggestion(user: &str, action: &str, query: &str, values: Value) -> String {
    let mut v = oracle_json("view_submission.json");
    v["type"] = "block_suggestion".into();
    v["user"]["id"] = user.into();
    v["action_id"] = action.into();
    v["block_id"] = action.into();
    v["value"] = query.into();
    v["view"]["callback_id"] = "grantry.request".into();
    v["view"]["state"]["values"] = values;
    serde_urlencoded::to_string([("payload", v.to_string())]).unwrap()
}

async fn post(t: &TestApp, body: &str) -> (u16, String) {
    let r = post_signed(
        t.http(),
        &format!("{}/slack/interactions", t.base_url),
        body,
        t.now_secs(),
        &[],
    )
    .await;
    (r.status().as_u16(), r.text().await.unwrap())
}

fn options(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap();
    v["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap().to_string())
        .collect()
}

fn text(b: &Value) -> &str {
    b["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {b}"))
}

#[tokio::test]
async fn slash_access_alone_opens_the_modal_with_the_trigger_id() {
    let t = spawn_app().await;
    let (status, body) = t.command("U111", "", "trig-modal").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        Value::String(String::new()),
        "an empty ack: the modal is the answer"
    );
    let call = eventually(5, "views.open", || async {
        t.slack.calls_of("views.open").into_iter().next()
    })
    .await;
    assert_eq!(call.body["trigger_id"], "trig-modal");
    assert_eq!(call.body["view"]["callback_id"], "grantry.request");
    let blocks = call.body["view"]["blocks"].to_string();
    for id in [
        "\"app\"",
        "\"entitlement\"",
        "\"duration\"",
        "\"reason\"",
        "\"ticket\"",
    ] {
        assert!(blocks.contains(id), "{id} missing: {blocks}");
    }
    assert!(
        !blocks.contains("Request for"),
        "Alice has no reports: no subject menu"
    );
    // Bob manages Alice: he may also ask for her.
    t.command("U222", "", "trig-bob").await;
    let bob = eventually(5, "second views.open", || async {
        t.slack
            .calls_of("views.open")
            .into_iter()
            .find(|c| c.body["trigger_id"] == "trig-bob")
    })
    .await;
    let blocks = bob.body["view"]["blocks"].to_string();
    assert!(
        blocks.contains("Request for") && blocks.contains("alice@example.com"),
        "{blocks}"
    );
    // Someone the directory does not know is told so at once, and no modal opens.
    let (_, b) = t.command("U999", "", "trig-stranger").await;
    assert!(text(&b).contains("not in grantry's directory"));
}

#[tokio::test]
async fn menus_follow_the_chosen_app_and_entitlement() {
    let t = spawn_app().await;
    let (s, b) = post(
        &t,
        &suggestion("U111", "app", "hub", state(None, None, None, "", None)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(options(&b), ["github"]);
    let (_, b) = post(
        &t,
        &suggestion("U111", "entitlement", "", state(None, None, None, "", None)),
    )
    .await;
    assert!(
        options(&b).is_empty(),
        "no entitlements before an app is chosen"
    );
    let (_, b) = post(
        &t,
        &suggestion(
            "U111",
            "entitlement",
            "",
            state(Some("github"), None, None, "", None),
        ),
    )
    .await;
    assert_eq!(options(&b), ["platform-admins", "readers"]);
    let (_, b) = post(
        &t,
        &suggestion(
            "U111",
            "entitlement",
            "read",
            state(Some("github"), None, None, "", None),
        ),
    )
    .await;
    assert_eq!(options(&b), ["readers"]);
    let admins = state(Some("github"), Some("platform-admins"), None, "", None);
    let (_, b) = post(&t, &suggestion("U111", "duration", "", admins)).await;
    assert_eq!(options(&b), ["30m", "1h", "2h", "4h", "8h"]);
    let readers = state(Some("github"), Some("readers"), None, "", None);
    let (_, b) = post(&t, &suggestion("U111", "duration", "", readers)).await;
    assert_eq!(options(&b).last().map(String::as_str), Some("permanent"));
}

#[tokio::test]
async fn a_bad_submission_is_answered_inline_and_stores_nothing() {
    let t = spawn_app().await;
    let before = t.fingerprint().await;
    let bad = state(
        Some("github"),
        Some("platform-admins"),
        Some("2w"),
        "short",
        None,
    );
    let (s, b) = post(&t, &submission("U111", "V1", bad)).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["response_action"], "errors");
    common::assert_inline_error(&v, "duration", "durations offered");
    common::assert_inline_error(&v, "reason", "at least 8 characters");
    let nul = state(
        Some("github"),
        Some("platform-admins"),
        Some("4h"),
        "a long reason\u{0} with a NUL",
        None,
    );
    let (_, b) = post(&t, &submission("U111", "V0", nul)).await;
    let v: Value = serde_json::from_str(&b).unwrap();
    common::assert_inline_error(&v, "reason", "control character (U+0000)");
    // A ticket with a line break in it: an inline error on the ticket's field.
    let mut bad_ticket = state(
        Some("github"),
        Some("platform-admins"),
        Some("4h"),
        "a fine long reason",
        None,
    );
    bad_ticket["ticket"]["ticket"]["value"] = json!("INC-42\nX-Injected: 1");
    let (_, b) = post(&t, &submission("U111", "V0", bad_ticket)).await;
    let v: Value = serde_json::from_str(&b).unwrap();
    common::assert_inline_error(&v, "ticket", "control character (U+000A)");
    let unknown = state(Some("nope"), None, Some("4h"), "a fine long reason", None);
    let (_, b) = post(&t, &submission("U111", "V2", unknown)).await;
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["errors"]["app"], "Choose an app from the list.");
    // Asking for someone who is not your report.
    let not_mine = state(
        Some("github"),
        Some("readers"),
        Some("1d"),
        "a fine long reason",
        Some("carol@example.com"),
    );
    let (_, b) = post(&t, &submission("U111", "V3", not_mine)).await;
    let v: Value = serde_json::from_str(&b).unwrap();
    common::assert_inline_error(&v, "subject", "not your report");
    assert_eq!(t.fingerprint().await, before);
}

#[tokio::test]
async fn a_valid_submission_closes_the_modal_files_once_and_dms_the_requester() {
    let t = spawn_app().await;
    let values = state(
        Some("github"),
        Some("readers"),
        Some("1d"),
        "onboarding Alice to the repo",
        Some("alice@example.com"),
    );
    let body = submission("U222", "V9", values);
    let (s, b) = post(&t, &body).await;
    assert_eq!((s, b.as_str()), (200, ""), "an empty 200 closes the modal");
    // Slack retries the same submission: still one request.
    let (s, _) = post(&t, &body).await;
    assert_eq!(s, 200);
    let reqs = t.app.store.recent_requests(10).await.unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.requester_email.as_str(), r.subject_email.as_str()),
        ("bob@example.com", "alice@example.com")
    );
    assert_eq!(r.duration.unwrap().to_string(), "1d");
    let dm = eventually(5, "DM to Bob", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "U222")
    })
    .await;
    let dm_text = dm.body["text"].as_str().unwrap();
    assert!(
        dm_text.contains(r.id.as_str()) && dm_text.contains("Carol Owner"),
        "{dm_text}"
    );
    // Neither the requester (Bob) nor the subject (Alice) gets a card.
    let cards = eventually(5, "card to Carol", || async {
        let c: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["blocks"].is_array())
            .collect();
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert!(cards.iter().all(|c| c.body["channel"] == "U333"));
}

#[tokio::test]
async fn list_cancel_and_extend() {
    let t = spawn_app().await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;

    let (_, b) = t.command("U111", "list", "l0").await;
    assert!(text(&b).contains("no open requests"), "{b}");

    // Cancel: only the requester, only while pending; every card then says so.
    let id = t.file_request(STORY).await;
    eventually(5, "cards", || async {
        (t.slack.calls_of("chat.postMessage").len() >= 2).then_some(())
    })
    .await;
    let (_, b) = t.command("U111", "list", "l1").await;
    assert!(text(&b).contains(&id), "{b}");
    let (_, b) = t.command("U666", &format!("cancel {id}"), "c0").await;
    assert!(text(&b).contains("Only the person who asked"), "{b}");
    let (_, b) = t
        .command("U111", &format!("cancel {}", id.to_lowercase()), "c1")
        .await;
    assert!(text(&b).starts_with(&format!("Cancelled {id}")), "{b}");
    assert_eq!(t.state_of(&id).await, "cancelled");
    let (_, b) = t.command("U111", &format!("cancel {id}"), "c2").await;
    assert!(text(&b).contains("nothing to cancel"), "{b}");
    let updates = eventually(5, "cards closed", || async {
        let u = t.slack.calls_of("chat.update");
        (u.len() >= 2).then_some(u)
    })
    .await;
    for u in &updates {
        let s = u.body.to_string();
        assert!(
            s.contains("Cancelled by the requester") && !s.contains("\"button\""),
            "{s}"
        );
    }
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    assert_eq!(
        t.state_of(&id).await,
        "cancelled",
        "a cancelled request cannot be approved"
    );

    // Extend: more time on a grant held, approved like a request, within the maximum.
    let id = t.file_request(STORY).await;
    t.click("U222", "grantry.approve", &id).await;
    let grant = eventually(15, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    let (_, b) = t.command("U111", "list", "l2").await;
    assert!(
        text(&b).contains(&grant.id) && text(&b).contains("left"),
        "{b}"
    );
    let (_, b) = t
        .command("U111", &format!("extend {} 8h", grant.id), "e0")
        .await;
    assert!(text(&b).contains("at most"), "{b}");
    let (_, b) = t
        .command("U111", &format!("extend {} 2h", grant.id), "e1")
        .await;
    assert!(text(&b).starts_with("Request R-"), "{b}");
    let ext = text(&b).split_whitespace().nth(1).unwrap().to_string();
    t.click("U333", "grantry.approve", &ext).await;
    eventually(10, "extension active", || async {
        (t.state_of(&ext).await == "active").then_some(())
    })
    .await;
    let after = t.app.store.grant_for_request(&id).await.unwrap().unwrap();
    assert_eq!(
        after.expires_at.unwrap() - grant.expires_at.unwrap(),
        2 * 3600 * 1000
    );
    assert_eq!(
        t.app.store.grants(None, 10).await.unwrap().len(),
        1,
        "an extension makes no second grant"
    );
    // When the grant ends, the extension ends with it.
    t.clock.advance_ms(6 * 3600 * 1000 + 60_000);
    eventually(15, "both expired", || async {
        (t.state_of(&id).await == "expired" && t.state_of(&ext).await == "expired").then_some(())
    })
    .await;
}

#[tokio::test]
async fn app_home_shows_requests_grants_and_the_catalog() {
    let t = spawn_app().await;
    let id = t.file_request(STORY).await;
    let event = json!({
        "token": "x", "team_id": "T111", "api_app_id": "A111", "type": "event_callback",
        "event_id": "Ev1", "event_time": 1,
        "event": {"type": "app_home_opened", "user": "U111", "channel": "D111", "tab": "home"}
    })
    .to_string();
    let ts = t.now_secs();
    let sig =
        grantry::chat::slack::signature::sign(SIGNING_SECRET.as_bytes(), ts, event.as_bytes());
    let r = t
        .http()
        .post(format!("{}/slack/events", t.base_url))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let call = eventually(5, "views.publish", || async {
        t.slack.calls_of("views.publish").into_iter().next()
    })
    .await;
    assert_eq!(call.body["user_id"], "U111");
    let view = call.body["view"].to_string();
    assert!(
        view.contains(&id)
            && view.contains("platform-admins")
            && view.contains("grantry.open_modal"),
        "{view}"
    );
}

#[tokio::test]
async fn unknown_actions_and_hostile_bodies_change_nothing() {
    let t = spawn_app().await;
    t.file_request(STORY).await;
    let before = t.fingerprint().await;
    // Slack's own block_actions oracle, action id `a`: not ours.
    let raw = std::fs::read_to_string(oracle("slack/block_actions.form")).unwrap();
    let (s, b) = post(&t, raw.trim()).await;
    assert_eq!((s, b.as_str()), (200, ""));
    // A JSON body on the command endpoint, and bytes that are not a form.
    let url = format!("{}/slack/commands", t.base_url);
    let r = post_signed(
        t.http(),
        &url,
        "{\"command\":\"/access\"}",
        t.now_secs(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post_signed(t.http(), &url, "payload=%FF%FE", t.now_secs(), &[]).await;
    assert_eq!(r.status(), 400);
    // A 1 MB slash command.
    let huge = slash_command_body("U111", &"x".repeat(1024 * 1024), "big");
    let r = post_signed(t.http(), &url, &huge, t.now_secs(), &[]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(t.fingerprint().await, before);
    // A reason that tries to ping everyone and fake a link reaches the card escaped.
    let (_, b) = t
        .command(
            "U111",
            "github readers for 1d because <!channel> see <https://evil.example|slack.com>",
            "evil",
        )
        .await;
    let id = text(&b).split_whitespace().nth(1).unwrap().to_string();
    let card = eventually(5, "card", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["blocks"].is_array() && c.body.to_string().contains(&id))
    })
    .await;
    let blocks = card.body["blocks"].to_string();
    assert!(
        !blocks.contains("<!channel>") && !blocks.contains("<https://evil"),
        "{blocks}"
    );
    assert!(blocks.contains("&lt;!channel&gt;"), "{blocks}");
}
