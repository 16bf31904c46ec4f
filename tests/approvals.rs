//! Approvals that hold up: deny with a reason, approve for less time, the card's context,
//! reminders, escalation and time-outs on a clock the test moves, delegation, and 50 concurrent
//! clicks from 5 approvers giving one decision and one provisioning job.

mod common;

use common::*;
use serde_json::Value;

const STORY: &str = "github platform-admins for 4h because incident INC-42";

fn dm_to<'a>(t: &'a TestApp, user: &'a str, needle: &'a str) -> impl Fn() -> Option<String> + 'a {
    move || {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .map(|c| {
                (
                    c.body["channel"].as_str().unwrap_or("").to_string(),
                    c.body["text"].as_str().unwrap_or("").to_string(),
                )
            })
            .find(|(ch, text)| ch == user && text.contains(needle))
            .map(|(_, text)| text)
    }
}

#[tokio::test]
async fn deny_asks_for_a_reason_and_the_requester_reads_it() {
    let t = spawn_app().await;
    let id = t.file_request(STORY).await;
    // An empty reason is answered inline; nothing changes.
    let (status, body) = t.submit_deny("U333", &id, "").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response_action"], "errors");
    assert_eq!(t.state_of(&id).await, "pending_approval");
    // So is a reason with a control character in it.
    let (_, body) = t.submit_deny("U333", &id, "stale\u{0}team").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    common::assert_inline_error(&v, "reason", "control character (U+0000)");
    assert_eq!(t.state_of(&id).await, "pending_approval");
    // Someone who is not an approver gets no form: refused and audited at the click.
    let opened = t.slack.calls_of("views.open").len();
    assert_eq!(t.click("U666", "grantry.deny", &id).await, 200);
    eventually(5, "Mallory told", || async {
        t.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .find(|c| c.body["user"] == "U666")
    })
    .await;
    assert_eq!(
        t.slack.calls_of("views.open").len(),
        opened,
        "no modal for a non-approver"
    );
    // Carol denies with a reason.
    let (status, _) = t.deny("U333", &id, "use the <!channel> readers team").await;
    assert_eq!(status, 200);
    assert_eq!(t.state_of(&id).await, "rejected");
    let text = eventually(5, "requester DM", || async {
        dm_to(&t, "U111", "was denied")()
    })
    .await;
    assert!(
        text.contains("&lt;!channel&gt; readers team"),
        "the reason is shown, escaped: {text}"
    );
    let rid = grantry::domain::RequestId::parse(&id).unwrap();
    let last = t.app.store.decisions(&rid).await.unwrap().pop().unwrap();
    assert_eq!(last.reasons, r#"["use the <!channel> readers team"]"#);
}

#[tokio::test]
async fn approve_for_less_time_and_a_forged_duration_is_refused() {
    let t = spawn_app().await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;
    let id = t.file_request(STORY).await;
    let card = eventually(5, "card", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["blocks"].is_array())
    })
    .await;
    let blocks = card.body["blocks"].to_string();
    assert!(
        blocks.contains("grantry.approve_for") && blocks.contains(&format!("{id}|1h")),
        "{blocks}"
    );
    assert!(
        !blocks.contains(&format!("{id}|8h")),
        "only shorter durations are offered"
    );
    assert!(
        blocks.contains("never held this before") && blocks.contains("in Platform hold it"),
        "{blocks}"
    );
    // A forged longer duration changes nothing.
    assert_eq!(
        t.click("U222", "grantry.approve_for", &format!("{id}|8h"))
            .await,
        200
    );
    assert_eq!(t.state_of(&id).await, "pending_approval");
    // Approve for 1h.
    assert_eq!(
        t.click("U222", "grantry.approve_for", &format!("{id}|1h"))
            .await,
        200
    );
    let g = eventually(15, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(g.expires_at.unwrap() - g.granted_at, 3600 * 1000);
    let events = t.app.store.audit_for_request(&id).await.unwrap();
    let approved = events
        .iter()
        .find(|e| e.action == "request.approved")
        .unwrap();
    let detail: Value = serde_json::from_str(&approved.detail).unwrap();
    assert_eq!(
        (
            detail["approved_for"].as_str(),
            detail["asked_for"].as_str()
        ),
        (Some("1h"), Some("4h"))
    );
}

