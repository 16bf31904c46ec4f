//! Bundles: a catalog role bundling entitlements of several apps is requested, decided and
//! expired as one request, with one grant per entitlement (sharing one end), decided by the
//! members' policies (one denial denies the bundle, naming the member), and extended as one.

mod common;

use common::*;
use grantry::domain::RequestId;

const EXTRA_CATALOG: &str = r#"

[[apps]]
id = "wiki"
name = "Wiki"
connector = "scim"
owners = ["carol@example.com"]

  [[apps.entitlements]]
  id = "editors"
  target = "wiki-editors"
  risk = "medium"
  max_duration = "2w"

  [[apps.entitlements]]
  id = "readers"
  target = "wiki-readers"
  risk = "low"
  max_duration = "4w"

[[bundles]]
id = "new-engineer"
name = "New engineer kit"
owners = ["carol@example.com"]
entitlements = ["github/readers", "wiki/editors"]
max_duration = "1w"

[[bundles]]
id = "reading-kit"
owners = ["bob@example.com"]
entitlements = ["github/readers", "wiki/readers"]

[[bundles]]
id = "incident-kit"
owners = ["bob@example.com"]
entitlements = ["github/platform-admins", "wiki/readers"]
max_duration = "8h"
"#;

fn with_bundles(c: &mut grantry::config::Config) {
    let dir = c.base_dir.join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["baseline.cedar", "company.cedar"] {
        std::fs::copy(
            manifest_dir().join("examples/policies").join(f),
            dir.join(f),
        )
        .unwrap();
    }
    let mut people = std::fs::read_to_string(c.base_dir.join("people.toml")).unwrap();
    people.push_str("\n[[people]]\nemail = \"cody@example.com\"\nname = \"Cody Contractor\"\nslack_id = \"U777\"\ntitle = \"Contractor\"\ndepartment = \"Platform\"\n");
    std::fs::write(c.base_dir.join("people.toml"), people).unwrap();
    let mut catalog = std::fs::read_to_string(c.base_dir.join("catalog.toml")).unwrap();
    catalog.push_str(EXTRA_CATALOG);
    std::fs::write(c.base_dir.join("catalog.toml"), catalog).unwrap();
}

fn request_id(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("R-"))
        .unwrap()
        .trim_end_matches([',', '.', ':', ')'])
        .to_string()
}

#[tokio::test]
async fn a_bundle_is_approved_once_granted_per_entitlement_and_expires_as_one() {
    let t = spawn_app_with(with_bundles).await;
    let alice = t.scim.create_user("alice@example.com").await;
    let readers = t.scim.create_group("readers").await;
    let editors = t.scim.create_group("wiki-editors").await;

    let (status, body) = t
        .command(
            "U111",
            "bundle new-engineer for 2d because joining the platform team",
            "b1",
        )
        .await;
    assert_eq!(status, 200);
    let text = body["text"].as_str().unwrap();
    // github/readers alone would be auto-approved for Platform; wiki/editors needs a human, so
    // the bundle goes to its owner, once.
    assert!(text.contains("Carol Owner"), "{text}");
    let id = request_id(text);

    let card = eventually(10, "one card to Carol", || async {
        t.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "U333" && c.body.to_string().contains(&id))
    })
    .await;
    let shown = card.body.to_string();
    assert!(
        shown.contains("github/readers, wiki/editors"),
        "the card lists the bundle's members: {shown}"
    );
    assert_eq!(
        t.slack
            .calls_of("chat.postMessage")
            .iter()
            .filter(|c| c.body.to_string().contains("grantry.approve"))
            .count(),
        1,
        "one approval card for the whole bundle"
    );

    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    eventually(15, "both memberships", || async {
        (t.scim.members(&readers).await.contains(&alice)
            && t.scim.members(&editors).await.contains(&alice))
        .then_some(())
    })
    .await;
    eventually(10, "request active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
    let grants = t.app.store.grants_for_request(&id).await.unwrap();
    let mut items: Vec<String> = grants
        .iter()
        .map(|g| format!("{}/{}", g.app, g.entitlement))
        .collect();
    items.sort();
    assert_eq!(items, ["github/readers", "wiki/editors"]);
    let ends: Vec<i64> = grants.iter().map(|g| g.expires_at.unwrap()).collect();
    assert_eq!(ends[0], ends[1], "one end for the whole bundle");
    let first = grants.iter().map(|g| g.granted_at).min().unwrap();
    assert_eq!(ends[0] - first, 2 * 86_400_000);
    for g in &grants {
        assert_eq!(g.approved_by.as_deref(), Some("carol@example.com"));
        assert_eq!(g.state, "active");
    }
    // The audit ties each grant to the bundle request and its approver.
    let events = t.app.store.audit_for_request(&id).await.unwrap();
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.action == "grant.created")
        .collect();
    assert_eq!(created.len(), 2);
    assert!(created
        .iter()
        .all(|e| e.detail.contains("\"bundle\":\"bundle/new-engineer\"")));

    // Two days later both are removed, together, and the holder hears once.
    t.clock.advance_ms(2 * 86_400_000 + 1_000);
    eventually(20, "both memberships removed", || async {
        (!t.scim.members(&readers).await.contains(&alice)
            && !t.scim.members(&editors).await.contains(&alice))
        .then_some(())
    })
    .await;
    eventually(10, "request expired", || async {
        (t.state_of(&id).await == "expired").then_some(())
    })
    .await;
    let grants = t.app.store.grants_for_request(&id).await.unwrap();
    assert!(grants.iter().all(|g| g.state == "revoked"), "{grants:?}");
    let told = eventually(10, "expiry DM", || async {
        let dms: Vec<_> = t
            .slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["channel"] == "U111" && c.body.to_string().contains("expired"))
            .collect();
        (!dms.is_empty()).then_some(dms)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(told.len(), 1, "one message for the whole bundle");
    assert!(told[0].body.to_string().contains("new-engineer"));
}

