//! The Okta connector against Prism serving Okta's official Management API description
//! (../shared/oracles/openapi/okta-management-2026.06.3-minimal.prism.yaml): every request must be
//! one the description allows; a small model before Prism keeps group membership.

mod common;

use axum::http::Method;
use common::prism::{rsa_test_key, verify_jwt, Answer, Front, Model, Prism};
use grantry::connectors::{okta::OktaConnector, Change, Connector, ConnectorError, Subject};
use serde_json::{json, Value};

const TOKEN: &str = "00okta_api_token_never_logged";
const GROUP: &str = "00g1engineering";

fn user(id: &str, email: &str) -> Value {
    json!({"id": id, "status": "ACTIVE", "profile": {"login": email, "email": email}})
}

fn rule(method: &Method, path: &str, model: &mut Model) -> Answer {
    let parts: Vec<&str> = path.split('/').collect();
    let body = |v: Value| Answer {
        body: Some(v),
        ..Answer::default()
    };
    match parts.as_slice() {
        ["", "oauth2", "v1", "token"] => Answer {
            direct: Some((
                200,
                json!({"token_type": "Bearer", "expires_in": 3600,
                                       "access_token": "okta-oauth-access-token", "scope": "okta.users.read okta.groups.manage"}),
            )),
            ..Answer::default()
        },
        ["", "api", "v1", "users"] => body(json!([user("00uada", "ada@example.com")])),
        ["", "api", "v1", "users", "00unobody"] => Answer {
            code: Some(404),
            ..Answer::default()
        },
        ["", "api", "v1", "users", id] => body(user(id, "ada@example.com")),
        ["", "api", "v1", "groups"] => body(json!([
            {"id": "00g9other", "profile": {"name": "engineering-leads"}},
            {"id": GROUP, "profile": {"name": "engineering"}}
        ])),
        ["", "api", "v1", "users", uid, "groups"] => {
            let groups: Vec<Value> = model
                .held
                .iter()
                .filter_map(|k| k.strip_prefix(&format!("{uid}@")))
                .map(|g| json!({"id": g, "profile": {"name": g}}))
                .collect();
            body(Value::Array(groups))
        }
        ["", "api", "v1", "groups", gid, "users"] => {
            let users: Vec<Value> = model
                .held
                .iter()
                .filter_map(|k| {
                    k.split_once('@')
                        .filter(|(_, g)| g == gid)
                        .map(|(u, _)| user(u, "x@example.com"))
                })
                .collect();
            body(Value::Array(users))
        }
        ["", "api", "v1", "groups", gid, "users", uid] => {
            let key = format!("{uid}@{gid}");
            if *method == Method::PUT {
                model.held.insert(key);
            } else {
                model.held.remove(&key);
            }
            Answer {
                code: Some(204),
                ..Answer::default()
            }
        }
        _ => Answer::default(),
    }
}

async fn okta() -> (Prism, Front) {
    let prism = Prism::start("okta-management-2026.06.3-minimal.prism.yaml").await;
    let front = Front::start(&prism, rule).await;
    (prism, front)
}

fn connector(front: &Front, auth: &str) -> OktaConnector {
    std::env::set_var("GRANTRY_TEST_OKTA_TOKEN", TOKEN);
    let t: toml::Table = toml::from_str(&format!(
        "org_url = \"{}\"\ntimeout_secs = 5\n{auth}",
        front.url
    ))
    .unwrap();
    OktaConnector::from_settings("okta", &t).unwrap()
}

