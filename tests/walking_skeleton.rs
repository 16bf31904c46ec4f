//! The walking skeleton's story over HTTP against the running app: signed slash command → cards
//! posted to a Slack stand-in → signed approve click → membership in a real SCIM server → grant
//! recorded → expiry revokes it → membership gone.

mod common;

use common::*;
use grantry::audit::Verdict;
use serde_json::Value;

const STORY: &str = "github platform-admins for 4h because incident INC-42";

fn blocks_text(call: &common::slack::Call) -> String {
    call.body.to_string()
}

#[tokio::test]
async fn the_whole_story_from_slash_command_to_expiry() {
    let t = spawn_app().await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;

    // 1. The employee asks; the bot acks with the request id and who decides.
    let (status, body) = t.command("U111", STORY, "trig-story").await;
    assert_eq!(status, 200);
    assert_eq!(body["response_type"], "ephemeral");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("Request R-"), "{text}");
    assert!(
        text.contains("Bob Owner or Carol Owner") && text.contains("for approval"),
        "{text}"
    );
    let id = text.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(t.state_of(&id).await, "pending_approval");

    // 2. Each owner gets a card: who, what, how long, why, Approve and Deny.
    let cards = eventually(10, "two cards posted", || async {
        let c = t.slack.calls_of("chat.postMessage");
        (c.len() >= 2).then_some(c)
    })
    .await;
    let mut to: Vec<&str> = cards
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["U222", "U333"]);
    for c in &cards {
        let b = blocks_text(c);
        for needle in [
            id.as_str(),
            "<@U111>",
            "Platform admins",
            "4h",
            "incident INC-42",
            "grantry.approve",
            "grantry.deny",
        ] {
            assert!(b.contains(needle), "card lacks {needle}: {b}");
        }
        assert_eq!(c.authorization.as_deref(), Some("Bearer xoxb-test-token"));
    }

    // 3. Bob approves.
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);

    // 4. Alice is a member of the group in the SCIM server; the grant is recorded; she is told.
    eventually(15, "membership in SCIM", || async {
        t.scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
    eventually(10, "request active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
    let grant = t
        .app
        .store
        .grant_for_request(&id)
        .await
        .unwrap()
        .expect("grant");
    assert_eq!(grant.state, "active");
    assert_eq!(grant.approved_by.as_deref(), Some("bob@example.com"));
    assert_eq!(grant.account_id, alice);
    let expires = grant.expires_at.expect("time-bound");
    assert_eq!(expires - grant.granted_at, 4 * 3600 * 1000);
    eventually(10, "DM to Alice that access is active", || async {
        t.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["channel"] == "U111"
                && c.body["text"].as_str().unwrap_or("").contains("is active")
        })
    })
    .await;

    // Every card now says who decided, with no live buttons.
    let updates = eventually(10, "both cards updated", || async {
        let u = t.slack.calls_of("chat.update");
        (u.len() >= 2).then_some(u)
    })
    .await;
    for u in &updates {
        let b = blocks_text(u);
        assert!(b.contains("Approved") && b.contains("<@U222>"), "{b}");
        assert!(!b.contains("\"button\""), "a button stayed live: {b}");
    }
    let mut updated: Vec<&str> = updates
        .iter()
        .map(|u| u.body["channel"].as_str().unwrap())
        .collect();
    updated.sort();
    assert_eq!(updated, ["DU222", "DU333"]);

    // 5. Four hours later the grant expires: the membership is removed and Alice is told.
    t.clock.advance_ms(4 * 3600 * 1000 + 1000);
    eventually(15, "membership removed", || async {
        (!t.scim.members(&group).await.contains(&alice)).then_some(())
    })
    .await;
    eventually(10, "request expired", || async {
        (t.state_of(&id).await == "expired").then_some(())
    })
    .await;
    let grant = t.app.store.grant_for_request(&id).await.unwrap().unwrap();
    assert_eq!(grant.state, "revoked");
    assert_eq!(grant.revoke_reason.as_deref(), Some("expired"));
    eventually(10, "DM to Alice that access expired", || async {
        t.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["channel"] == "U111" && c.body["text"].as_str().unwrap_or("").contains("expired")
        })
    })
    .await;

    // The audit trail traces it all to a policy and a named approver, and the chain is whole.
    let actions: Vec<(String, String)> = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    let expected = [
        ("request.submitted", "alice@example.com"),
        ("request.routed", "policy"),
        ("request.approved", "bob@example.com"),
        ("request.provisioning", "system"),
        ("grant.created", "connector:scim"),
        ("grant.expiring", "system:expiry"),
        ("grant.revoked", "system:expiry"),
    ];
    let got: Vec<(&str, &str)> = actions
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert!(matches!(
        grantry::audit::verify(&t.app.store).await.unwrap(),
        Verdict::Whole { .. }
    ));
}

