//! The SCIM connector's per-app profiles against a local SCIM server that accepts only what each
//! app documents: the user filter, how the group is found (filter, or listing page by page), the
//! group read, and the exact PATCH bodies for adding and removing a member. The server keeps the
//! group's members, so re-grants and re-revokes are checked against real state.
//! (The generic profile also runs against the real scim2-server in tests/walking_skeleton.rs.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grantry::connectors::{scim::ScimConnector, Change, Connector, ConnectorError, Subject};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "scim-profile-token-never-logged";
const GID: &str = "a1b2c3d4-group";
const ADA: &str = "2819c223-7f76-453a-919d-413861904646";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Clone, Default)]
struct Members(Arc<Mutex<Vec<String>>>);

impl Members {
    fn group(&self) -> Value {
        let ms: Vec<Value> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|v| json!({"value": v, "type": "User"}))
            .collect();
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": GID,
               "displayName": "Engineering", "members": ms})
    }
}

struct Read(Members);
impl Respond for Read {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(self.0.group())
    }
}

struct Patch(Members, bool);
impl Respond for Patch {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        {
            let mut m = (self.0).0.lock().unwrap();
            m.retain(|v| v != ADA);
            if self.1 {
                m.push(ADA.into());
            }
        }
        ResponseTemplate::new(200).set_body_json(self.0.group())
    }
}

fn list(resources: Value) -> Value {
    let n = resources.as_array().map_or(0, Vec::len);
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
           "totalResults": n, "startIndex": 1, "itemsPerPage": n, "Resources": resources})
}

fn user() -> Value {
    json!({"id": ADA, "userName": "ada@example.com", "emails": [{"value": "ada@example.com", "primary": true}]})
}

enum Lookup {
    Filter { exclude_members: bool },
    List,
}

struct Case {
    profile: &'static str,
    /// Filters tried in order, the last one finds the user.
    user_filters: &'static [&'static str],
    lookup: Lookup,
    members_query: Option<&'static str>,
    add: Value,
    remove: Value,
}

fn connector(server: &MockServer, profile: &str) -> ScimConnector {
    std::env::set_var("GRANTRY_TEST_SCIM_PROFILE_TOKEN", TOKEN);
    let t: toml::Table = toml::from_str(&format!(
        "base_url = \"{}/scim/v2\"\ntoken_env = \"GRANTRY_TEST_SCIM_PROFILE_TOKEN\"\ntimeout_secs = 5\nprofile = \"{profile}\"",
        server.uri()
    ))
    .unwrap();
    ScimConnector::from_settings("app", &t).unwrap()
}

fn authorised() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", format!("Bearer {TOKEN}").as_str())
}

async fn run(case: Case) {
    let server = MockServer::start().await;
    let members = Members::default();

    for (i, f) in case.user_filters.iter().enumerate() {
        let last = i + 1 == case.user_filters.len();
        Mock::given(method("GET"))
            .and(path("/scim/v2/Users"))
            .and(query_param("filter", format!("{f} \"ada@example.com\"")))
            .and(authorised())
            .respond_with(ResponseTemplate::new(200).set_body_json(list(if last {
                json!([user()])
            } else {
                json!([])
            })))
            .expect(1)
            .mount(&server)
            .await;
    }
    match case.lookup {
        Lookup::Filter { exclude_members } => {
            let m = Mock::given(method("GET"))
                .and(path("/scim/v2/Groups"))
                .and(query_param("filter", "displayName eq \"Engineering\""))
                .and(authorised());
            let m = if exclude_members {
                m.and(query_param("excludedAttributes", "members"))
            } else {
                m.and(query_param_is_missing("excludedAttributes"))
            };
            m.respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(list(json!([{"id": GID, "displayName": "Engineering"}]))),
            )
            .expect(1) // cached after the first lookup
            .mount(&server)
            .await;
        }
        Lookup::List => {
            // Three groups over two pages of two; the one sought is on the second.
            for (start, groups) in [
                (
                    "1",
                    json!([{"id": "g-1", "displayName": "Sales"}, {"id": "g-2", "displayName": "Engineering Leads"}]),
                ),
                ("3", json!([{"id": GID, "displayName": "Engineering"}])),
            ] {
                Mock::given(method("GET"))
                    .and(path("/scim/v2/Groups"))
                    .and(query_param("startIndex", start))
                    .and(query_param("count", "100"))
                    .and(query_param_is_missing("filter"))
                    .and(authorised())
                    .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": 3, "startIndex": start.parse::<u32>().unwrap(),
                        "itemsPerPage": groups.as_array().unwrap().len(), "Resources": groups
                    })))
                    .expect(1)
                    .mount(&server)
                    .await;
            }
        }
    }
    let read = Mock::given(method("GET"))
        .and(path(format!("/scim/v2/Groups/{GID}")))
        .and(authorised());
    let read = match case.members_query {
        Some(q) => read.and(query_param("attributes", q)),
        None => read.and(query_param_is_missing("attributes")),
    };
    read.respond_with(Read(members.clone()))
        .expect(5)
        .mount(&server)
        .await;
    for (body, add) in [(case.add.clone(), true), (case.remove.clone(), false)] {
        Mock::given(method("PATCH"))
            .and(path(format!("/scim/v2/Groups/{GID}")))
            .and(authorised())
            .and(header("content-type", "application/scim+json"))
            .and(body_json(
                json!({"schemas": [PATCH_OP], "Operations": [body]}),
            ))
            .respond_with(Patch(members.clone(), add))
            .expect(1)
            .mount(&server)
            .await;
    }

    let c = connector(&server, case.profile);
    let ada = c
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(ada.id, ADA);
    assert_eq!(c.grant(&ada, "Engineering").await.unwrap(), Change::Applied);
    assert_eq!(members.0.lock().unwrap().clone(), vec![ADA.to_string()]);
    assert_eq!(
        c.grant(&ada, "Engineering").await.unwrap(),
        Change::AlreadyInPlace
    );
    let listed = c.list_members("Engineering").await.unwrap();
    assert_eq!(
        listed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec![ADA]
    );
    assert_eq!(
        c.revoke(&ada, "Engineering").await.unwrap(),
        Change::Applied
    );
    assert!(members.0.lock().unwrap().is_empty());
    assert_eq!(
        c.revoke(&ada, "Engineering").await.unwrap(),
        Change::AlreadyInPlace
    );
    // The expectations (exact counts: one PATCH each way, five group reads) are verified as the
    // server drops; an unexpected request would have failed a call above with a 404.
}