#[tokio::test]
async fn reminders_then_escalation_then_time_out_each_once() {
    let t = spawn_app_with(|c| {
        c.slack.status_channel = Some("CIT".into());
        c.approvals.escalation_approvers = vec!["mallory@example.com".into()];
    })
    .await;
    let id = t.file_request(STORY).await; // high risk: 4h SLA
    eventually(5, "cards", || async {
        (t.slack.calls_of("chat.postMessage").len() >= 2).then_some(())
    })
    .await;
    let count = |needle: &'static str| {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["text"].as_str().unwrap_or("").contains(needle))
            .count()
    };

    t.clock.advance_ms(3 * 3600 * 1000);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // a few sweeps: nothing due yet
    assert_eq!(count("Reminder"), 0);

    t.clock.advance_ms(3600 * 1000 + 60_000); // past one SLA
    eventually(5, "reminders to both owners", || async {
        (count("Reminder") == 2).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(count("Reminder"), 2, "reminded once");

    t.clock.advance_ms(4 * 3600 * 1000); // past two SLAs
    let card = eventually(5, "escalation card to Mallory", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "U666" && c.body["blocks"].is_array())
    })
    .await;
    assert!(card.body["blocks"].to_string().contains("Escalated"));
    eventually(5, "IT told", || async {
        dm_to(&t, "CIT", "escalated to mallory@example.com")()
    })
    .await;
    // Mallory, now an approver, may approve.
    let escalations = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "request.escalated")
        .count();
    assert_eq!(escalations, 1);

    t.clock.advance_ms(3 * 86_400_000); // past the 3-day time-out
    eventually(5, "timed out", || async {
        (t.state_of(&id).await == "timed_out").then_some(())
    })
    .await;
    eventually(5, "requester told", || async {
        dm_to(&t, "U111", "timed out")()
    })
    .await;
    let updates = eventually(5, "every card closed", || async {
        let u: Vec<_> = t
            .slack
            .calls_of("chat.update")
            .into_iter()
            .filter(|u| u.body.to_string().contains("Timed out"))
            .collect();
        (u.len() >= 3).then_some(u)
    })
    .await;
    assert!(updates
        .iter()
        .all(|u| !u.body.to_string().contains("\"button\"")));
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    assert_eq!(
        t.state_of(&id).await,
        "timed_out",
        "a timed-out request cannot be approved"
    );
}

#[tokio::test]
async fn an_approver_away_delegates_and_it_is_audited_and_shown() {
    let t = spawn_app().await;
    let until = (chrono::Utc::now() + chrono::Duration::days(7))
        .format("%Y-%m-%d")
        .to_string();
    let (_, b) = t
        .command(
            "U222",
            &format!("delegate <@U666|mallory> until {until}"),
            "d1",
        )
        .await;
    assert!(
        b["text"]
            .as_str()
            .unwrap()
            .contains("go to Mallory Outsider"),
        "{b}"
    );
    let (_, b) = t
        .command("U222", "delegate <@U222|bob> until 2099-01-01", "d2")
        .await;
    assert!(b["text"].as_str().unwrap().contains("someone else"), "{b}");

    let (_, b) = t.command("U111", STORY, "r1").await;
    let text = b["text"].as_str().unwrap();
    assert!(
        text.contains("Mallory Outsider") && text.contains("Carol Owner") && !text.contains("Bob"),
        "{text}"
    );
    let id = text.split_whitespace().nth(1).unwrap().to_string();
    let card = eventually(5, "card to Mallory", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "U666" && c.body["blocks"].is_array())
    })
    .await;
    assert!(card.body["blocks"]
        .to_string()
        .contains("On behalf of Bob Owner"));
    assert_eq!(
        t.click("U222", "grantry.approve", &id).await,
        200,
        "Bob handed his approvals over"
    );
    assert_eq!(t.state_of(&id).await, "pending_approval");
    assert_eq!(t.click("U666", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, "provisioning");
    let approved = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "request.approved")
        .unwrap();
    assert_eq!(approved.actor, "mallory@example.com");
    assert!(approved.detail.contains("On behalf of Bob Owner"));
    let (seq, _) = t.app.store.audit_head().await.unwrap();
    let all = t.app.store.audit_events(0, seq).await.unwrap();
    assert!(all
        .iter()
        .any(|e| e.action == "delegation.set" && e.actor == "bob@example.com"));

    let (_, b) = t.command("U222", "delegate off", "d3").await;
    assert!(b["text"].as_str().unwrap().contains("Welcome back"));
    let (_, b) = t
        .command(
            "U111",
            "github readers for 1d because onboarding work",
            "r2",
        )
        .await;
    assert!(b["text"].as_str().unwrap().contains("Bob Owner"));
}

