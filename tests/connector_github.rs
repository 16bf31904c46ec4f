//! The GitHub connector against Prism serving GitHub's official OpenAPI description
//! (../shared/oracles/openapi/api.github.com.octokit-23.0.2.json): every request grantry sends must
//! be one the description allows; a small model before Prism keeps who is on which team.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::prism::{rsa_test_key, verify_jwt, Answer, Front, Model, Prism};
use grantry::connectors::{
    github::GitHubConnector, Account, Change, Connector, ConnectorError, Subject,
};
use serde_json::json;

const TOKEN: &str = "ghp_test_token_never_logged";

fn rule(method: &Method, path: &str, model: &mut Model) -> Answer {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "orgs", _, "teams", slug, "memberships", login] => {
            let key = format!("{login}@{slug}");
            match *method {
                Method::GET if model.held.contains(&key) => Answer {
                    body: Some(
                        json!({"url": "https://api.github.com/teams/1/memberships/x", "role": "member", "state": "active"}),
                    ),
                    ..Answer::default()
                },
                Method::GET => Answer {
                    code: Some(404),
                    ..Answer::default()
                },
                Method::PUT => {
                    model.held.insert(key);
                    Answer::default()
                }
                _ => {
                    model.held.remove(&key);
                    Answer::default()
                }
            }
        }
        ["", "orgs", _, "memberships", login] => {
            let key = format!("{login}@org:admin");
            if *method == Method::PUT {
                model.held.insert(key);
                return Answer::default();
            }
            let role = if model.held.contains(&key) {
                "admin"
            } else {
                "member"
            };
            Answer {
                body: Some(
                    json!({"url": "https://api.github.com/orgs/acme/memberships/x", "state": "active", "role": role,
                                   "organization_url": "https://api.github.com/orgs/acme"}),
                ),
                ..Answer::default()
            }
        }
        ["", "users", "ghost"] => Answer {
            code: Some(404),
            ..Answer::default()
        },
        ["", "app", "installations", _, "access_tokens"] => Answer {
            code: Some(201),
            body: Some(json!({"token": "ghs_installation_token",
                               "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()})),
            ..Answer::default()
        },
        _ => Answer::default(),
    }
}

async fn github() -> (Prism, Front) {
    let prism = Prism::start("api.github.com.octokit-23.0.2.json").await;
    let front = Front::start(&prism, rule).await;
    (prism, front)
}

fn connector(front: &Front, extra: toml::Table) -> GitHubConnector {
    let mut t: toml::Table = toml::from_str(&format!(
        "org = \"acme\"\napi_url = \"{}\"\ntimeout_secs = 5\n",
        front.url
    ))
    .unwrap();
    t.extend(extra);
    GitHubConnector::from_settings("github", &t).unwrap()
}

fn token_settings() -> toml::Table {
    std::env::set_var("GRANTRY_TEST_GITHUB_TOKEN", TOKEN);
    toml::from_str("token_env = \"GRANTRY_TEST_GITHUB_TOKEN\"").unwrap()
}

fn me() -> Subject<'static> {
    Subject {
        email: "octocat@example.com",
        mapped_id: Some("octocat"),
    }
}