#[tokio::test]
async fn deny_records_the_decision_and_tells_the_requester() {
    let t = spawn_app().await;
    let id = t.file_request(STORY).await;
    let (status, body) = t.deny("U333", &id, "use the readers team for this").await;
    assert_eq!((status, body.as_str()), (200, ""));
    eventually(10, "requester told, with the reason", || async {
        t.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            let text = c.body["text"].as_str().unwrap_or("");
            c.body["channel"] == "U111"
                && text.contains("was denied by Carol Owner")
                && text.contains("use the readers team")
        })
    })
    .await;
    assert_eq!(t.state_of(&id).await, "rejected");
    let decisions = t
        .app
        .store
        .decisions(&grantry::domain::RequestId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        decisions
            .last()
            .map(|d| (d.outcome.as_str(), d.actor.as_str())),
        Some(("rejected", "carol@example.com"))
    );
    assert!(t.app.store.grant_for_request(&id).await.unwrap().is_none());
    assert!(t
        .app
        .store
        .jobs(None, 100)
        .await
        .unwrap()
        .iter()
        .all(|j| j.kind != "provision"));
}

#[tokio::test]
async fn bad_signature_stale_timestamp_and_malformed_payloads_change_nothing() {
    let t = spawn_app().await;
    let before = t.fingerprint().await;
    let url = format!("{}/slack/commands", t.base_url);
    let body = slash_command_body("U111", STORY, "trig-bad");

    // Wrong signature: 401.
    let resp = t
        .http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", t.now_secs().to_string())
        .header(
            "x-slack-signature",
            "v0=0000000000000000000000000000000000000000000000000000000000000000",
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // No signature at all: 401.
    let resp = t.http().post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Correctly signed but six minutes old (a replay): 401.
    let resp = post_signed(t.http(), &url, &body, t.now_secs() - 360, &[]).await;
    assert_eq!(resp.status(), 401);
    // Signed garbage: 400 with a reason.
    for (bad, reason) in [
        ("payload=%7Bnot-json", "not valid JSON"),
        ("command=%2Faccess&text=x", "missing field 'team_id'"),
        ("hello=world", "neither a slash command"),
    ] {
        let resp = post_signed(t.http(), &url, bad, t.now_secs(), &[]).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(reason), "{bad}: {text}");
    }
    // A body over the limit: 413 before anything is read.
    let huge = format!("command=%2Faccess&text={}", "a".repeat(1024 * 1024));
    let resp = post_signed(t.http(), &url, &huge, t.now_secs(), &[]).await;
    assert_eq!(resp.status(), 413);

    assert_eq!(
        t.fingerprint().await,
        before,
        "a refused request changed the store"
    );
}

