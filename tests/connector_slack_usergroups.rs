//! The Slack user groups connector against the Slack stand-in, which answers with Slack's
//! documented example responses (../shared/oracles/slack/web-api-responses/) over its own state.

mod common;

use std::time::Duration;

use common::slack::Fault;
use common::SlackStandIn;
use grantry::connectors::{
    slack_usergroups::SlackUserGroupsConnector, Change, Connector, ConnectorError, Subject,
};
use serde_json::json;

const TOKEN: &str = "xoxp-usergroups-token-never-logged";
const GROUP: &str = "S0615G0KT"; // marketing-team in Slack's usergroups.list example

fn connector(slack: &SlackStandIn) -> SlackUserGroupsConnector {
    std::env::set_var("GRANTRY_TEST_SLACK_UG_TOKEN", TOKEN);
    let t: toml::Table = toml::from_str(&format!(
        "token_env = \"GRANTRY_TEST_SLACK_UG_TOKEN\"\napi_url = \"{}\"\ntimeout_secs = 5",
        slack.base_url()
    ))
    .unwrap();
    SlackUserGroupsConnector::from_settings("slack-groups", &t).unwrap()
}

#[tokio::test]
async fn slack_user_group_membership_is_read_modified_and_written_back() {
    let slack = SlackStandIn::start().await;
    slack.set_usergroup_users(GROUP, &["U060R4BJ4"]);
    let c = connector(&slack);

    // users.lookupByEmail: Slack's example user.
    let me = c
        .resolve_account(&Subject {
            email: "spengler@ghostbusters.example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(me.id, "W012A3CDE");
    assert_eq!(
        slack.calls_of("users.lookupByEmail")[0].body["email"],
        "spengler@ghostbusters.example.com"
    );

    // By handle: the group is found in usergroups.list, the others in it are kept.
    assert_eq!(
        c.grant(&me, "@marketing-team").await.unwrap(),
        Change::Applied
    );
    assert_eq!(slack.usergroup_users(GROUP), vec!["U060R4BJ4", "W012A3CDE"]);
    let update = slack.calls_of("usergroups.users.update").pop().unwrap();
    assert_eq!(
        update.body,
        json!({"usergroup": GROUP, "users": "U060R4BJ4,W012A3CDE"})
    );
    assert_eq!(
        update.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        c.grant(&me, "marketing-team").await.unwrap(),
        Change::AlreadyInPlace
    );
    assert_eq!(slack.calls_of("usergroups.users.update").len(), 1);

    let members = c.list_members(GROUP).await.unwrap();
    assert_eq!(members.len(), 2);

    // Someone else adds a member out of band: revoking keeps them (a fresh read before writing).
    slack.set_usergroup_users(GROUP, &["U060R4BJ4", "W012A3CDE", "U0NEW"]);
    assert_eq!(c.revoke(&me, GROUP).await.unwrap(), Change::Applied);
    assert_eq!(slack.usergroup_users(GROUP), vec!["U060R4BJ4", "U0NEW"]);
    assert_eq!(c.revoke(&me, GROUP).await.unwrap(), Change::AlreadyInPlace);

    // Slack refuses empty groups: revoking the last member says so and changes nothing.
    slack.set_usergroup_users(GROUP, &["W012A3CDE"]);
    match c.revoke(&me, GROUP).await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("last member"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    assert_eq!(slack.usergroup_users(GROUP), vec!["W012A3CDE"]);
}

#[tokio::test]
async fn slack_user_groups_classify_rate_limits_and_errors() {
    let slack = SlackStandIn::start().await;
    slack.set_usergroup_users(GROUP, &["U060R4BJ4"]);
    let c = connector(&slack);
    let me = grantry::connectors::Account {
        id: "W012A3CDE".into(),
        login: None,
    };

    slack.fail_next(Fault {
        method: "usergroups.users.list".into(),
        status: 429,
        retry_after: Some(9),
        body: json!({"ok": false, "error": "ratelimited"}),
    });
    assert!(matches!(
        c.grant(&me, GROUP).await,
        Err(ConnectorError::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(9)
    ));
    slack.fail_next(Fault {
        method: "usergroups.users.update".into(),
        status: 503,
        retry_after: None,
        body: json!({}),
    });
    assert!(matches!(
        c.grant(&me, GROUP).await,
        Err(ConnectorError::Transient { .. })
    ));
    assert_eq!(c.grant(&me, GROUP).await.unwrap(), Change::Applied);

    slack.fail_next(Fault {
        method: "users.lookupByEmail".into(),
        status: 200,
        retry_after: None,
        body: json!({"ok": false, "error": "users_not_found"}),
    });
    match c
        .resolve_account(&Subject {
            email: "nobody@example.com",
            mapped_id: None,
        })
        .await
    {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("not in this workspace"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    slack.fail_next(Fault {
        method: "usergroups.users.list".into(),
        status: 200,
        retry_after: None,
        body: json!({"ok": false, "error": "missing_scope"}),
    });
    match c.revoke(&me, GROUP).await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("usergroups:write"), "{message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    match c.grant(&me, "no-such-handle").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("no user group"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}
