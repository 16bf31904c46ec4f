//! The Jira connector against a local server that accepts only the documented Jira Cloud REST v3
//! calls (https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-groups/): exact
//! paths, methods, query parameters, the Authorization header and JSON bodies.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{eventually, spawn_app_with};
use grantry::connectors::{
    jira::JiraConnector, Account, Change, Connector, ConnectorError, Subject,
};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ATATT3xFfGF0-jira-api-token-never-logged";
const ADMIN: &str = "grantry-bot@example.com";
const GROUP: &str = "276f955c-63d7-42c8-9520-92d01dca0625";
const ADA: &str = "5b10ac8d82e05b22cc7d4ef5";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{TOKEN}"))
    )
}

fn connector(server: &MockServer, auth: &str) -> JiraConnector {
    std::env::set_var("GRANTRY_TEST_JIRA_TOKEN", TOKEN);
    let t: toml::Table = toml::from_str(&format!(
        "site_url = \"{}\"\ntimeout_secs = 5\ntoken_env = \"GRANTRY_TEST_JIRA_TOKEN\"\n{auth}",
        server.uri()
    ))
    .unwrap();
    JiraConnector::from_settings("jira", &t).unwrap()
}

fn ada() -> Account {
    Account {
        id: ADA.into(),
        login: Some("ada@example.com".into()),
    }
}

