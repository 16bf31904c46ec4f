//! Break-glass: an emergency request for an entitlement whose catalog entry allows it is granted
//! at once for at most the catalog's cap, IT's status channel is alerted, the owners get an
//! after-the-fact review, the grant is recorded as `policy:break-glass`, and it expires on time.

mod common;

use common::*;

#[tokio::test]
async fn break_glass_is_granted_at_once_capped_alerted_reviewed_and_expires_on_time() {
    let t = spawn_app_with(|c| c.slack.status_channel = Some("CIT".into())).await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;

    // Asked for 4h; the catalog caps break-glass at 1h.
    let (status, body) = t
        .command(
            "U111",
            "breakglass github platform-admins for 4h because prod is down INC-99",
            "trig-bg",
        )
        .await;
    assert_eq!(status, 200);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("approved automatically") && text.contains("break-glass"),
        "{text}"
    );
    let id = text
        .split_whitespace()
        .find(|w| w.starts_with("R-"))
        .unwrap()
        .to_string();

    eventually(15, "membership in SCIM", || async {
        t.scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
    let grant = eventually(10, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(grant.approved_by.as_deref(), Some("policy:break-glass"));
    assert_eq!(
        grant.expires_at.unwrap() - grant.granted_at,
        3_600_000,
        "capped at 1h"
    );
    // No approver was asked.
    assert!(t
        .app
        .store
        .approvals(&grantry::domain::RequestId::from_stored(id.clone()))
        .await
        .unwrap()
        .is_empty());

    // IT is alerted in the status channel.
    let alert = eventually(10, "alert in the status channel", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "CIT" && c.body.to_string().contains("BREAK-GLASS"))
    })
    .await;
    let a = alert.body.to_string();
    assert!(
        a.contains(&id) && a.contains("alice@example.com") && a.contains("prod is down INC-99"),
        "{a}"
    );

    // The owners get a review of it (Keep / Revoke).
    let reviews = eventually(10, "review cards to both owners", || async {
        let r: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body.to_string().contains("grantry.review_keep"))
            .collect();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let mut to: Vec<String> = reviews
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["U222", "U333"]);

    // The audit says break-glass.
    let events = t.app.store.audit_for_request(&id).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "request.auto_approved" && e.detail.contains("\"break_glass\":true")));

    // One hour later it is gone.
    t.clock.advance_ms(3_600_000 + 1_000);
    eventually(15, "membership removed on time", || async {
        (!t.scim.members(&group).await.contains(&alice)).then_some(())
    })
    .await;
    eventually(10, "request expired", || async {
        (t.state_of(&id).await == "expired").then_some(())
    })
    .await;
}

#[tokio::test]
async fn break_glass_where_the_catalog_does_not_allow_it_changes_nothing() {
    let t = spawn_app().await;
    let before = t.fingerprint().await;
    let (_, body) = t
        .command(
            "U111",
            "breakglass github readers because I want it now",
            "trig-bg2",
        )
        .await;
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("has no break-glass access"), "{text}");
    assert_eq!(t.fingerprint().await, before);
}

/// Grant on behalf: an owner grants to someone who did not ask; the other owner approves; the
/// grantor is recorded as the requester. Someone who is neither owner, IT nor manager cannot.
#[tokio::test]
async fn an_owner_grants_on_behalf_through_policy_and_the_other_approvers() {
    let t = spawn_app().await;
    let mallory = t.scim.create_user("mallory@example.com").await;
    let group = t.scim.create_group("readers").await;

    // Alice is no owner of github, not IT, not Mallory's manager: refused, nothing stored.
    let before = t.fingerprint().await;
    let (_, body) = t
        .command(
            "U111",
            "grant mallory@example.com github readers for 2h because she needs it",
            "trig-g1",
        )
        .await;
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("owners of github and IT"),
        "{body}"
    );
    assert_eq!(t.fingerprint().await, before);

    // Bob (an owner) grants to Mallory: it goes to Carol (never to Bob himself).
    let (_, body) = t
        .command(
            "U222",
            "grant <@U666|mallory> github readers for 2h because helping with the audit",
            "trig-g2",
        )
        .await;
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("Carol Owner") && !text.contains("Bob Owner"),
        "{text}"
    );
    let id = text.split_whitespace().nth(1).unwrap().to_string();
    let req = t
        .app
        .store
        .request(&grantry::domain::RequestId::from_stored(id.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.requester_email, "bob@example.com");
    assert_eq!(req.subject_email, "mallory@example.com");

    eventually(10, "card to Carol", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "U333" && c.body.to_string().contains(&id))
    })
    .await;
    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    eventually(15, "Mallory is a member", || async {
        t.scim
            .members(&group)
            .await
            .contains(&mallory)
            .then_some(())
    })
    .await;
    // The membership shows in SCIM a moment before the grant row is committed.
    let grant = eventually(10, "grant recorded", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(grant.approved_by.as_deref(), Some("carol@example.com"));
}
