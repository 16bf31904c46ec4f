//! The manual connector: for an app with no API, approval posts a task to IT's channel; the grant
//! becomes active only when someone in IT presses Done, and revoking asks the same way.

mod common;

use common::*;
use serde_json::Value;

const IT_CHANNEL: &str = "CITTASKS";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.lifecycle.it_admins = vec!["carol@example.com".into()];
        c.connectors.insert(
            "erp-desk".into(),
            toml::from_str(&format!(
                "type = \"manual\"\nchannel = \"{IT_CHANNEL}\"\ninstructions = \"ERP admin console: Users → Roles\"\n"
            ))
            .unwrap(),
        );
        std::fs::write(
            c.base_dir.join("catalog.toml"),
            "[[apps]]\nid = \"erp\"\nname = \"Legacy ERP\"\nconnector = \"erp-desk\"\nowners = [\"bob@example.com\"]\n\
             [[apps.entitlements]]\nid = \"ap-approver\"\ntarget = \"AP Approver\"\nmax_duration = \"1w\"\n",
        )
        .unwrap();
    })
    .await
}

/// The latest task message posted to IT's channel: (text, task id from its Done button).
async fn task_posted(t: &TestApp, n: usize) -> (String, String) {
    eventually(10, "task posted", || async {
        let posts: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["channel"] == IT_CHANNEL)
            .collect();
        let post = posts.get(n - 1)?.clone();
        let blocks: Value = match &post.body["blocks"] {
            Value::String(s) => serde_json::from_str(s).ok()?,
            b => b.clone(),
        };
        let id = blocks
            .to_string()
            .split("\"value\":\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_string();
        Some((post.body["text"].as_str()?.to_string(), id))
    })
    .await
}

#[tokio::test]
async fn a_manual_grant_waits_for_it_to_press_done_and_so_does_its_revoke() {
    let t = app().await;
    let id = t
        .file_request("erp ap-approver for 2d because month-end close")
        .await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);

    let (text, task) = task_posted(&t, 1).await;
    assert!(
        text.contains("AP Approver") && text.contains("alice@example.com"),
        "{text}"
    );
    assert!(text.contains("ERP admin console"), "{text}");
    // Waiting for IT: provisioning, no grant.
    assert_eq!(t.state_of(&id).await, "provisioning");
    assert!(t.app.store.grant_for_request(&id).await.unwrap().is_none());

    // Someone who is neither IT nor an owner: refused, audited, nothing changes.
    assert_eq!(t.click("U666", "grantry.fulfil_done", &task).await, 200);
    eventually(10, "refusal told", || async {
        t.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .find(|c| {
                c.body["user"] == "U666"
                    && c.body["text"]
                        .as_str()
                        .unwrap_or("")
                        .contains("Only IT admins")
            })
    })
    .await;
    assert_eq!(t.state_of(&id).await, "provisioning");

    // Carol (IT) did it in the ERP and presses Done: the grant is recorded, naming her.
    assert_eq!(t.click("U333", "grantry.fulfil_done", &task).await, 200);
    let grant = eventually(10, "grant active", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(t.state_of(&id).await, "active");
    assert!(
        grant.receipt.contains("carol@example.com"),
        "{}",
        grant.receipt
    );
    let actions: Vec<(String, String)> = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    assert!(
        actions.contains(&("fulfilment.refused".into(), "mallory@example.com".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("fulfilment.done".into(), "carol@example.com".into())),
        "{actions:?}"
    );
    // The task message now says who did it, with no buttons left.
    eventually(10, "task updated", || async {
        t.slack.calls_of("chat.update").into_iter().find(|c| {
            c.body["channel"] == IT_CHANNEL
                && c.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Done by carol@example.com")
        })
    })
    .await;
    // A second Done changes nothing.
    assert_eq!(t.click("U333", "grantry.fulfil_done", &task).await, 200);

    // Revoking asks IT too; the ledger says revoked only after Done.
    let said =
        grantry::flow::lifecycle::revoke(&t.app, "carol@example.com", &grant.id, "month-end over")
            .await
            .unwrap();
    assert!(said.starts_with("Revoking"), "{said}");
    let (text, task) = task_posted(&t, 2).await;
    assert!(
        text.contains("Remove") && text.contains(&grant.id),
        "{text}"
    );
    assert_eq!(
        t.app
            .store
            .grant(&grantry::domain::GrantId::from_stored(grant.id.clone()))
            .await
            .unwrap()
            .unwrap()
            .state,
        "revoking"
    );
    assert_eq!(t.click("U222", "grantry.fulfil_done", &task).await, 200); // Bob owns the app
    eventually(10, "revoked", || async {
        let g = t
            .app
            .store
            .grant(&grantry::domain::GrantId::from_stored(grant.id.clone()))
            .await
            .unwrap()?;
        (g.state == "revoked").then_some(())
    })
    .await;
    assert_eq!(t.state_of(&id).await, "revoked");
}

#[tokio::test]
async fn could_not_do_it_fails_the_request_and_a_retry_asks_again() {
    let t = app().await;
    let id = t
        .file_request("erp ap-approver for 1d because audit sample")
        .await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    let (_, task) = task_posted(&t, 1).await;
    assert_eq!(t.click("U333", "grantry.fulfil_failed", &task).await, 200);
    eventually(10, "failed", || async {
        (t.state_of(&id).await == "failed").then_some(())
    })
    .await;
    eventually(10, "requester told", || async {
        t.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["channel"] == "U111"
                && c.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("could not grant it by hand")
        })
    })
    .await;
    // IT retries: the same task is posted again, and Done completes it.
    grantry::flow::lifecycle::retry(&t.app, "cli:carol", &id)
        .await
        .unwrap();
    let (_, again) = task_posted(&t, 2).await;
    assert_eq!(again, task);
    assert_eq!(t.click("U333", "grantry.fulfil_done", &again).await, 200);
    eventually(10, "active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
}