fn value_array(op: &str) -> Value {
    json!({"op": op, "path": "members", "value": [{"value": ADA}]})
}

#[tokio::test]
async fn scim_generic_profile_speaks_rfc_7644() {
    run(Case {
        profile: "generic",
        user_filters: &["userName eq", "emails.value eq"],
        lookup: Lookup::Filter {
            exclude_members: false,
        },
        members_query: Some("members"),
        add: value_array("add"),
        remove: json!({"op": "remove", "path": format!("members[value eq \"{ADA}\"]")}),
    })
    .await;
}

#[tokio::test]
async fn scim_notion_profile_finds_by_user_name_and_removes_with_a_value_array() {
    run(Case {
        profile: "notion",
        user_filters: &["userName eq"],
        lookup: Lookup::Filter {
            exclude_members: false,
        },
        members_query: None,
        add: value_array("add"),
        remove: value_array("remove"),
    })
    .await;
}

#[tokio::test]
async fn scim_atlassian_profile_filters_user_name_only_and_excludes_members_in_lookups() {
    run(Case {
        profile: "atlassian",
        user_filters: &["userName eq"],
        lookup: Lookup::Filter {
            exclude_members: true,
        },
        members_query: None,
        add: value_array("add"),
        remove: json!({"op": "remove", "path": format!("members[value eq \"{ADA}\"]")}),
    })
    .await;
}

#[tokio::test]
async fn scim_salesforce_profile_lists_groups_and_sends_members_objects() {
    run(Case {
        profile: "salesforce",
        user_filters: &["userName eq"],
        lookup: Lookup::List,
        members_query: None,
        add: json!({"op": "add", "path": "members", "value": {"members": [{"value": ADA}]}}),
        remove: json!({"op": "remove", "path": "members", "value": {"members": [{"value": ADA}]}}),
    })
    .await;
}

#[tokio::test]
async fn scim_slack_profile_finds_users_by_email() {
    run(Case {
        profile: "slack",
        user_filters: &["email eq"],
        lookup: Lookup::Filter {
            exclude_members: false,
        },
        members_query: None,
        add: value_array("add"),
        remove: value_array("remove"),
    })
    .await;
}

#[tokio::test]
async fn scim_profiles_classify_rate_limits_and_refusals() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/scim/v2/Groups"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(list(json!([{"id": GID, "displayName": "Engineering"}]))),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/scim/v2/Groups/{GID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(Members::default().group()))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/scim/v2/Groups/{GID}")))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "12")
                .set_body_json(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                      "status": "429", "detail": "rate limited"}),
                ),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/scim/v2/Users"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "403", "detail": "token revoked"
        })))
        .mount(&server)
        .await;
    let c = connector(&server, "notion");
    let ada = grantry::connectors::Account {
        id: ADA.into(),
        login: None,
    };
    match c.grant(&ada, "Engineering").await {
        Err(ConnectorError::Transient { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(12)))
        }
        other => panic!("expected transient, got {other:?}"),
    }
    match c
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
    {
        Err(ConnectorError::Permanent { message }) => {
            assert!(
                message.contains("403") && message.contains("token revoked"),
                "{message}"
            );
            assert!(message.contains("check the connector's token"), "{message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("expected permanent, got {other:?}"),
    }

    // An unknown profile is refused at startup, naming the known ones.
    let t: toml::Table =
        toml::from_str("base_url = \"https://x\"\ntoken_env = \"GRANTRY_TEST_SCIM_PROFILE_TOKEN\"\nprofile = \"okta\"").unwrap();
    let err = ScimConnector::from_settings("app", &t).err().unwrap();
    assert!(err.contains("unknown SCIM profile \"okta\""), "{err}");
    assert!(
        err.contains("notion, atlassian, salesforce, slack"),
        "{err}"
    );
}