#[tokio::test]
async fn okta_assigns_and_unassigns_group_members_as_the_api_describes() {
    let (_prism, front) = okta().await;
    let okta = connector(&front, "token_env = \"GRANTRY_TEST_OKTA_TOKEN\"");

    let ada = okta
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(ada.id, "00uada");
    assert_eq!(ada.login.as_deref(), Some("ada@example.com"));
    let search = &front.seen()[0].path;
    assert!(search.starts_with("/api/v1/users?search="), "{search}");
    assert!(
        search.contains("profile.login%20eq%20%22ada%40example.com%22")
            || search.contains("profile.login+eq+%22ada%40example.com%22"),
        "{search}"
    );

    // The group found by its exact name, then PUT.
    assert_eq!(
        okta.grant(&ada, "engineering").await.unwrap(),
        Change::Applied
    );
    assert!(front
        .calls()
        .contains(&("PUT".into(), format!("/api/v1/groups/{GROUP}/users/00uada"))));
    assert!(front.held().contains(&format!("00uada@{GROUP}")));
    // Idempotent: already in the group, no PUT; a group id works as the target too.
    front.clear();
    assert_eq!(
        okta.grant(&ada, GROUP).await.unwrap(),
        Change::AlreadyInPlace
    );
    assert!(front.calls().iter().all(|(m, _)| m == "GET"));

    let members = okta.list_members("engineering").await.unwrap();
    assert_eq!(
        members.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec!["00uada"]
    );
    assert!(front.seen().last().unwrap().path.contains("limit=200"));

    assert_eq!(
        okta.revoke(&ada, "engineering").await.unwrap(),
        Change::Applied
    );
    assert!(front.calls().contains(&(
        "DELETE".into(),
        format!("/api/v1/groups/{GROUP}/users/00uada")
    )));
    assert_eq!(
        okta.revoke(&ada, "engineering").await.unwrap(),
        Change::AlreadyInPlace
    );

    front.assert_conforms();
    for s in front.seen() {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("SSWS {TOKEN}").as_str())
        );
    }
}

#[tokio::test]
async fn okta_honours_rate_limit_headers_and_classifies_failures() {
    let (_prism, front) = okta().await;
    let okta = connector(&front, "token_env = \"GRANTRY_TEST_OKTA_TOKEN\"");
    let ada = okta
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: Some("00uada"),
        })
        .await
        .unwrap();

    // Okta's 429 says when the window resets (epoch seconds), not Retry-After.
    let reset = (chrono::Utc::now().timestamp() + 20).to_string();
    front.fail_next(
        "/groups/",
        429,
        &[
            ("x-rate-limit-limit", "600"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", &reset),
        ],
    );
    match okta.grant(&ada, GROUP).await {
        Err(ConnectorError::Transient {
            retry_after: Some(d),
            ..
        }) => assert!((15..=20).contains(&d.as_secs()), "{d:?}"),
        other => panic!("expected transient with a wait, got {other:?}"),
    }
    // 503, then success.
    front.fail_next("/users/00uada/groups", 503, &[]);
    assert!(matches!(
        okta.grant(&ada, GROUP).await,
        Err(ConnectorError::Transient { .. })
    ));
    assert_eq!(okta.grant(&ada, GROUP).await.unwrap(), Change::Applied);

    // Permanent: a mapped user that does not exist (404), a group that does not exist, a 403.
    match okta
        .resolve_account(&Subject {
            email: "nobody@example.com",
            mapped_id: Some("00unobody"),
        })
        .await
    {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("does not exist"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    match okta.grant(&ada, "no-such-group").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("no group named"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    front.fail_next("/users/00uada/groups", 403, &[]);
    match okta.revoke(&ada, GROUP).await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("okta.groups.manage"), "{message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    front.assert_conforms();
}

#[tokio::test]
async fn okta_oauth_uses_a_signed_client_assertion_and_a_cached_bearer_token() {
    let (_prism, front) = okta().await;
    let (pkcs8, _pkcs1, public) = rsa_test_key();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("okta.pem");
    std::fs::write(&key, pkcs8).unwrap();
    let okta = connector(
        &front,
        &format!(
            "client_id = \"0oaservice\"\nkey_id = \"kid-1\"\nprivate_key_file = {:?}",
            key.display().to_string()
        ),
    );
    let ada = okta
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    okta.grant(&ada, GROUP).await.unwrap();

    let seen = front.seen();
    let tokens: Vec<_> = seen
        .iter()
        .filter(|s| s.path == "/oauth2/v1/token")
        .collect();
    assert_eq!(tokens.len(), 1, "the access token is cached");
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&tokens[0].body).unwrap();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("grant_type"), "client_credentials");
    assert_eq!(get("scope"), "okta.users.read okta.groups.manage");
    let claims = verify_jwt(&get("client_assertion"), &public);
    assert_eq!(claims["iss"], "0oaservice");
    assert_eq!(claims["sub"], "0oaservice");
    assert_eq!(claims["aud"], format!("{}/oauth2/v1/token", front.url));
    for s in seen.iter().filter(|s| s.path != "/oauth2/v1/token") {
        assert_eq!(
            s.authorization.as_deref(),
            Some("Bearer okta-oauth-access-token")
        );
    }
    front.assert_conforms();
}