#[tokio::test]
async fn a_bundle_of_routine_entitlements_is_auto_approved_and_extended_as_one() {
    let t = spawn_app_with(with_bundles).await;
    let alice = t.scim.create_user("alice@example.com").await;
    let readers = t.scim.create_group("readers").await;
    let wiki = t.scim.create_group("wiki-readers").await;

    let (_, body) = t
        .command(
            "U111",
            "bundle reading-kit for 1d because onboarding reading",
            "b2",
        )
        .await;
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("approved automatically") && text.contains("policy platform-readers"),
        "{text}"
    );
    let id = request_id(text);
    eventually(15, "both memberships", || async {
        (t.scim.members(&readers).await.contains(&alice)
            && t.scim.members(&wiki).await.contains(&alice))
        .then_some(())
    })
    .await;
    eventually(10, "request active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
    let grants = t.app.store.grants_for_request(&id).await.unwrap();
    assert_eq!(grants.len(), 2);
    assert!(grants
        .iter()
        .all(|g| g.approved_by.as_deref() == Some("policy:platform-readers")));
    let end = grants[0].expires_at.unwrap();

    // Extending one of its grants extends the bundle: every grant, through policy again.
    let (_, body) = t
        .command("U111", &format!("extend {} 1d", grants[1].id), "b3")
        .await;
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("approved automatically"), "{text}");
    let ext = request_id(text);
    let req = t
        .app
        .store
        .request(&RequestId::from_stored(ext.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (req.app.as_str(), req.entitlement.as_str()),
        ("bundle", "reading-kit")
    );
    eventually(10, "both grants extended", || async {
        let g = t.app.store.grants_for_request(&id).await.unwrap();
        g.iter()
            .all(|g| g.expires_at == Some(end + 86_400_000))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bundle_is_denied_when_policy_denies_a_member_and_nothing_is_granted() {
    let t = spawn_app_with(with_bundles).await;
    t.scim.create_user("cody@example.com").await;
    let admins = t.scim.create_group("platform-admins").await;

    let (_, body) = t
        .command(
            "U777",
            "bundle incident-kit for 2h because on-call cover",
            "b4",
        )
        .await;
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("denied")
            && text.contains("github/platform-admins: contractors cannot hold")
            && text.contains("(policy contractors-no-prod)"),
        "{text}"
    );
    let id = request_id(text);
    assert_eq!(t.state_of(&id).await, "denied");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(t
        .app
        .store
        .grants_for_request(&id)
        .await
        .unwrap()
        .is_empty());
    assert!(t.scim.members(&admins).await.is_empty());
    assert!(
        t.slack
            .calls_of("chat.postMessage")
            .iter()
            .all(|c| !c.body.to_string().contains("grantry.approve")),
        "no approver asked"
    );
}
