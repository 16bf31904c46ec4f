//! Cedar policies end to end: a low-risk entitlement auto-approved for the right department (no
//! approver noise, the grant cites the policy), a contractor denied with the policy's reason, a
//! separation-of-duties conflict refused, and `grantry policy test` over the shipped cases.

mod common;

use common::*;

fn with_policies(c: &mut grantry::config::Config) {
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
    let catalog = std::fs::read_to_string(c.base_dir.join("catalog.toml")).unwrap().replace(
        "  max_duration = \"8h\"\n  default_duration = \"4h\"",
        "  max_duration = \"8h\"\n  default_duration = \"4h\"\n  conflicts = [\"github/readers\"]",
    );
    std::fs::write(c.base_dir.join("catalog.toml"), catalog).unwrap();
}

#[tokio::test]
async fn policies_auto_approve_deny_with_reasons_and_refuse_conflicts() {
    let t = spawn_app_with(with_policies).await;
    t.scim.create_user("alice@example.com").await;
    let readers = t.scim.create_group("readers").await;

    // Low-risk, Platform department: granted with no human, citing the policy.
    let (_, b) = t
        .command(
            "U111",
            "github readers for 1d because reading the deploy code",
            "p1",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(
        text.contains("approved automatically") && text.contains("policy platform-readers"),
        "{text}"
    );
    let id = text.split_whitespace().nth(2).unwrap().to_string();
    eventually(15, "membership", || async {
        (!t.scim.members(&readers).await.is_empty()).then_some(())
    })
    .await;
    let g = eventually(5, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    assert_eq!(g.approved_by.as_deref(), Some("policy:platform-readers"));
    assert!(
        t.slack
            .calls_of("chat.postMessage")
            .iter()
            .all(|c| !c.body["blocks"].is_array()),
        "no approval cards"
    );
    let actions: Vec<String> = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        &actions[..2],
        ["request.submitted", "request.auto_approved"]
    );

    // Holding readers, platform-admins would combine conflicting entitlements.
    let (_, b) = t
        .command(
            "U111",
            "github platform-admins for 4h because incident INC-42",
            "p2",
        )
        .await;
    assert!(
        b["text"]
            .as_str()
            .unwrap()
            .contains("(policy separation-of-duties)"),
        "{b}"
    );

    // A contractor may not even ask for high-risk access.
    let (_, b) = t
        .command(
            "U777",
            "github platform-admins for 4h because incident INC-42",
            "p3",
        )
        .await;
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("denied: contractors cannot hold high-risk production access (policy contractors-no-prod)"), "{text}");
}

#[test]
fn policy_test_passes_the_shipped_cases_and_fails_a_wrong_one() {
    let bin = env!("CARGO_BIN_EXE_grantry");
    let config = manifest_dir().join("examples/grantry.toml");
    let ok = std::process::Command::new(bin)
        .args(["--config", config.to_str().unwrap(), "policy", "test"])
        .arg(manifest_dir().join("examples/policies/cases.toml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[case]]\nname = \"wrong\"\nsubject = \"alice@example.com\"\napp = \"github\"\nentitlement = \"platform-admins\"\nduration = \"4h\"\nexpect = \"auto_approve\"\n").unwrap();
    let out = std::process::Command::new(bin)
        .args(["--config", config.to_str().unwrap(), "policy", "test"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

/// The Cedar `approve` action: a policy narrows who may approve. Carol (Security) may not approve
/// high-risk access: her click is refused with the policy's reason, audited, and changes nothing;
/// Bob's approval goes through.
#[tokio::test]
async fn an_approve_policy_decides_who_may_approve() {
    let t = spawn_app_with(|c| {
        let dir = c.base_dir.join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            manifest_dir().join("examples/policies/baseline.cedar"),
            dir.join("baseline.cedar"),
        )
        .unwrap();
        std::fs::write(
            dir.join("approvers.cedar"),
            "@id(\"security-not-for-high-risk\")\n@reason(\"Security approvers do not approve high-risk access\")\n\
             forbid(principal, action == Grantry::Action::\"approve\", resource)\n\
             when { principal.department == \"Security\" && resource.risk_level >= 3 };\n",
        )
        .unwrap();
    })
    .await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;
    let id = t
        .file_request("github platform-admins for 2h because incident INC-5")
        .await;

    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    eventually(10, "Carol told why", || async {
        t.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .chain(t.slack.calls_of("chat.postMessage"))
            .find(|c| c.body["user"] == "U333" || c.body["channel"] == "U333")
            .filter(|c| c.body.to_string().contains("security-not-for-high-risk"))
    })
    .await;
    assert_eq!(t.state_of(&id).await, "pending_approval");
    let refused = t
        .app
        .store
        .audit_for_request(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "approval.refused")
        .expect("the refusal is audited");
    assert!(
        refused.detail.contains("policy_forbids_approval"),
        "{}",
        refused.detail
    );

    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "membership after Bob's approval", || async {
        t.scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
}