#[tokio::test]
async fn github_grants_revokes_and_lists_team_membership_as_the_api_describes() {
    let (_prism, front) = github().await;
    let gh = connector(&front, token_settings());

    let account = gh.resolve_account(&me()).await.unwrap();
    assert_eq!(account.id, "octocat");

    // Grant: not a member (404), so a PUT with role member.
    front.clear();
    assert_eq!(
        gh.grant(&account, "platform-admins").await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        front.calls(),
        vec![
            (
                "GET".into(),
                "/orgs/acme/teams/platform-admins/memberships/octocat".into()
            ),
            (
                "PUT".into(),
                "/orgs/acme/teams/platform-admins/memberships/octocat".into()
            ),
        ]
    );
    let put = front.seen().pop().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&put.body).unwrap(),
        json!({"role": "member"})
    );
    assert!(front.held().contains("octocat@platform-admins"));

    // Idempotent re-grant: a GET only.
    front.clear();
    assert_eq!(
        gh.grant(&account, "team:platform-admins").await.unwrap(),
        Change::AlreadyInPlace
    );
    assert_eq!(front.calls().len(), 1);

    // List: GitHub's documented example answer, read as logins.
    let members = gh.list_members("platform-admins").await.unwrap();
    assert_eq!(
        members.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec!["octocat"]
    );
    assert!(front
        .seen()
        .last()
        .unwrap()
        .path
        .contains("per_page=100&page=1"));

    // Revoke, then revoke again.
    assert_eq!(
        gh.revoke(&account, "platform-admins").await.unwrap(),
        Change::Applied
    );
    assert!(!front.held().contains("octocat@platform-admins"));
    assert_eq!(
        gh.revoke(&account, "platform-admins").await.unwrap(),
        Change::AlreadyInPlace
    );

    // Maintainer role and the org's admin role.
    assert_eq!(
        gh.grant(&account, "team:sre:maintainer").await.unwrap(),
        Change::Applied
    );
    assert!(front.seen().last().unwrap().body.contains("maintainer"));
    assert_eq!(
        gh.grant(&account, "org:admin").await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        gh.grant(&account, "org:admin").await.unwrap(),
        Change::AlreadyInPlace
    );
    assert_eq!(
        gh.revoke(&account, "org:admin").await.unwrap(),
        Change::Applied
    );
    assert!(front.seen().last().unwrap().body.contains("\"member\""));

    front.assert_conforms();
    for s in front.seen() {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[tokio::test]
async fn github_classifies_rate_limits_outages_and_missing_users() {
    let (_prism, front) = github().await;
    let gh = connector(&front, token_settings());
    let account = Account {
        id: "octocat".into(),
        login: Some("octocat".into()),
    };

    // 429 with Retry-After: transient, waiting what GitHub asked.
    front.fail_next("/memberships/", 429, &[("retry-after", "7")]);
    match gh.grant(&account, "platform-admins").await {
        Err(ConnectorError::Transient {
            retry_after,
            message,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("expected transient, got {other:?}"),
    }
    // A 403 with the rate limit spent is GitHub's primary rate limit: transient until the reset.
    let reset = (chrono::Utc::now().timestamp() + 30).to_string();
    front.fail_next(
        "/memberships/",
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ],
    );
    match gh.grant(&account, "platform-admins").await {
        Err(ConnectorError::Transient {
            retry_after: Some(d),
            ..
        }) => assert!((25..=30).contains(&d.as_secs())),
        other => panic!("expected transient, got {other:?}"),
    }
    // 503, then success on the next attempt.
    front.fail_next("/memberships/", 503, &[]);
    assert!(matches!(
        gh.grant(&account, "platform-admins").await,
        Err(ConnectorError::Transient {
            retry_after: None,
            ..
        })
    ));
    assert_eq!(
        gh.grant(&account, "platform-admins").await.unwrap(),
        Change::Applied
    );

    // A mapped login that does not exist: permanent, saying what to fix.
    let err = gh
        .resolve_account(&Subject {
            email: "ghost@example.com",
            mapped_id: Some("ghost"),
        })
        .await
        .unwrap_err();
    match &err {
        ConnectorError::Permanent { message } => {
            assert!(message.contains("fix the mapping"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    // A 403 without rate-limit headers: permanent, naming the permission.
    front.fail_next("/memberships/", 403, &[]);
    match gh.grant(&account, "platform-admins").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("Members"), "{message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    front.assert_conforms();
}

#[tokio::test]
async fn github_app_signs_a_jwt_and_caches_the_installation_token() {
    let (_prism, front) = github().await;
    let (_pkcs8, pkcs1, public) = rsa_test_key();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    std::fs::write(&key, pkcs1).unwrap();
    let gh = connector(
        &front,
        toml::from_str(&format!(
            "app_id = \"12345\"\ninstallation_id = \"42\"\nprivate_key_file = {:?}\n",
            key.display().to_string()
        ))
        .unwrap(),
    );
    let account = gh.resolve_account(&me()).await.unwrap();
    gh.grant(&account, "platform-admins").await.unwrap();
    gh.revoke(&account, "platform-admins").await.unwrap();

    let seen = front.seen();
    let token_calls: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("/access_tokens"))
        .collect();
    assert_eq!(token_calls.len(), 1, "the installation token is cached");
    assert_eq!(token_calls[0].path, "/app/installations/42/access_tokens");
    let jwt = token_calls[0]
        .authorization
        .as_deref()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let claims = verify_jwt(jwt, &public);
    assert_eq!(claims["iss"], "12345");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);
    for s in seen.iter().filter(|s| !s.path.ends_with("/access_tokens")) {
        assert_eq!(
            s.authorization.as_deref(),
            Some("Bearer ghs_installation_token")
        );
    }
    front.assert_conforms();
}
