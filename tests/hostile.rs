//! Hostile input: oversize bodies, deep JSON, invalid UTF-8, header and mrkdwn injection. Each is
//! answered with a clear error or neutralised, and changes nothing it should not.

mod common;

use common::*;
use serde_json::Value;

async fn requests(t: &TestApp) -> usize {
    t.app.store.recent_requests(1_000).await.unwrap().len()
}

#[tokio::test]
async fn oversize_deep_and_invalid_bodies_are_refused_and_change_nothing() {
    let t = spawn_app().await;
    let url = format!("{}/slack/commands", t.base_url);
    let interactions = format!("{}/slack/interactions", t.base_url);

    // 2 MB, signed: refused by size before anything is parsed.
    let huge = format!(
        "{}&text={}",
        slash_command_body("U111", "github", "t-huge"),
        "a".repeat(2 << 20)
    );
    let r = post_signed(t.http(), &url, &huge, t.now_secs(), &[]).await;
    assert_eq!(r.status(), 413);

    // Deeply nested JSON in an interaction payload: a 400 with a reason, not a crash.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let body = serde_urlencoded::to_string([("payload", deep)]).unwrap();
    let r = post_signed(t.http(), &interactions, &body, t.now_secs(), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(!r.text().await.unwrap().is_empty(), "a 400 says why");

    // Invalid UTF-8 in a signed form body.
    let mut bad =
        slash_command_body("U111", "github platform-admins because x", "t-utf8").into_bytes();
    bad.extend_from_slice(&[b'&', b'x', b'=', 0xff, 0xfe, 0xfd]);
    let sig = grantry::chat::slack::signature::sign(SIGNING_SECRET.as_bytes(), t.now_secs(), &bad);
    let r = t
        .http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", t.now_secs().to_string())
        .header("x-slack-signature", sig)
        .body(bad)
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 200, "{}", r.status());

    // A payload that is JSON but not an interaction.
    let body = serde_urlencoded::to_string([("payload", "{\"type\": 42}")]).unwrap();
    let r = post_signed(t.http(), &interactions, &body, t.now_secs(), &[]).await;
    assert_eq!(r.status(), 400);

    // Unsigned, wrongly signed, stale: 401.
    let ok_body = slash_command_body("U111", "github platform-admins because x", "t-sig");
    let r = t
        .http()
        .post(&url)
        .body(ok_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post_signed(t.http(), &url, &ok_body, t.now_secs() - 3_600, &[]).await;
    assert_eq!(r.status(), 401);

    assert_eq!(requests(&t).await, 0, "nothing was stored");
    assert!(t.slack.calls().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_reason_cannot_ping_channels_fake_links_or_inject_headers() {
    let t = spawn_app().await;
    let reason = "incident <!channel> <!here> @channel <https://evil.example/login|Grantry: re-authenticate> \
                  <@U222> *urgent* \r\nX-Injected: yes";
    let (status, b) = t
        .command(
            "U111",
            &format!("github platform-admins for 4h because {reason}"),
            "t-inject",
        )
        .await;
    assert_eq!(status, 200);
    let reply = b["text"].as_str().unwrap().to_string();
    assert!(reply.contains("R-"), "{reply}");
    let cards = eventually(10, "approval card", || async {
        let c = t.slack.calls_of("chat.postMessage");
        (!c.is_empty()).then_some(c)
    })
    .await;
    for call in &cards {
        let sent = call.body.to_string();
        for forbidden in [
            "<!channel>",
            "<!here>",
            "<https://evil.example",
            "<@U222>",
            "\\r",
        ] {
            assert!(
                !sent.contains(forbidden),
                "{forbidden} reached Slack: {sent}"
            );
        }
        // A line break in the reason stays inside the quoted reason: it cannot start a block of
        // its own. (User text never goes into an HTTP header: every call sends it as JSON.)
        if sent.contains("X-Injected") {
            assert!(sent.contains(">X-Injected: yes"), "{sent}");
        }
    }
    // The reason is kept as written (for the audit), only its display is defused.
    let stored = t.app.store.recent_requests(10).await.unwrap();
    assert!(stored[0].reason.contains("<!channel>"));
    let card: Value = cards[0].body.clone();
    assert!(
        card.to_string().contains("evil.example"),
        "the text stays readable: {card}"
    );
}

#[tokio::test]
async fn a_reason_with_a_control_character_is_refused_with_a_clear_answer_and_nothing_filed() {
    let t = spawn_app().await;
    for (n, reason) in ["incident\u{0}INC-42", "incident \u{1b}[31mINC-42"]
        .iter()
        .enumerate()
    {
        let (status, b) = t
            .command(
                "U111",
                &format!("github platform-admins for 4h because {reason}"),
                &format!("t-control-{n}"),
            )
            .await;
        assert_eq!(status, 200);
        let reply = b["text"].as_str().unwrap();
        assert!(reply.contains("control character (U+00"), "{reply}");
    }
    assert_eq!(requests(&t).await, 0);
}
