//! Service desks (Jira Service Management, ServiceNow, Freshservice) against local servers that
//! accept only the documented calls: exact paths, methods, auth headers and bodies. Each desk's
//! ticket lifecycle (create → update → resolve), its rate limits and refusals; a request whose
//! app keeps tickets opens one, and the ticket is resolved when access is active and told when it
//! expires; a desk that is down holds nothing up and catches up; a ticket filed in the desk
//! becomes a request whose outcome is written back to that same ticket.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use grantry::config::ConnectorConfig;
use grantry::servicedesk::{
    freshservice::Freshservice, jsm::Jsm, servicenow::ServiceNow, DeskError, NewTicket, ServiceDesk,
};
use serde_json::{json, Value};
use wiremock::matchers::{any, body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "desk-token-never-logged-4f1c";
const INBOUND: &str = "inbound-secret-9a7e";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn settings(text: &str) -> toml::Table {
    std::env::set_var("GRANTRY_TEST_DESK_SECRET", SECRET);
    toml::from_str(text).unwrap()
}

fn jsm(server: &MockServer) -> Jsm {
    Jsm::from_settings(
        "jsm",
        &settings(&format!(
            "base_url = \"{}\"\nservice_desk_id = \"4\"\nrequest_type_id = \"21\"\nemail = \"agent@example.com\"\ntoken_env = \"GRANTRY_TEST_DESK_SECRET\"\ntimeout_secs = 3\n",
            server.uri()
        )),
    )
    .unwrap()
}

fn servicenow(server: &MockServer) -> ServiceNow {
    ServiceNow::from_settings(
        "snow",
        &settings(&format!(
            "instance_url = \"{}\"\nusername = \"grantry.integration\"\npassword_env = \"GRANTRY_TEST_DESK_SECRET\"\ntimeout_secs = 3\n",
            server.uri()
        )),
    )
    .unwrap()
}

fn freshservice(server: &MockServer) -> Freshservice {
    Freshservice::from_settings(
        "fresh",
        &settings(&format!(
            "base_url = \"{}\"\napi_key_env = \"GRANTRY_TEST_DESK_SECRET\"\ntimeout_secs = 3\n",
            server.uri()
        )),
    )
    .unwrap()
}

fn ticket() -> NewTicket {
    NewTicket {
        request_id: "R-7KQ2M9XA".into(),
        requester: "alice@example.com".into(),
        subject: "alice@example.com".into(),
        app: "github".into(),
        entitlement: "readers".into(),
        duration: "4h".into(),
        reason: "reading the deploy code".into(),
        summary: "Access request R-7KQ2M9XA: github/readers for alice@example.com".into(),
        description: "Requester: alice@example.com\nReason: reading the deploy code\nWaiting for approval from Bob Owner.".into(),
    }
}

#[tokio::test]
async fn jsm_creates_comments_and_resolves_through_the_servicedesk_api() {
    let server = MockServer::start().await;
    let auth = basic("agent@example.com", SECRET);
    Mock::given(method("POST"))
        .and(path("/rest/servicedeskapi/request"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(json!({
            "serviceDeskId": "4", "requestTypeId": "21",
            "requestFieldValues": {"summary": ticket().summary, "description": ticket().description}
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "issueId": "10042", "issueKey": "IT-42",
            "_links": {"web": "https://example.atlassian.net/servicedesk/customer/portal/4/IT-42"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/servicedeskapi/request/IT-42/comment"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(
            json!({"body": "Approved by bob@example.com.", "public": true}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1000"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/servicedeskapi/request/IT-42/transition"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "size": 2, "start": 0, "limit": 50, "isLastPage": true,
            "values": [{"id": "761", "name": "Cancel request"}, {"id": "781", "name": "Resolve this issue"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/servicedeskapi/request/IT-42/transition"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(
            json!({"id": "781", "additionalComment": {"body": "Access granted."}}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let desk = jsm(&server);
    let t = desk.create(&ticket()).await.unwrap();
    assert_eq!(t.key, "IT-42");
    assert_eq!(
        t.url.as_deref(),
        Some("https://example.atlassian.net/servicedesk/customer/portal/4/IT-42")
    );
    desk.comment(&t.key, "Approved by bob@example.com.")
        .await
        .unwrap();
    desk.resolve(&t.key, "Access granted.").await.unwrap();
}

#[tokio::test]
async fn servicenow_finds_or_creates_the_record_notes_and_closes_it() {
    let server = MockServer::start().await;
    let auth = basic("grantry.integration", SECRET);
    // A first try whose answer was lost: nothing found, so it is created (once).
    Mock::given(method("GET"))
        .and(path("/api/now/table/sc_req_item"))
        .and(query_param("sysparm_query", "correlation_id=R-7KQ2M9XA"))
        .and(query_param("sysparm_limit", "1"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/sc_req_item"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(json!({
            "short_description": ticket().summary, "description": ticket().description,
            "correlation_id": "R-7KQ2M9XA", "correlation_display": "grantry"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "result": {"sys_id": "9d385017c611228701d22104cc95c371", "number": "RITM0010001"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    // The retry finds it by correlation_id and creates nothing.
    Mock::given(method("GET"))
        .and(path("/api/now/table/sc_req_item"))
        .and(query_param("sysparm_query", "correlation_id=R-7KQ2M9XA"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "result": [{"sys_id": "9d385017c611228701d22104cc95c371", "number": "RITM0010001"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(
            "/api/now/table/sc_req_item/9d385017c611228701d22104cc95c371",
        ))
        .and(header("authorization", auth.as_str()))
        .and(body_json(
            json!({"comments": "Approved by bob@example.com."}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(
            "/api/now/table/sc_req_item/9d385017c611228701d22104cc95c371",
        ))
        .and(body_json(
            json!({"comments": "Access granted.", "state": "3", "close_notes": "Access granted."}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {}})))
        .expect(1)
        .mount(&server)
        .await;

    let desk = servicenow(&server);
    let t = desk.create(&ticket()).await.unwrap();
    assert_eq!(t.key, "9d385017c611228701d22104cc95c371");
    assert!(t
        .url
        .unwrap()
        .ends_with("/nav_to.do?uri=sc_req_item.do?sys_id=9d385017c611228701d22104cc95c371"));
    let again = desk.create(&ticket()).await.unwrap();
    assert_eq!(again.key, t.key, "a retried create finds the record");
    desk.comment(&t.key, "Approved by bob@example.com.")
        .await
        .unwrap();
    desk.resolve(&t.key, "Access granted.").await.unwrap();
}

#[tokio::test]
async fn freshservice_opens_notes_and_resolves_tickets() {
    let server = MockServer::start().await;
    let auth = basic(SECRET, "X");
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .and(header("authorization", auth.as_str()))
        .and(body_partial_json(json!({
            "subject": ticket().summary, "email": "alice@example.com",
            "priority": 2, "status": 2, "source": 2
        })))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 1234, "status": 2}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/1234/notes"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(
            json!({"body": "<div>Approved by &lt;bob&gt;.</div>", "private": false}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"conversation": {"id": 1}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/1234/notes"))
        .and(body_json(
            json!({"body": "<div>Access granted.</div>", "private": false}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"conversation": {"id": 2}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/1234"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(json!({"status": 4})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 1234, "status": 4}})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let desk = freshservice(&server);
    let t = desk.create(&ticket()).await.unwrap();
    assert_eq!(t.key, "1234");
    assert_eq!(
        t.url.unwrap(),
        format!("{}/helpdesk/tickets/1234", server.uri())
    );
    // The description is HTML: a reason's markup is shown, never rendered.
    let created: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert!(created["description"]
        .as_str()
        .unwrap()
        .contains("<div>Requester: alice@example.com</div>"));
    desk.comment(&t.key, "Approved by <bob>.").await.unwrap();
    desk.resolve(&t.key, "Access granted.").await.unwrap();
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_wait_and_refusals_are_permanent_without_the_secret() {
    let server = MockServer::start().await;
    let desks: Vec<(Box<dyn ServiceDesk>, &str)> = vec![
        (Box::new(jsm(&server)), "/rest/servicedeskapi/request"),
        (Box::new(servicenow(&server)), "/api/now/table/sc_req_item"),
        (Box::new(freshservice(&server)), "/api/v2/tickets"),
    ];
    for (desk, create_path) in &desks {
        server.reset().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
            .mount(&server)
            .await;
        match desk.create(&ticket()).await {
            Err(DeskError::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)), "{}", desk.kind())
            }
            other => panic!("{}: {other:?}", desk.kind()),
        }
        server.reset().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"error": {"message": "User Not Authenticated"}})),
            )
            .mount(&server)
            .await;
        match desk.create(&ticket()).await {
            Err(DeskError::Permanent { message }) => {
                assert!(!message.contains(SECRET), "{message}");
                assert!(message.contains("401"), "{message}");
                let p = create_path.to_string();
                assert!(message.contains(&p), "{message}");
            }
            other => panic!("{}: {other:?}", desk.kind()),
        }
    }
}

/// The app with a desk named `desk` of `kind` at `server`, and github keeping its tickets there.
async fn app_with_desk(kind: &str, server: &MockServer, extra: &str) -> TestApp {
    let kind = kind.to_string();
    let uri = server.uri();
    let extra = extra.to_string();
    spawn_app_with(move |c| {
        std::fs::write(c.base_dir.join("desk_secret"), SECRET).unwrap();
        std::fs::write(c.base_dir.join("inbound_secret"), INBOUND).unwrap();
        let dir = c.base_dir.display().to_string();
        let text =
            format!("{extra}\ninbound_secret_file = \"{dir}/inbound_secret\"\ntimeout_secs = 3\n")
                .replace("{uri}", &uri)
                .replace("{dir}", &dir);
        c.service_desks.insert(
            "desk".into(),
            ConnectorConfig {
                kind,
                settings: toml::from_str(&text).unwrap(),
            },
        );
        let catalog = std::fs::read_to_string(c.base_dir.join("catalog.toml"))
            .unwrap()
            .replacen(
                "connector = \"scim\"",
                "connector = \"scim\"\nservice_desk = \"desk\"",
                1,
            );
        std::fs::write(c.base_dir.join("catalog.toml"), catalog).unwrap();
    })
    .await
}

const JSM_SETTINGS: &str = "base_url = \"{uri}\"\nservice_desk_id = \"4\"\nrequest_type_id = \"21\"\nemail = \"agent@example.com\"\ntoken_file = \"{dir}/desk_secret\"";

async fn mount_jsm_ticket(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/rest/servicedeskapi/request"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "issueId": "10042", "issueKey": "IT-42",
            "_links": {"web": "https://example.atlassian.net/servicedesk/customer/portal/4/IT-42"}
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/servicedeskapi/request/IT-42/transition"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "isLastPage": true, "values": [{"id": "781", "name": "Resolve this issue"}]
        })))
        .mount(server)
        .await;
    for p in [
        "/rest/servicedeskapi/request/IT-42/transition",
        "/rest/servicedeskapi/request/IT-42/comment",
    ] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(204))
            .mount(server)
            .await;
    }
}

/// The calls the desk received, as `METHOD path` with their JSON bodies.
async fn calls(server: &MockServer) -> Vec<(String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                format!("{} {}", r.method, r.url.path()),
                r.body_json().unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_request_opens_a_ticket_resolved_when_access_is_active_and_told_when_it_expires() {
    let server = MockServer::start().await;
    mount_jsm_ticket(&server).await;
    let t = app_with_desk("jsm", &server, JSM_SETTINGS).await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;

    let id = t
        .file_request("github platform-admins for 1h because fixing the deploy pipeline")
        .await;
    let created = eventually(10, "ticket created", || async {
        calls(&server)
            .await
            .into_iter()
            .find(|(c, _)| c == "POST /rest/servicedeskapi/request")
    })
    .await;
    let fields = &created.1["requestFieldValues"];
    assert!(fields["summary"].as_str().unwrap().contains(&format!(
        "Access request {id}: github/platform-admins for alice@example.com"
    )));
    let description = fields["description"].as_str().unwrap();
    for line in [
        "Requester: alice@example.com",
        "Entitlement: platform-admins",
        "Duration: 1h",
        "Reason: fixing the deploy pipeline",
        "Waiting for approval from",
    ] {
        assert!(description.contains(line), "{description}");
    }
    eventually(10, "ticket linked", || async {
        t.app
            .store
            .ticket(&id)
            .await
            .unwrap()
            .and_then(|r| r.ticket_key)
    })
    .await;

    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "membership", || async {
        t.scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
    let resolved = eventually(10, "ticket resolved", || async {
        calls(&server).await.into_iter().find(|(c, b)| {
            c == "POST /rest/servicedeskapi/request/IT-42/transition" && b["id"] == "781"
        })
    })
    .await;
    let said = resolved.1["additionalComment"]["body"].as_str().unwrap();
    assert!(
        said.contains("Access granted") && said.contains("bob@example.com"),
        "{said}"
    );
    // The approvers' cards now link the ticket.
    eventually(10, "cards link the ticket", || async {
        t.slack
            .calls_of("chat.update")
            .into_iter()
            .find(|c| c.body.to_string().contains("portal/4/IT-42"))
    })
    .await;

    t.clock.advance_ms(3_600_000 + 1_000);
    let note = eventually(15, "expiry noted on the ticket", || async {
        calls(&server).await.into_iter().find(|(c, b)| {
            c == "POST /rest/servicedeskapi/request/IT-42/comment"
                && b["body"].as_str().is_some_and(|s| s.contains("expired"))
        })
    })
    .await;
    assert_eq!(note.1["public"], true);
    let creates = calls(&server)
        .await
        .iter()
        .filter(|(c, _)| c == "POST /rest/servicedeskapi/request")
        .count();
    assert_eq!(creates, 1, "one ticket per request");
}

#[tokio::test]
async fn a_desk_that_is_down_holds_nothing_up_and_its_ticket_catches_up() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let t = app_with_desk("jsm", &server, JSM_SETTINGS).await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;

    let id = t
        .file_request("github platform-admins for 2h because the desk is down today")
        .await;
    assert_eq!(t.click("U333", "grantry.approve", &id).await, 200);
    eventually(15, "access granted while the desk is down", || async {
        t.scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
    eventually(10, "the desk was tried", || async {
        (!calls(&server).await.is_empty()).then_some(())
    })
    .await;
    // The membership shows in SCIM a moment before the grant is committed.
    eventually(10, "request active", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;

    // The desk is back: the ticket is opened and resolved, once.
    server.reset().await;
    mount_jsm_ticket(&server).await;
    eventually(20, "ticket caught up", || async {
        calls(&server)
            .await
            .into_iter()
            .find(|(c, _)| c == "POST /rest/servicedeskapi/request/IT-42/transition")
    })
    .await;
    let got = calls(&server).await;
    assert_eq!(
        got.iter()
            .filter(|(c, _)| c == "POST /rest/servicedeskapi/request")
            .count(),
        1
    );
    // The desk answers the transition a moment before the sync job records it.
    eventually(10, "the ticket's sync recorded", || async {
        let t_rec = t.app.store.ticket(&id).await.unwrap().unwrap();
        (t_rec.synced_state.as_deref() == Some("active") && t_rec.resolved == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ticket_filed_in_servicenow_becomes_a_request_and_its_outcome_is_written_back() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(
            "/api/now/table/sc_req_item/9d385017c611228701d22104cc95c371",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {}})))
        .mount(&server)
        .await;
    let t = app_with_desk(
        "servicenow",
        &server,
        "instance_url = \"{uri}\"\nusername = \"grantry.integration\"\npassword_file = \"{dir}/desk_secret\"",
    )
    .await;
    let alice = t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;
    let hook = format!("{}/hooks/servicedesk/desk", t.base_url);
    let payload = json!({"record": {
        "sys_id": "9d385017c611228701d22104cc95c371", "number": "RITM0010001",
        "short_description": "Access to GitHub",
        "description": "Hello IT,\ngithub platform-admins for 4h because release night\nThanks",
        "requested_for_email": "alice@example.com"
    }});

    // Wrong secret, bad payloads, unknown people: refused, nothing filed.
    let before = t.fingerprint().await;
    let post = |auth: &'static str, body: Value| {
        let hook = hook.clone();
        async move {
            let r = reqwest::Client::new()
                .post(&hook)
                .header("authorization", auth)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(post("Bearer nope", payload.clone()).await.0, 401);
    let (s, b) = post(
        "Bearer inbound-secret-9a7e",
        json!({"record": {"number": "x"}}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (400, "the payload has no sys_id")
    );
    let mut stranger = payload.clone();
    stranger["record"]["requested_for_email"] = json!("eve@elsewhere.example");
    let (s, b) = post("Bearer inbound-secret-9a7e", stranger).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["error"]
        .as_str()
        .unwrap()
        .contains("not in grantry's directory"));
    // A key with a control character (a NUL, which PostgreSQL cannot store; a line break, which
    // would reach the desk's API path and the chat): refused with which one.
    for (bad, named) in [
        ("9d38\u{0}5017", "U+0000"),
        ("9d38\r\nX-Injected: 1", "U+000D"),
    ] {
        let mut hostile = payload.clone();
        hostile["record"]["sys_id"] = json!(bad);
        let (s, b) = post("Bearer inbound-secret-9a7e", hostile).await;
        assert_eq!(s, 422, "{b}");
        let error = b["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("control character ({named})")),
            "{b}"
        );
    }
    assert_eq!(t.fingerprint().await, before);

    let (s, b) = post("Bearer inbound-secret-9a7e", payload.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["outcome"], "pending_approval");
    let id = b["request"].as_str().unwrap().to_string();
    // The desk retries its webhook: the same request, nothing new.
    let (_, again) = post("Bearer inbound-secret-9a7e", payload).await;
    assert_eq!(
        (again["request"].as_str(), again["outcome"].as_str()),
        (Some(id.as_str()), Some("duplicate"))
    );

    let req = t
        .app
        .store
        .request(&grantry::domain::RequestId::from_stored(id.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.requester_email, "alice@example.com");
    assert_eq!(req.reason, "release night");
    assert!(req
        .ticket
        .unwrap()
        .ends_with("sys_id=9d385017c611228701d22104cc95c371"));

    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "membership", || async {
        t.scim.members(&group).await.contains(&alice).then_some(())
    })
    .await;
    let closed = eventually(10, "the desk's own record is closed", || async {
        calls(&server)
            .await
            .into_iter()
            .find(|(c, b)| c.starts_with("PATCH") && b["state"] == "3")
    })
    .await;
    assert!(closed.1["close_notes"]
        .as_str()
        .unwrap()
        .contains("Access granted"));
    assert!(
        calls(&server)
            .await
            .iter()
            .all(|(c, _)| c.starts_with("PATCH")),
        "no second record is created"
    );
}

#[tokio::test]
async fn a_freshservice_ticket_becomes_a_request_and_jsm_reads_jira_webhooks() {
    let server = MockServer::start().await;
    let desk = freshservice(&server);
    let t = desk
        .parse_inbound(&json!({"freshdesk_webhook": {
            "ticket_id": "#SR-77", "ticket_subject": "github readers for 1d because audit prep",
            "ticket_description": "<div>please</div>", "ticket_requester_email": "alice@example.com"
        }}))
        .unwrap();
    assert_eq!(
        (
            t.ticket.key.as_str(),
            t.requester_email.as_str(),
            t.text.as_str()
        ),
        (
            "77",
            "alice@example.com",
            "github readers for 1d because audit prep"
        )
    );
    let j = jsm(&server)
        .parse_inbound(&json!({"webhookEvent": "jira:issue_created", "issue": {
            "key": "IT-9", "fields": {"summary": "Access please",
            "description": "/access github readers for 2h because on-call handover",
            "reporter": {"emailAddress": "alice@example.com"}}}}))
        .unwrap();
    assert_eq!(j.ticket.key, "IT-9");
    assert_eq!(j.text, "github readers for 2h because on-call handover");

    // Through the app: filed from Freshservice, the outcome goes to ticket 77.
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/77/notes"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"conversation": {"id": 1}})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/77"))
        .and(body_json(json!({"status": 4})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 77}})))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_with_desk(
        "freshservice",
        &server,
        "base_url = \"{uri}\"\napi_key_file = \"{dir}/desk_secret\"",
    )
    .await;
    app.scim.create_user("alice@example.com").await;
    app.scim.create_group("readers").await;
    let r = reqwest::Client::new()
        .post(format!("{}/hooks/servicedesk/desk", app.base_url))
        .header("authorization", format!("Bearer {INBOUND}"))
        .json(&json!({"freshdesk_webhook": {
            "ticket_id": "#SR-77", "ticket_subject": "github readers for 1d because audit prep",
            "ticket_requester_email": "alice@example.com"
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let id = b["request"].as_str().unwrap().to_string();
    assert_eq!(app.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "ticket 77 resolved", || async {
        calls(&server)
            .await
            .into_iter()
            .find(|(c, _)| c == "PUT /api/v2/tickets/77")
    })
    .await;
    assert!(
        calls(&server)
            .await
            .iter()
            .all(|(c, _)| c != "POST /api/v2/tickets"),
        "the desk's ticket is the record: none is created"
    );
}
