//! The Salesforce connector against a local server that accepts only the documented REST API calls:
//! the OAuth 2.0 token endpoint (client credentials, JWT bearer), SOQL queries
//! (`/services/data/vXX.X/query?q=`, paged by `nextRecordsUrl`) and the `PermissionSetAssignment`
//! and `PermissionSetLicenseAssign` SObjects, with exact paths, queries, bodies and bearer tokens.

mod common;

use std::time::Duration;

use common::prism::{rsa_test_key, verify_jwt};
use common::{eventually, spawn_app_with};
use grantry::connectors::{
    salesforce::SalesforceConnector, Account, Change, Connector, ConnectorError, Subject,
};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "sf-client-secret-never-logged";
const ACCESS: &str = "00DXX0000000001!AQ0AQHsession-token";
const CLIENT_ID: &str = "3MVG9consumer.key";
const USER: &str = "005XX000001SvogYAC";
const PS: &str = "0PSXX0000004C9qYAE";
const PSL: &str = "0PLXX000000GmaOYAS";

fn settings(server: &MockServer, extra: &str) -> SalesforceConnector {
    std::env::set_var("GRANTRY_TEST_SF_SECRET", SECRET);
    let t: toml::Table = toml::from_str(&format!(
        "instance_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\ntimeout_secs = 5\n{extra}",
        server.uri()
    ))
    .unwrap();
    SalesforceConnector::from_settings("salesforce", &t).unwrap()
}

fn client_credentials(server: &MockServer) -> SalesforceConnector {
    settings(server, "client_secret_env = \"GRANTRY_TEST_SF_SECRET\"")
}

fn form(r: &Request) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&r.body).unwrap()
}

fn field(form: &[(String, String)], k: &str) -> String {
    form.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {k} in the form"))
}

async fn token_endpoint(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS, "instance_url": "https://elsewhere.example.com",
            "id": "https://login.salesforce.com/id/00DXX/005XX", "token_type": "Bearer",
            "issued_at": "1733212345678", "signature": "c2ln"
        })))
        .mount(server)
        .await;
}

/// A SOQL query answered with these records (one page).
fn soql(q: &str, records: Value) -> Mock {
    let total = records.as_array().map_or(0, Vec::len);
    Mock::given(method("GET"))
        .and(path("/services/data/v60.0/query"))
        .and(query_param("q", q))
        .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": total, "done": true, "records": records
        })))
}

fn token_calls(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| r.url.path() == "/services/oauth2/token")
        .collect()
}

