//! Access lifecycle on a clock the test moves: warnings before expiry with an Extend button,
//! revoke by the holder / an owner (and refused for others), offboarding 10 grants across 3
//! connectors (three real SCIM servers), and reconciliation finding (and fixing) access given
//! directly in the SCIM server.

mod common;

use common::*;
use serde_json::Value;

const STORY: &str = "github platform-admins for 4h because incident INC-42";

async fn granted(
    t: &TestApp,
    text: &str,
    approver: &str,
) -> (String, grantry::store::grants::GrantRecord) {
    let id = t.file_request(text).await;
    assert_eq!(t.click(approver, "grantry.approve", &id).await, 200);
    let g = eventually(15, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    (id, g)
}

#[tokio::test]
async fn a_warning_before_expiry_offers_extend_and_extending_works() {
    let t = spawn_app().await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;
    let (_, g) = granted(&t, STORY, "U222").await;
    let warnings = || {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body.to_string().contains("grantry.extend"))
            .collect::<Vec<_>>()
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        warnings().is_empty(),
        "a 4h grant gets no '1 day left' warning"
    );
    t.clock.advance_ms(3 * 3600 * 1000 + 5 * 60_000); // 55 minutes left: the 1h warning
    let w = eventually(5, "warning", || async { warnings().into_iter().next() }).await;
    assert_eq!(w.body["channel"], "U111");
    let wt = w.body["text"].as_str().unwrap();
    assert!(
        wt.contains("ends in 54m") || wt.contains("ends in 55m"),
        "{wt}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(warnings().len(), 1, "warned once");

    // The Extend button files an extension for the default duration, capped by the maximum (8h).
    let body = block_actions_body("U111", "grantry.extend", &g.id, "DU111", "1.5");
    let r = post_signed(
        t.http(),
        &format!("{}/slack/interactions", t.base_url),
        &body,
        t.now_secs(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let reply = eventually(5, "ephemeral answer", || async {
        t.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .find(|c| c.body["user"] == "U111")
    })
    .await;
    let text = reply.body["text"].as_str().unwrap();
    assert!(text.starts_with("Request R-"), "{text}");
    let ext = text.split_whitespace().nth(1).unwrap().to_string();
    t.click("U333", "grantry.approve", &ext).await;
    eventually(10, "extended", || async {
        (t.state_of(&ext).await == "active").then_some(())
    })
    .await;
    let after = t
        .app
        .store
        .grant(&grantry::domain::GrantId::parse(&g.id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.expires_at.unwrap() - g.expires_at.unwrap(),
        4 * 3600 * 1000
    );
}

#[tokio::test]
async fn the_holder_and_owners_revoke_others_may_not() {
    let t = spawn_app().await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;
    let (id, g) = granted(&t, STORY, "U222").await;
    assert_eq!(t.scim.members(&group).await, vec![alice.clone()]);
    let (_, b) = t.command("U666", &format!("revoke {}", g.id), "v0").await;
    assert!(
        b["text"].as_str().unwrap().contains("Only the holder"),
        "{b}"
    );
    let (_, b) = t
        .command(
            "U111",
            &format!("revoke {} because done with the incident", g.id),
            "v1",
        )
        .await;
    assert!(
        b["text"]
            .as_str()
            .unwrap()
            .starts_with("Revoking github/platform-admins"),
        "{b}"
    );
    eventually(10, "membership removed", || async {
        t.scim.members(&group).await.is_empty().then_some(())
    })
    .await;
    eventually(10, "request revoked", || async {
        (t.state_of(&id).await == "revoked").then_some(())
    })
    .await;
    let g2 = t
        .app
        .store
        .grant(&grantry::domain::GrantId::parse(&g.id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (g2.revoked_by.as_deref(), g2.revoke_reason.as_deref()),
        (Some("alice@example.com"), Some("done with the incident"))
    );
    let (_, b) = t.command("U111", &format!("revoke {}", g.id), "v2").await;
    assert!(
        b["text"].as_str().unwrap().contains("nothing to revoke"),
        "{b}"
    );

    // An owner may revoke someone else's grant.
    let (_, g) = granted(&t, STORY, "U333").await;
    let (_, b) = t
        .command("U222", &format!("revoke {} because rotation", g.id), "v3")
        .await;
    assert!(b["text"].as_str().unwrap().starts_with("Revoking"), "{b}");
    eventually(10, "removed again", || async {
        t.scim.members(&group).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn offboarding_removes_ten_grants_across_three_connectors() {
    // Three kinds of connector: SCIM (a real scim2-server), Slack user groups (the Slack
    // stand-in, answering with Slack's documented examples) and the generic webhook.
    let receiver = common::webhook::Receiver::start("billing-webhook-secret").await;
    let hook_url = receiver.url.clone();
    let t = spawn_app_with(move |c| {
        c.slack.status_channel = Some("CIT".into());
        c.lifecycle.it_admins = vec!["carol@example.com".into()];
        let secret = c.base_dir.join("offboard_secret");
        std::fs::write(&secret, "hr-secret").unwrap();
        c.lifecycle.offboard_secret.file = Some(secret);
        std::fs::write(c.base_dir.join("ug_token"), "xoxp-usergroups").unwrap();
        std::fs::write(c.base_dir.join("hook_secret"), "billing-webhook-secret").unwrap();
        let table = |text: String| -> grantry::config::ConnectorConfig { toml::from_str(&text).unwrap() };
        c.connectors.insert(
            "slack-groups".into(),
            table(format!(
                "type = \"slack_usergroups\"\napi_url = \"{}\"\ntoken_file = {:?}",
                c.slack.api_base_url,
                c.base_dir.join("ug_token").display().to_string()
            )),
        );
        c.connectors.insert(
            "billing-hook".into(),
            table(format!(
                "type = \"webhook\"\nurl = \"{hook_url}\"\nsecret_file = {:?}",
                c.base_dir.join("hook_secret").display().to_string()
            )),
        );
        let mut catalog = String::new();
        for (app, conn, targets) in [
            ("wiki", "scim", vec!["wiki-g0", "wiki-g1", "wiki-g2", "wiki-g3"]),
            // The handles in Slack's usergroups.list example.
            ("chat", "slack-groups", vec!["admins", "owners", "marketing-team"]),
            ("billing", "billing-hook", vec!["billing-g0", "billing-g1", "billing-g2"]),
        ] {
            catalog.push_str(&format!(
                "[[apps]]\nid = \"{app}\"\nconnector = \"{conn}\"\nowners = [\"bob@example.com\"]\n"
            ));
            for (i, target) in targets.iter().enumerate() {
                catalog.push_str(&format!(
                    "[[apps.entitlements]]\nid = \"{app}-g{i}\"\ntarget = \"{target}\"\nmax_duration = \"1w\"\n"
                ));
            }
        }
        std::fs::write(c.base_dir.join("catalog.toml"), catalog).unwrap();
    })
    .await;
    // Slack user groups cannot be empty: each starts with someone else in it.
    let slack_groups = ["S0614TZR7", "S06158AV7", "S0615G0KT"];
    for g in slack_groups {
        t.slack.set_usergroup_users(g, &["U0OTHER"]);
    }
    t.scim.create_user("alice@example.com").await;
    let mut scim_groups = Vec::new();
    for (app, n) in [("wiki", 4), ("chat", 3), ("billing", 3)] {
        for i in 0..n {
            if app == "wiki" {
                scim_groups.push(t.scim.create_group(&format!("wiki-g{i}")).await);
            }
            granted(
                &t,
                &format!("{app} {app}-g{i} for 2d because quarter close work"),
                "U222",
            )
            .await;
        }
    }
    for g in &scim_groups {
        assert_eq!(t.scim.members(g).await.len(), 1);
    }
    // users.lookupByEmail answers with Slack's example user, W012A3CDE.
    for g in slack_groups {
        assert_eq!(t.slack.usergroup_users(g), vec!["U0OTHER", "W012A3CDE"]);
    }
    for i in 0..3 {
        assert_eq!(
            receiver.holders(&format!("billing-g{i}")),
            vec!["alice@example.com"]
        );
    }
    let pending = t
        .file_request("wiki wiki-g0 for 1d because another pending one")
        .await;

    // The HR system calls the hook: wrong secret first.
    let url = format!("{}/hooks/offboard", t.base_url);
    let r = t
        .http()
        .post(&url)
        .bearer_auth("nope")
        .body(r#"{"email":"alice@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        t.app
            .store
            .active_grants_of("alice@example.com")
            .await
            .unwrap()
            .len(),
        10
    );
    let r = t
        .http()
        .post(&url)
        .bearer_auth("hr-secret")
        .body(r#"{"email":"Alice@example.com","source":"workday"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["revoking"].as_array().unwrap().len(), 10);
    assert_eq!(report["cancelled"], serde_json::json!([pending]));
    for gid in &scim_groups {
        eventually(15, "SCIM membership removed", || async {
            t.scim.members(gid).await.is_empty().then_some(())
        })
        .await;
    }
    for g in slack_groups {
        eventually(15, "user group membership removed", || async {
            (t.slack.usergroup_users(g) == vec!["U0OTHER"]).then_some(())
        })
        .await;
    }
    for i in 0..3 {
        let target = format!("billing-g{i}");
        eventually(15, "webhook revoke", || async {
            receiver.holders(&target).is_empty().then_some(())
        })
        .await;
    }
    assert!(t
        .app
        .store
        .active_grants_of("alice@example.com")
        .await
        .unwrap()
        .is_empty());
    eventually(5, "IT report", || async {
        t.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["channel"] == "CIT"
                && c.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("revoking 10 grant(s)")
        })
    })
    .await;
    let (_, b) = t
        .command("U111", "wiki wiki-g1 for 1d because I am back?", "again")
        .await;
    assert!(
        b["text"].as_str().unwrap().contains("has left the company"),
        "{b}"
    );
    // From chat, only IT may offboard.
    let (_, b) = t.command("U222", "offboard carol@example.com", "o1").await;
    assert!(
        b["text"].as_str().unwrap().contains("Only IT admins"),
        "{b}"
    );
}

#[tokio::test]
async fn reconciliation_finds_access_given_outside_grantry_and_fixes_it() {
    let t = spawn_app().await;
    t.scim.create_user("alice@example.com").await;
    let bob = t.scim.create_user("bob@example.com").await;
    let group = t.scim.create_group("platform-admins").await;
    t.scim.create_group("readers").await;
    let (_, g) = granted(&t, STORY, "U222").await;
    let clean = grantry::jobs::reconcile::reconcile(&t.app, false, "test")
        .await
        .unwrap();
    assert!(clean.clean(), "{}", clean.text());
    assert_eq!(clean.checked, 2);

    // Someone adds Bob directly in the app.
    t.scim.add_member(&group, &bob).await;
    let found = grantry::jobs::reconcile::reconcile(&t.app, false, "test")
        .await
        .unwrap();
    assert!(!found.clean());
    assert_eq!(found.drift[0].unexplained, vec![bob.clone()]);
    assert!(
        found.text().contains("held without a grant"),
        "{}",
        found.text()
    );
    assert!(
        t.scim.members(&group).await.contains(&bob),
        "a report changes nothing"
    );

    let fixed = grantry::jobs::reconcile::reconcile(&t.app, true, "test")
        .await
        .unwrap();
    assert_eq!(fixed.drift[0].fixed, vec![format!("removed {bob}")]);
    assert_eq!(t.scim.members(&group).await, vec![g.account_id.clone()]);
    let (seq, _) = t.app.store.audit_head().await.unwrap();
    let events = t.app.store.audit_events(0, seq).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "reconcile.removed" && e.detail.contains(&bob)));
    assert!(grantry::jobs::reconcile::reconcile(&t.app, false, "test")
        .await
        .unwrap()
        .clean());
}

#[tokio::test]
async fn an_access_review_keeps_revokes_escalates_and_exports() {
    let t = spawn_app_with(|c| c.slack.status_channel = Some("CIT".into())).await;
    t.scim.create_user("alice@example.com").await;
    let mallory = t.scim.create_user("mallory@example.com").await;
    t.scim.create_group("platform-admins").await;
    let readers = t.scim.create_group("readers").await;
    let (_, a1) = granted(&t, STORY, "U222").await;
    let (_, a2) = granted(&t, "github readers for 1w because reading the code", "U222").await;
    let id = {
        let (_, b) = t
            .command("U666", "github readers for 1w because sales demo", "m")
            .await;
        b["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    t.click("U333", "grantry.approve", &id).await;
    let m = eventually(15, "mallory's grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;

    let (review, n) = grantry::flow::reviews::start(&t.app, "github", "carol@example.com", 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
    eventually(10, "six review cards (3 grants x 2 owners)", || async {
        let c: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body.to_string().contains("grantry.review_keep"))
            .collect();
        (c.len() == 6).then_some(())
    })
    .await;
    // The grant id is not on the card; find items by subject through the store.
    let items = t.app.store.review_items(&review).await.unwrap();
    let item = |g: &str| items.iter().find(|i| i.grant_id == g).unwrap().id.clone();
    let click = |user: &'static str, action: &'static str, value: String| {
        let t = &t;
        async move {
            let body = block_actions_body(user, action, &value, &format!("D{user}"), "1.9");
            post_signed(
                t.http(),
                &format!("{}/slack/interactions", t.base_url),
                &body,
                t.now_secs(),
                &[],
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(
        click("U222", "grantry.review_keep", item(&a1.id)).await,
        200
    );
    assert_eq!(
        click("U333", "grantry.review_revoke", item(&a1.id)).await,
        200,
        "second answer refused"
    );
    assert_eq!(
        click("U666", "grantry.review_keep", item(&a2.id)).await,
        200,
        "not a reviewer"
    );
    assert_eq!(
        click("U333", "grantry.review_revoke", item(&m.id)).await,
        200
    );
    eventually(10, "Mallory's membership removed", || async {
        (!t.scim.members(&readers).await.contains(&mallory)).then_some(())
    })
    .await;
    let alice_kept = t
        .app
        .store
        .grant(&grantry::domain::GrantId::parse(&a1.id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice_kept.state, "active");
    eventually(5, "cards of the decided items updated", || async {
        let u = t
            .slack
            .calls_of("chat.update")
            .into_iter()
            .filter(|u| u.body.to_string().contains("Kept by bob@example.com"))
            .count();
        (u == 2).then_some(())
    })
    .await;
    let refusals = t.slack.calls_of("chat.postEphemeral");
    assert!(refusals.iter().any(|c| c.body["user"] == "U333"
        && c.body["text"]
            .as_str()
            .unwrap()
            .contains("already reviewed")));
    assert!(refusals
        .iter()
        .any(|c| c.body["user"] == "U666"
            && c.body["text"].as_str().unwrap().contains("not a reviewer")));

    // Past due with Alice's readers grant unanswered: IT is told, once.
    t.clock.advance_ms(8 * 86_400_000);
    eventually(5, "IT told", || async {
        t.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["channel"] == "CIT"
                && c.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("1 unanswered")
        })
    })
    .await;
    let csv = grantry::flow::reviews::export(&t.app, &review, true)
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        csv.contains("\"keep\",\"bob@example.com\"")
            && csv.contains("\"revoke\",\"carol@example.com\"")
            && csv.contains("\"unanswered\""),
        "{csv}"
    );
}

#[tokio::test]
async fn a_department_change_sends_the_persons_grants_back_to_their_owners() {
    let t = spawn_app().await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;
    let (_, g) = granted(&t, STORY, "U222").await;
    // The people file changes: Alice moves from Platform to Sales (grantry restarts with it).
    let text = std::fs::read_to_string(t.dir.path().join("people.toml")).unwrap();
    let moved = text.replacen("department = \"Platform\"", "department = \"Sales\"", 1);
    std::fs::write(t.dir.path().join("people2.toml"), moved).unwrap();
    let dir = grantry::directory::Directory::load(&t.dir.path().join("people2.toml")).unwrap();
    let changed = grantry::flow::reviews::detect_role_changes(&t.app, &dir)
        .await
        .unwrap();
    assert_eq!(changed, ["alice@example.com"]);
    let cards = eventually(10, "re-approval cards to both owners", || async {
        let c: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body.to_string().contains("grantry.review_keep"))
            .collect();
        (c.len() == 2).then_some(c)
    })
    .await;
    assert!(cards.iter().all(|c| c.body["text"]
        .as_str()
        .unwrap()
        .contains("alice@example.com")));
    let items: Vec<_> = {
        let (seq, _) = t.app.store.audit_head().await.unwrap();
        t.app.store.audit_events(0, seq).await.unwrap()
    };
    assert!(items
        .iter()
        .any(|e| e.action == "person.role_changed" && e.detail.contains("Platform")));
    assert!(items
        .iter()
        .any(|e| e.action == "review.started" && e.actor == "system:role-change"));
    // Seen once: the next start finds nothing new.
    assert!(grantry::flow::reviews::detect_role_changes(&t.app, &dir)
        .await
        .unwrap()
        .is_empty());
    let _ = g;
}