#[tokio::test]
async fn jira_grants_regrants_revokes_and_lists_group_members_as_documented() {
    let server = MockServer::start().await;
    let auth = basic();

    // User search: the exact email wins over look-alikes and app accounts.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .and(query_param("query", "ada@example.com"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"accountId": "5b10a2844c20165700ede21g", "accountType": "atlassian",
             "emailAddress": "ada@example.com.au", "active": true},
            {"accountId": "557058:app", "accountType": "app", "active": true},
            {"accountId": ADA, "accountType": "atlassian", "emailAddress": "Ada@Example.com",
             "displayName": "Ada Lovelace", "active": true}
        ])))
        .expect(1)
        .mount(&server)
        .await;

    // Add to group: created once, then Jira's 400 "already a member".
    let add = || {
        Mock::given(method("POST"))
            .and(path("/rest/api/3/group/user"))
            .and(query_param("groupId", GROUP))
            .and(header("authorization", auth.as_str()))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({"accountId": ADA})))
    };
    add()
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "name": "jira-administrators", "groupId": GROUP, "self": "https://x/rest/api/3/group?groupId=1"
        })))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    add()
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": ["Cannot add user. User is already a member of 'jira-administrators'"],
            "errors": {}
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Remove from group: done once, then "not a member".
    let remove = || {
        Mock::given(method("DELETE"))
            .and(path("/rest/api/3/group/user"))
            .and(query_param("groupId", GROUP))
            .and(query_param("accountId", ADA))
            .and(header("authorization", auth.as_str()))
    };
    remove()
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    remove()
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": ["Cannot remove user 5b10ac8d82e05b22cc7d4ef5 from group jira-administrators: the user is not a member of the group"],
            "errors": {}
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Members, two pages.
    for (start, last, ids) in [
        ("0", false, vec![ADA, "5b10a0effa615349cb016cd8"]),
        ("2", true, vec!["5b109f2e9729b51b54dc274d"]),
    ] {
        let values: Vec<_> = ids
            .iter()
            .map(|id| json!({"accountId": id, "accountType": "atlassian", "active": true}))
            .collect();
        Mock::given(method("GET"))
            .and(path("/rest/api/3/group/member"))
            .and(query_param("groupId", GROUP))
            .and(query_param("startAt", start))
            .and(query_param("maxResults", "50"))
            .and(query_param("includeInactiveUsers", "false"))
            .and(header("authorization", auth.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "isLast": last, "maxResults": 50, "startAt": start.parse::<u32>().unwrap(),
                "total": 3, "values": values
            })))
            .expect(1)
            .mount(&server)
            .await;
    }

    // A group named instead of its id: looked up once, then cached.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/group/bulk"))
        .and(query_param("groupName", "jira-administrators"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "isLast": true, "maxResults": 1, "startAt": 0, "total": 1,
            "values": [{"groupId": GROUP, "name": "jira-administrators"}]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let jira = connector(&server, &format!("email = \"{ADMIN}\""));
    let account = jira
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(account.id, ADA);

    assert_eq!(jira.grant(&account, GROUP).await.unwrap(), Change::Applied);
    assert_eq!(
        jira.grant(&account, "name:jira-administrators")
            .await
            .unwrap(),
        Change::AlreadyInPlace
    );
    let members = jira.list_members("name:jira-administrators").await.unwrap();
    assert_eq!(
        members.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec![ADA, "5b10a0effa615349cb016cd8", "5b109f2e9729b51b54dc274d"]
    );
    assert_eq!(jira.revoke(&ada(), GROUP).await.unwrap(), Change::Applied);
    assert_eq!(
        jira.revoke(&ada(), GROUP).await.unwrap(),
        Change::AlreadyInPlace
    );
    // Every expectation (exact counts) is checked when the server drops; no unmatched call.
    assert!(server.received_requests().await.unwrap().iter().all(|r| r
        .headers
        .get("authorization")
        .unwrap()
        == auth.as_str()));
}

#[tokio::test]
async fn jira_rate_limits_are_transient_and_permission_errors_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/group/user"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "17")
                .insert_header("x-ratelimit-reason", "jira-quota-tenant-based")
                .set_body_string(""),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/group/user"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "errorMessages": ["You do not have permission to add users to groups."], "errors": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/rest/api/3/group/user"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "errorMessages": ["Specified group does not exist."], "errors": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            // Privacy settings hide the email: no match possible.
            {"accountId": ADA, "accountType": "atlassian", "displayName": "Ada", "active": true}
        ])))
        .mount(&server)
        .await;
    let jira = connector(&server, &format!("email = \"{ADMIN}\""));

    match jira.grant(&ada(), GROUP).await {
        Err(ConnectorError::Transient { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(17)))
        }
        other => panic!("expected transient, got {other:?}"),
    }
    match jira.grant(&ada(), GROUP).await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("403"), "{message}");
            assert!(message.contains("site-admin group"), "{message}");
            assert!(message.contains("POST /rest/api/3/group/user"), "{message}");
            assert!(!message.contains(TOKEN) && !message.contains(&basic()[6..]));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    // A missing group is not mistaken for "not a member".
    match jira.revoke(&ada(), GROUP).await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(
                message.contains("Specified group does not exist"),
                "{message}"
            )
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    match jira
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
    {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("accounts.jira"), "{message}");
            assert!(message.contains("hides the email"), "{message}");
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn jira_oauth_sends_the_bearer_token_and_checks_mapped_accounts() {
    let server = MockServer::start().await;
    let bearer = format!("Bearer {TOKEN}");
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user"))
        .and(query_param("accountId", ADA))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "accountId": ADA, "accountType": "atlassian", "emailAddress": "ada@example.com", "active": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user"))
        .and(query_param("accountId", "gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "errorMessages": ["User does not exist"], "errors": {}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/group/user"))
        .and(query_param("groupId", GROUP))
        .and(header("authorization", bearer.as_str()))
        .and(body_json(json!({"accountId": ADA})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"groupId": GROUP})))
        .expect(1)
        .mount(&server)
        .await;
    // A 400 worded otherwise than "already a member": the user's groups decide.
    Mock::given(method("POST"))
        .and(path("/rest/api/3/group/user"))
        .and(query_param("groupId", "other-group"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": ["Member exists."], "errors": {}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/groups"))
        .and(query_param("accountId", ADA))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"groupId": "other-group", "name": "jira-users", "self": "https://x/rest/api/3/group?groupId=other-group"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let jira = connector(&server, "");
    let a = jira
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: Some(ADA),
        })
        .await
        .unwrap();
    assert_eq!(a, ada());
    assert_eq!(jira.grant(&a, GROUP).await.unwrap(), Change::Applied);
    assert_eq!(
        jira.grant(&a, "other-group").await.unwrap(),
        Change::AlreadyInPlace
    );
    match jira
        .resolve_account(&Subject {
            email: "bob@example.com",
            mapped_id: Some("gone"),
        })
        .await
    {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("fix the mapping"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

/// Through the real app: an approved request adds the requester to the Jira group, and revoking the
/// grant removes them, with the calls Jira documents.
#[tokio::test]
async fn an_approved_request_joins_the_jira_group_and_revoking_leaves_it() {
    let jira = MockServer::start().await;
    let auth = basic();
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .and(query_param("query", "alice@example.com"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"accountId": "712020:alice", "accountType": "atlassian",
             "emailAddress": "alice@example.com", "active": true}
        ])))
        .mount(&jira)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/group/user"))
        .and(query_param("groupId", GROUP))
        .and(header("authorization", auth.as_str()))
        .and(body_json(json!({"accountId": "712020:alice"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"groupId": GROUP})))
        .expect(1)
        .mount(&jira)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/rest/api/3/group/user"))
        .and(query_param("groupId", GROUP))
        .and(query_param("accountId", "712020:alice"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&jira)
        .await;

    std::env::set_var("GRANTRY_TEST_JIRA_E2E_TOKEN", TOKEN);
    let site = jira.uri();
    let t = spawn_app_with(|c| {
        c.connectors.insert(
            "jira".into(),
            toml::from_str(&format!(
                "type = \"jira\"\nsite_url = \"{site}\"\nemail = \"{ADMIN}\"\ntoken_env = \"GRANTRY_TEST_JIRA_E2E_TOKEN\"\ntimeout_secs = 3\n"
            ))
            .unwrap(),
        );
        std::fs::write(
            c.base_dir.join("catalog.toml"),
            format!(
                "[[apps]]\nid = \"jira\"\nname = \"Jira\"\nconnector = \"jira\"\nowners = [\"bob@example.com\"]\n\
                 [[apps.entitlements]]\nid = \"admins\"\ntarget = \"{GROUP}\"\nmax_duration = \"1d\"\n"
            ),
        )
        .unwrap();
    })
    .await;

    let id = t
        .file_request("jira admins for 4h because incident INC-7")
        .await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    let g = eventually(15, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    eventually(10, "request active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;

    let (_, b) = t
        .command("U111", &format!("revoke {} because done", g.id), "v1")
        .await;
    assert!(
        b["text"]
            .as_str()
            .unwrap()
            .starts_with("Revoking jira/admins"),
        "{b}"
    );
    eventually(15, "request revoked", || async {
        (t.state_of(&id).await == "revoked").then_some(())
    })
    .await;
    // One POST and one DELETE exactly (checked as the server drops), each with the documented
    // query, body and Basic credentials.
}