#[tokio::test]
async fn refused_clicks_are_audited_and_change_nothing() {
    let t = spawn_app().await;
    let id = t.file_request(STORY).await;
    let audit_of = |why: &'static str| {
        let store = t.app.store.clone();
        let id = id.clone();
        async move {
            store
                .audit_for_request(&id)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "approval.refused")
                .filter(|e| serde_json::from_str::<Value>(&e.detail).unwrap()["why"] == why)
                .count()
        }
    };

    // Mallory is in the directory but not an approver.
    let before = t.state_of(&id).await;
    assert_eq!(t.click("U666", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, before);
    assert_eq!(audit_of("not_an_approver").await, 1);
    eventually(10, "Mallory told", || async {
        t.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .find(|c| {
                c.body["user"] == "U666"
                    && c.body["text"].as_str().unwrap().contains("not an approver")
            })
    })
    .await;

    // A stranger the directory does not know.
    assert_eq!(t.click("U999", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, before);
    assert_eq!(audit_of("not_an_approver").await, 2);

    // The requester forging an approve of their own request.
    assert_eq!(t.click("U111", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, before);
    assert_eq!(audit_of("self_approval").await, 1);

    // A button carrying a request id that does not exist.
    assert_eq!(t.click("U222", "grantry.approve", "R-ZZZZZZZZ").await, 200);
    assert_eq!(t.state_of(&id).await, before);

    // Bob approves; Carol's later click on her (now stale) card changes nothing.
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    assert_eq!(audit_of("already_decided").await, 2);
    let jobs = t.app.store.jobs(None, 100).await.unwrap();
    assert_eq!(
        jobs.iter().filter(|j| j.kind == "provision").count(),
        1,
        "exactly one provisioning job"
    );
    let approvals = t
        .app
        .store
        .decisions(&grantry::domain::RequestId::parse(&id).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == "approver")
        .count();
    assert_eq!(approvals, 1, "exactly one approver decision");
}

#[tokio::test]
async fn an_owner_cannot_approve_their_own_request() {
    let t = spawn_app().await;
    // Bob owns github; his request goes to Carol alone.
    let (status, body) = t.command("U222", STORY, "trig-bob").await;
    assert_eq!(status, 200);
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("sent to Carol Owner for approval"), "{text}");
    let id = text.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, "pending_approval");
    let refused = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "approval.refused" && e.actor == "bob@example.com")
        .count();
    assert_eq!(refused, 1);
    let cards = eventually(10, "card to Carol", || async {
        let c = t.slack.calls_of("chat.postMessage");
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert!(
        cards.iter().all(|c| c.body["channel"] != "U222"),
        "Bob was asked to approve himself"
    );
}

#[tokio::test]
async fn a_slack_retry_files_the_request_once() {
    let t = spawn_app().await;
    let body = slash_command_body("U111", STORY, "trig-retried");
    let url = format!("{}/slack/commands", t.base_url);
    let first: Value = post_signed(t.http(), &url, &body, t.now_secs(), &[])
        .await
        .json()
        .await
        .unwrap();
    let again: Value = post_signed(
        t.http(),
        &url,
        &body,
        t.now_secs(),
        &[
            ("x-slack-retry-num", "1"),
            ("x-slack-retry-reason", "http_timeout"),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    let id = first["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        again["text"]
            .as_str()
            .unwrap()
            .contains(&format!("Request {id} was already received")),
        "{again}"
    );
    assert_eq!(t.app.store.recent_requests(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_requests_get_a_clear_answer_and_store_nothing() {
    let t = spawn_app().await;
    let before = t.fingerprint().await;
    for (user, text, expect) in [
        (
            "U111",
            "githbu platform-admins for 4h because incident INC-42",
            "Did you mean `github`?",
        ),
        (
            "U111",
            "github platform-admin for 4h because incident INC-42",
            "Did you mean `platform-admins`?",
        ),
        (
            "U111",
            "github platform-admins for 2d because incident INC-42",
            "longer than the 8h allowed",
        ),
        (
            "U111",
            "github platform-admins for 4h",
            "Say why you need it",
        ),
        (
            "U111",
            "github platform-admins for permanent because incident INC-42",
            "cannot be held permanently",
        ),
        (
            "U111",
            "github platform-admins for 4x because incident",
            "is not a duration",
        ),
        ("U999", STORY, "not in grantry's directory"),
        ("U111", "help", "/access <app> <entitlement>"),
    ] {
        let (status, body) = t.command(user, text, &format!("t-{}", rand_suffix())).await;
        assert_eq!(status, 200);
        assert!(
            body["text"].as_str().unwrap().contains(expect),
            "{text}: {body}"
        );
    }
    assert_eq!(t.fingerprint().await, before);
}

#[tokio::test]
async fn slack_rate_limits_are_honoured_and_nothing_is_lost() {
    let t = spawn_app().await;
    t.slack.fail_next(common::slack::Fault {
        method: "chat.postMessage".into(),
        status: 429,
        retry_after: Some(1),
        body: serde_json::json!({"ok": false, "error": "ratelimited"}),
    });
    let started = std::time::Instant::now();
    let _id = t.file_request(STORY).await;
    let cards = eventually(15, "both cards delivered despite the 429", || async {
        let ok: Vec<_> = t.slack.calls_of("chat.postMessage");
        (ok.len() >= 3).then_some(ok)
    })
    .await;
    assert_eq!(cards.len(), 3, "one refused try and two deliveries");
    let failed_channel = cards[0].body["channel"].clone();
    let retried = cards[1..]
        .iter()
        .filter(|c| c.body["channel"] == failed_channel)
        .count();
    assert_eq!(retried, 1);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "Retry-After was not honoured"
    );
}