#[tokio::test]
async fn salesforce_assigns_and_removes_permission_sets_with_one_cached_token() {
    let server = MockServer::start().await;
    token_endpoint(&server).await;
    soql(
        "SELECT Id, Username FROM User WHERE Email = 'ada@example.com' AND IsActive = true",
        json!([{"attributes": {"type": "User"}, "Id": USER, "Username": "ada@example.com.acme"}]),
    )
    .expect(1)
    .mount(&server)
    .await;
    soql(
        "SELECT Id FROM PermissionSet WHERE Name = 'Sales_Ops'",
        json!([{"attributes": {"type": "PermissionSet"}, "Id": PS}]),
    )
    .expect(1) // cached afterwards
    .mount(&server)
    .await;

    let create = || {
        Mock::given(method("POST"))
            .and(path(
                "/services/data/v60.0/sobjects/PermissionSetAssignment",
            ))
            .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
            .and(body_json(
                json!({"AssigneeId": USER, "PermissionSetId": PS}),
            ))
    };
    create()
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "0PaXX00000A1", "success": true, "errors": []})),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    create()
        .respond_with(ResponseTemplate::new(400).set_body_json(json!([{
            "message": "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
            "errorCode": "DUPLICATE_VALUE", "fields": []
        }])))
        .expect(1)
        .mount(&server)
        .await;

    let find = format!(
        "SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{USER}' AND PermissionSetId = '{PS}'"
    );
    soql(&find, json!([{"Id": "0PaXX00000A1"}]))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    soql(&find, json!([])).expect(1).mount(&server).await;
    Mock::given(method("DELETE"))
        .and(path(
            "/services/data/v60.0/sobjects/PermissionSetAssignment/0PaXX00000A1",
        ))
        .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    // Members: two pages, the second through nextRecordsUrl.
    Mock::given(method("GET"))
        .and(path("/services/data/v60.0/query"))
        .and(query_param(
            "q",
            format!("SELECT AssigneeId, Assignee.Username FROM PermissionSetAssignment WHERE PermissionSetId = '{PS}'"),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": 3, "done": false,
            "nextRecordsUrl": "/services/data/v60.0/query/01gXX0000000001-2000",
            "records": [
                {"AssigneeId": USER, "Assignee": {"Username": "ada@example.com.acme"}},
                {"AssigneeId": "005XX000001SvohYAC", "Assignee": {"Username": "bob@example.com.acme"}}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v60.0/query/01gXX0000000001-2000"))
        .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": 3, "done": true,
            "records": [{"AssigneeId": "005XX000001SvoiYAC", "Assignee": {"Username": "carol@example.com.acme"}}]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let sf = client_credentials(&server);
    let ada = sf
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(
        ada,
        Account {
            id: USER.into(),
            login: Some("ada@example.com.acme".into())
        }
    );
    assert_eq!(sf.grant(&ada, "Sales_Ops").await.unwrap(), Change::Applied);
    assert_eq!(
        sf.grant(&ada, "Sales_Ops").await.unwrap(),
        Change::AlreadyInPlace
    );
    let members = sf.list_members("Sales_Ops").await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|a| a.login.as_deref().unwrap())
            .collect::<Vec<_>>(),
        vec![
            "ada@example.com.acme",
            "bob@example.com.acme",
            "carol@example.com.acme"
        ]
    );
    assert_eq!(sf.revoke(&ada, "Sales_Ops").await.unwrap(), Change::Applied);
    assert_eq!(
        sf.revoke(&ada, "Sales_Ops").await.unwrap(),
        Change::AlreadyInPlace
    );

    let reqs = server.received_requests().await.unwrap();
    let tokens = token_calls(&reqs);
    assert_eq!(
        tokens.len(),
        1,
        "the access token is fetched once and reused"
    );
    let f = form(tokens[0]);
    assert_eq!(field(&f, "grant_type"), "client_credentials");
    assert_eq!(field(&f, "client_id"), CLIENT_ID);
    assert_eq!(field(&f, "client_secret"), SECRET);
    // Every API call carried the one token and reached this server, not the token answer's
    // instance_url (elsewhere.example.com): the mocks' exact counts are verified on drop.
    let api: Vec<_> = reqs
        .iter()
        .filter(|r| r.url.path().starts_with("/services/data/"))
        .collect();
    assert_eq!(api.len(), 9);
    for r in api {
        assert_eq!(
            r.headers.get("authorization").unwrap(),
            format!("Bearer {ACCESS}").as_str()
        );
    }
}

