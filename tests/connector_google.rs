//! The Google Workspace connector against Prism serving the Admin SDK Directory description
//! (../shared/oracles/openapi/google-admin-directory.groups-members-subset.openapi.json; Google's
//! discovery document converted to OpenAPI), with the OAuth token endpoint answered by the test.

mod common;

use axum::http::Method;
use common::prism::{rsa_test_key, verify_jwt, Answer, Front, Model, Prism};
use grantry::connectors::{google::GoogleConnector, Change, Connector, ConnectorError, Subject};
use serde_json::{json, Value};

fn rule(method: &Method, path: &str, model: &mut Model) -> Answer {
    let parts: Vec<&str> = path.split('/').collect();
    let body = |v: Value| Answer {
        body: Some(v),
        ..Answer::default()
    };
    match parts.as_slice() {
        ["", "token"] => Answer {
            direct: Some((
                200,
                json!({"access_token": "ya29.test-access-token", "expires_in": 3599, "token_type": "Bearer"}),
            )),
            ..Answer::default()
        },
        ["", "admin", "directory", "v1", "groups", group, ..]
            if decode(group) == "missing@example.com" =>
        {
            Answer {
                code: Some(404),
                ..Answer::default()
            }
        }
        ["", "admin", "directory", "v1", "groups", group, "hasMember", member] => {
            let key = format!("{}>{}", decode(member), decode(group));
            body(json!({"isMember": model.held.contains(&key)}))
        }
        ["", "admin", "directory", "v1", "groups", group, "members"] if *method == Method::GET => {
            let g = decode(group);
            let members: Vec<Value> = model
                .held
                .iter()
                .filter_map(|k| {
                    k.split_once('>')
                        .filter(|(_, gg)| *gg == g)
                        .map(|(m, _)| json!({"email": m, "role": "MEMBER", "type": "USER"}))
                })
                .collect();
            body(json!({"kind": "admin#directory#members", "members": members}))
        }
        ["", "admin", "directory", "v1", "groups", group, "members"] => {
            // POST: insert. The body is checked by Prism against the Member schema.
            model
                .held
                .insert(format!("ada@example.com>{}", decode(group)));
            body(
                json!({"kind": "admin#directory#member", "email": "ada@example.com", "role": "MEMBER", "type": "USER"}),
            )
        }
        ["", "admin", "directory", "v1", "groups", group, "members", member] => {
            model
                .held
                .remove(&format!("{}>{}", decode(member), decode(group)));
            Answer {
                code: Some(204),
                ..Answer::default()
            }
        }
        _ => Answer::default(),
    }
}

fn decode(s: &str) -> String {
    s.replace("%40", "@")
}

#[tokio::test]
async fn google_inserts_and_deletes_group_members_with_a_delegated_service_account() {
    let prism = Prism::start("google-admin-directory.groups-members-subset.openapi.json").await;
    let front = Front::start(&prism, rule).await;
    let (pkcs8, _pkcs1, public) = rsa_test_key();
    let key = json!({
        "type": "service_account", "project_id": "p", "private_key_id": "key-1",
        "private_key": pkcs8, "client_email": "grantry@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": format!("{}/token", front.url)
    });
    std::env::set_var("GRANTRY_TEST_GOOGLE_KEY", key.to_string());
    let t: toml::Table = toml::from_str(&format!(
        "credentials_env = \"GRANTRY_TEST_GOOGLE_KEY\"\nadmin_email = \"it-admin@example.com\"\napi_url = \"{}\"\ntimeout_secs = 5",
        front.url
    ))
    .unwrap();
    let g = GoogleConnector::from_settings("google", &t).unwrap();

    let ada = g
        .resolve_account(&Subject {
            email: "Ada@Example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(ada.id, "ada@example.com");
    assert_eq!(
        g.grant(&ada, "eng@example.com").await.unwrap(),
        Change::Applied
    );
    let insert = front
        .seen()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/members"))
        .unwrap();
    assert_eq!(
        insert.path,
        "/admin/directory/v1/groups/eng@example.com/members"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&insert.body).unwrap(),
        json!({"email": "ada@example.com", "role": "MEMBER"})
    );
    assert_eq!(
        g.grant(&ada, "eng@example.com").await.unwrap(),
        Change::AlreadyInPlace
    );

    let members = g.list_members("eng@example.com").await.unwrap();
    assert_eq!(
        members.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec!["ada@example.com"]
    );

    assert_eq!(
        g.revoke(&ada, "eng@example.com").await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        g.revoke(&ada, "eng@example.com").await.unwrap(),
        Change::AlreadyInPlace
    );

    // 429 with Retry-After, 503 then success, a group that does not exist (404: permanent).
    front.fail_next("/members", 429, &[("retry-after", "3")]);
    assert!(matches!(
        g.grant(&ada, "eng@example.com").await,
        Err(ConnectorError::Transient { retry_after: Some(d), .. }) if d.as_secs() == 3
    ));
    front.fail_next("/hasMember/", 503, &[]);
    assert!(matches!(
        g.grant(&ada, "eng@example.com").await,
        Err(ConnectorError::Transient { .. })
    ));
    assert_eq!(
        g.grant(&ada, "eng@example.com").await.unwrap(),
        Change::Applied
    );
    assert!(matches!(
        g.grant(&ada, "missing@example.com").await,
        Err(ConnectorError::Permanent { .. })
    ));

    // One token for the whole run, obtained with a JWT the service account signed for the admin.
    let seen = front.seen();
    let tokens: Vec<_> = seen.iter().filter(|s| s.path == "/token").collect();
    assert_eq!(tokens.len(), 1);
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&tokens[0].body).unwrap();
    assert_eq!(
        form[0],
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )
    );
    let claims = verify_jwt(&form[1].1, &public);
    assert_eq!(claims["iss"], "grantry@p.iam.gserviceaccount.com");
    assert_eq!(claims["sub"], "it-admin@example.com");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/admin.directory.group.member"
    );
    for s in seen
        .iter()
        .filter(|s| s.path != "/token" && s.status != 429 && s.status != 503)
    {
        assert_eq!(
            s.authorization.as_deref(),
            Some("Bearer ya29.test-access-token")
        );
    }
    front.assert_conforms();
}