#[tokio::test]
async fn fifty_clicks_from_five_approvers_make_one_decision_and_one_job() {
    let t = spawn_app_with(|c| {
        let dir = c.base_dir.clone();
        let mut people = std::fs::read_to_string(dir.join("people.toml")).unwrap();
        let mut owners = Vec::new();
        for i in 1..=5 {
            people.push_str(&format!("\n[[people]]\nemail = \"owner{i}@example.com\"\nname = \"Owner {i}\"\nslack_id = \"UOWN{i}\"\n"));
            owners.push(format!("\"owner{i}@example.com\""));
        }
        std::fs::write(dir.join("people.toml"), people).unwrap();
        let catalog = std::fs::read_to_string(dir.join("catalog.toml")).unwrap().replace(
            "owners = [\"bob@example.com\", \"carol@example.com\"]",
            &format!("owners = [{}]", owners.join(", ")),
        );
        std::fs::write(dir.join("catalog.toml"), catalog).unwrap();
    })
    .await;
    let id = t.file_request(STORY).await;
    let mut clicks = Vec::new();
    for n in 0..50 {
        let user = format!("UOWN{}", n % 5 + 1);
        let choice = if n % 7 == 3 {
            "grantry.deny"
        } else {
            "grantry.approve"
        };
        let (t, id) = (&t, id.clone());
        clicks.push(async move {
            if choice == "grantry.deny" {
                t.submit_deny(&user, &id, "not needed now").await.0
            } else {
                t.click(&user, choice, &id).await
            }
        });
    }
    let statuses = futures_join_all(clicks).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let rid = grantry::domain::RequestId::parse(&id).unwrap();
    let decisions = t
        .app
        .store
        .decisions(&rid)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == "approver")
        .count();
    assert_eq!(decisions, 1, "exactly one decision");
    let jobs = t.app.store.jobs(None, 1000).await.unwrap();
    let provisions = jobs.iter().filter(|j| j.kind == "provision").count();
    let state = t.state_of(&id).await;
    assert!(
        state == "rejected" && provisions == 0 || state != "rejected" && provisions == 1,
        "{state}: {provisions} jobs"
    );
    let refused = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "approval.refused")
        .count();
    assert_eq!(refused, 49, "every other click refused and audited");
}

/// Runs futures concurrently on this task.
async fn futures_join_all<F: std::future::Future<Output = u16>>(futs: Vec<F>) -> Vec<u16> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out = vec![0; set.len()];
    let mut pending: Vec<usize> = (0..set.len()).collect();
    std::future::poll_fn(|cx| {
        pending.retain(|&i| match set[i].as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[i] = v;
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

#[tokio::test]
async fn the_managers_step_then_two_of_three_owners_in_order() {
    let t = spawn_app_with(|c| {
        let path = c.base_dir.join("catalog.toml");
        let catalog = std::fs::read_to_string(&path).unwrap().replace(
            "owners = [\"bob@example.com\", \"carol@example.com\"]",
            "owners = [\"bob@example.com\", \"carol@example.com\", \"mallory@example.com\"]",
        ) + r#"
  [[apps.entitlements]]
  id = "prod-deploy"
  max_duration = "8h"
    [[apps.entitlements.steps]]
    approvers = ["manager"]
    [[apps.entitlements.steps]]
    approvers = ["owners"]
    need = 2
"#;
        std::fs::write(&path, catalog).unwrap();
    })
    .await;
    t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("prod-deploy").await;
    let (_, b) = t
        .command(
            "U111",
            "github prod-deploy for 2h because release 1.4 rollout",
            "s1",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(
        text.contains("sent to Bob Owner for approval"),
        "step 1 is Alice's manager: {text}"
    );
    let id = text.split_whitespace().nth(1).unwrap().to_string();
    let card = eventually(5, "step-1 card", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["blocks"].is_array())
    })
    .await;
    assert_eq!(card.body["channel"], "U222");
    assert!(
        card.body["blocks"].to_string().contains("step 1 of 2"),
        "{}",
        card.body
    );
    // An owner cannot jump the queue: step 2 has not started.
    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, "pending_approval");

    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    let step2 = eventually(5, "step-2 cards to the three owners", || async {
        let c: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| {
                c.body["blocks"].is_array() && c.body["blocks"].to_string().contains("step 2 of 2")
            })
            .collect();
        (c.len() == 3).then_some(c)
    })
    .await;
    let mut to: Vec<&str> = step2
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["U222", "U333", "U666"]);
    assert!(step2[0].body["blocks"]
        .to_string()
        .contains("approved so far by Bob Owner"));
    assert_eq!(t.state_of(&id).await, "pending_approval");

    // 2 of 3: Carol, then Carol again (refused), then Mallory completes it.
    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    assert_eq!(t.state_of(&id).await, "pending_approval");
    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    eventually(5, "Carol told she already decided", || async {
        t.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .find(|c| {
                c.body["user"] == "U333"
                    && c.body["text"].as_str().unwrap().contains("already decided")
            })
    })
    .await;
    assert_eq!(t.click("U666", "grantry.approve", &id).await, 200);
    eventually(15, "provisioned after the last step", || async {
        (!t.scim.members(&group).await.is_empty()).then_some(())
    })
    .await;
    let actions: Vec<(String, String)> = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    let steps: Vec<(&str, &str)> = actions
        .iter()
        .filter(|(a, _)| a.starts_with("request.step") || a == "request.approved")
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("request.step_approved", "bob@example.com"),
            ("request.step_completed", "system"),
            ("request.step_approved", "carol@example.com"),
            ("request.approved", "mallory@example.com"),
        ]
    );
    let g = eventually(10, "grant recorded", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(g.approved_by.as_deref(), Some("mallory@example.com"));

    // Bob has no manager: his own request for it cannot complete step 1, so it is denied at once.
    let (_, b) = t
        .command(
            "U222",
            "github prod-deploy for 2h because hotfix rollout",
            "s2",
        )
        .await;
    assert!(
        b["text"].as_str().unwrap().contains("approval step 1"),
        "{b}"
    );
}