#[tokio::test]
async fn salesforce_assigns_permission_set_licenses_and_quotes_soql() {
    let server = MockServer::start().await;
    token_endpoint(&server).await;
    // An apostrophe in the email is escaped, not an injection.
    soql(r"SELECT Id, Username FROM User WHERE Username = 'o\'brien@example.com' AND IsActive = true",
        json!([{"Id": USER, "Username": "o'brien@example.com"}]),
    )
    .expect(1)
    .mount(&server)
    .await;
    soql(
        "SELECT Id FROM PermissionSetLicense WHERE DeveloperName = 'SalesConsoleUser'",
        json!([{"Id": PSL}]),
    )
    .expect(1)
    .mount(&server)
    .await;
    Mock::given(method("POST"))
        .and(path(
            "/services/data/v60.0/sobjects/PermissionSetLicenseAssign",
        ))
        .and(body_json(
            json!({"AssigneeId": USER, "PermissionSetLicenseId": PSL}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "2LAXX0001", "success": true, "errors": []})),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    // Assigning it again: refused with another code; the existing assignment decides.
    Mock::given(method("POST"))
        .and(path(
            "/services/data/v60.0/sobjects/PermissionSetLicenseAssign",
        ))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!([{
            "message": "This user already has this permission set license.",
            "errorCode": "FIELD_INTEGRITY_EXCEPTION", "fields": []
        }])))
        .expect(1)
        .mount(&server)
        .await;
    soql(&format!("SELECT Id FROM PermissionSetLicenseAssign WHERE AssigneeId = '{USER}' AND PermissionSetLicenseId = '{PSL}'"),
        json!([{"Id": "2LAXX0001"}]),
    )
    .expect(2)
    .mount(&server)
    .await;
    Mock::given(method("DELETE"))
        .and(path(
            "/services/data/v60.0/sobjects/PermissionSetLicenseAssign/2LAXX0001",
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    soql(&format!("SELECT AssigneeId, Assignee.Username FROM PermissionSetLicenseAssign WHERE PermissionSetLicenseId = '{PSL}'"),
        json!([{"AssigneeId": USER, "Assignee": {"Username": "o'brien@example.com"}}]),
    )
    .expect(1)
    .mount(&server)
    .await;

    let sf = settings(
        &server,
        "client_secret_env = \"GRANTRY_TEST_SF_SECRET\"\nmatch = \"username\"\napi_version = \"60.0\"",
    );
    let who = sf
        .resolve_account(&Subject {
            email: "o'brien@example.com",
            mapped_id: None,
        })
        .await
        .unwrap();
    assert_eq!(
        sf.grant(&who, "license:SalesConsoleUser").await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        sf.grant(&who, "license:SalesConsoleUser").await.unwrap(),
        Change::AlreadyInPlace
    );
    assert_eq!(
        sf.list_members("license:SalesConsoleUser")
            .await
            .unwrap()
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        vec![USER]
    );
    assert_eq!(
        sf.revoke(&who, "license:SalesConsoleUser").await.unwrap(),
        Change::Applied
    );
}

#[tokio::test]
async fn salesforce_jwt_bearer_flow_signs_the_assertion_and_refetches_after_a_401() {
    let server = MockServer::start().await;
    token_endpoint(&server).await;
    let (pkcs8, _pkcs1, public) = rsa_test_key();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sf.pem");
    std::fs::write(&key, pkcs8).unwrap();
    // The session expired: the first call is refused, the second (new token) succeeds.
    Mock::given(method("GET"))
        .and(path("/services/data/v60.0/query"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!([{
            "message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"
        }])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    soql(
        &format!("SELECT Id, Username, IsActive FROM User WHERE Id = '{USER}'"),
        json!([{"Id": USER, "Username": "ada@example.com.acme", "IsActive": true}]),
    )
    .expect(1)
    .mount(&server)
    .await;

    let sf = settings(
        &server,
        &format!(
            "username = \"integration@acme.com\"\nprivate_key_file = {:?}\nlogin_url = \"{}\"",
            key.display().to_string(),
            server.uri()
        ),
    );
    let ada = sf
        .resolve_account(&Subject {
            email: "ada@example.com",
            mapped_id: Some(USER),
        })
        .await
        .unwrap();
    assert_eq!(ada.id, USER);

    let reqs = server.received_requests().await.unwrap();
    let tokens = token_calls(&reqs);
    assert_eq!(tokens.len(), 2, "a refused token is replaced once");
    let f = form(tokens[0]);
    assert_eq!(
        field(&f, "grant_type"),
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let claims = verify_jwt(&field(&f, "assertion"), &public);
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], "integration@acme.com");
    assert_eq!(claims["aud"], server.uri());
    let exp = claims["exp"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now..=now + 300).contains(&exp),
        "exp within minutes: {exp}"
    );
}

#[tokio::test]
async fn salesforce_limits_are_transient_and_access_errors_permanent() {
    let server = MockServer::start().await;
    token_endpoint(&server).await;
    let create = || {
        Mock::given(method("POST")).and(path(
            "/services/data/v60.0/sobjects/PermissionSetAssignment",
        ))
    };
    create()
        .respond_with(ResponseTemplate::new(403).set_body_json(json!([{
            "message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"
        }])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    create()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!([{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    create()
        .respond_with(ResponseTemplate::new(403).set_body_json(json!([{
            "message": "insufficient access rights on cross-reference id", "errorCode": "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"
        }])))
        .mount(&server)
        .await;
    soql(
        "SELECT Id FROM PermissionSet WHERE Name = 'Sales_Ops'",
        json!([{"Id": PS}]),
    )
    .mount(&server)
    .await;
    soql(
        "SELECT Id FROM PermissionSet WHERE Name = 'Nope'",
        json!([]),
    )
    .mount(&server)
    .await;
    let sf = client_credentials(&server);
    let ada = Account {
        id: USER.into(),
        login: None,
    };

    match sf.grant(&ada, "Sales_Ops").await {
        Err(ConnectorError::Transient { message, .. }) => {
            assert!(message.contains("REQUEST_LIMIT_EXCEEDED"), "{message}")
        }
        other => panic!("expected transient, got {other:?}"),
    }
    match sf.grant(&ada, "Sales_Ops").await {
        Err(ConnectorError::Transient { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("expected transient, got {other:?}"),
    }
    match sf.grant(&ada, "Sales_Ops").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("403"), "{message}");
            assert!(message.contains("Assign Permission Sets"), "{message}");
            assert!(!message.contains(ACCESS) && !message.contains(SECRET));
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    match sf.grant(&ada, "Nope").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(
                message.contains("no PermissionSet with Name \"Nope\""),
                "{message}"
            )
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn salesforce_refused_credentials_are_permanent_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client", "error_description": "invalid client credentials"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let sf = client_credentials(&server);
    match sf.list_members("Sales_Ops").await {
        Err(ConnectorError::Permanent { message }) => {
            assert!(message.contains("invalid client credentials"), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

/// Through the real app: an approved request assigns the permission set, and revoking the grant
/// deletes the assignment.
#[tokio::test]
async fn an_approved_request_assigns_the_permission_set_and_revoking_removes_it() {
    let server = MockServer::start().await;
    token_endpoint(&server).await;
    soql(
        "SELECT Id, Username FROM User WHERE Email = 'alice@example.com' AND IsActive = true",
        json!([{"Id": USER, "Username": "alice@example.com.acme"}]),
    )
    .mount(&server)
    .await;
    soql(
        "SELECT Id FROM PermissionSet WHERE Name = 'Sales_Ops'",
        json!([{"Id": PS}]),
    )
    .expect(1)
    .mount(&server)
    .await;
    Mock::given(method("POST"))
        .and(path(
            "/services/data/v60.0/sobjects/PermissionSetAssignment",
        ))
        .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
        .and(body_json(
            json!({"AssigneeId": USER, "PermissionSetId": PS}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "0PaXX00000B2", "success": true, "errors": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    soql(
        &format!("SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{USER}' AND PermissionSetId = '{PS}'"),
        json!([{"Id": "0PaXX00000B2"}]),
    )
    .expect(1)
    .mount(&server)
    .await;
    Mock::given(method("DELETE"))
        .and(path(
            "/services/data/v60.0/sobjects/PermissionSetAssignment/0PaXX00000B2",
        ))
        .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    std::env::set_var("GRANTRY_TEST_SF_E2E_SECRET", SECRET);
    let uri = server.uri();
    let t = spawn_app_with(|c| {
        c.connectors.insert(
            "salesforce".into(),
            toml::from_str(&format!(
                "type = \"salesforce\"\ninstance_url = \"{uri}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"GRANTRY_TEST_SF_E2E_SECRET\"\ntimeout_secs = 3\n"
            ))
            .unwrap(),
        );
        std::fs::write(
            c.base_dir.join("catalog.toml"),
            "[[apps]]\nid = \"salesforce\"\nname = \"Salesforce\"\nconnector = \"salesforce\"\nowners = [\"bob@example.com\"]\n\
             [[apps.entitlements]]\nid = \"sales-ops\"\ntarget = \"Sales_Ops\"\nmax_duration = \"1d\"\n",
        )
        .unwrap();
    })
    .await;

    let id = t
        .file_request("salesforce sales-ops for 4h because quarter close")
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
            .starts_with("Revoking salesforce/sales-ops"),
        "{b}"
    );
    eventually(15, "request revoked", || async {
        (t.state_of(&id).await == "revoked").then_some(())
    })
    .await;
    let tokens = token_calls(&server.received_requests().await.unwrap()).len();
    assert_eq!(tokens, 1, "one token for the grant and the revoke");
}
