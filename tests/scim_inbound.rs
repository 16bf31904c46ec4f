//! SCIM inbound: the IdP deactivating a user (Entra ID's PATCH, Okta's PUT, a DELETE) offboards
//! them: every grant revoked through its connector, every open request cancelled.

mod common;

use common::*;
use serde_json::{json, Value};

const STORY: &str = "github platform-admins for 4h because incident INC-42";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        let secret = c.base_dir.join("offboard_secret");
        std::fs::write(&secret, "idp-secret").unwrap();
        c.lifecycle.offboard_secret.file = Some(secret);
    })
    .await
}

async fn call(
    t: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = t
        .http()
        .request(method, format!("{}/scim/v2{path}", t.base_url))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_idp_deactivating_a_user_offboards_them() {
    let t = app().await;
    t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;
    let id = t.file_request(STORY).await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "granted", || async {
        (t.scim.members(&group).await.len() == 1).then_some(())
    })
    .await;
    // The membership shows in SCIM a moment before the grant is committed.
    eventually(10, "grant recorded", || async {
        (t.state_of(&id).await == "active").then_some(())
    })
    .await;
    let pending = t
        .file_request("github readers for 1d because reading docs")
        .await;

    // The IdP looks the user up before linking it, as Entra ID and Okta do.
    let get = reqwest::Method::GET;
    let (s, list) = call(
        &t,
        get.clone(),
        "/Users?filter=userName%20eq%20%22alice%40example.com%22",
        "idp-secret",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["totalResults"], 1);
    let user = list["Resources"][0].clone();
    assert_eq!(user["active"], true);
    let uid = user["id"].as_str().unwrap().to_string();
    let (_, none) = call(
        &t,
        get.clone(),
        "/Users?filter=userName%20eq%20%22nobody%40example.com%22",
        "idp-secret",
        None,
    )
    .await;
    assert_eq!(none["totalResults"], 0);

    // Bad input changes nothing: a wrong token, a body that is not a PatchOp.
    let patch = reqwest::Method::PATCH;
    let entra = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
    });
    let (s, _) = call(
        &t,
        patch.clone(),
        &format!("/Users/{uid}"),
        "wrong",
        Some(entra.clone()),
    )
    .await;
    assert_eq!(s, 401);
    let (s, e) = call(
        &t,
        patch.clone(),
        &format!("/Users/{uid}"),
        "idp-secret",
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(e["detail"].as_str().unwrap().contains("PatchOp"), "{e}");
    assert_eq!(
        t.app
            .store
            .active_grants_of("alice@example.com")
            .await
            .unwrap()
            .len(),
        1
    );

    // Entra ID's deactivation (note the string "False").
    let (s, after) = call(
        &t,
        patch,
        &format!("/Users/{uid}"),
        "idp-secret",
        Some(entra),
    )
    .await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["active"], false);
    eventually(15, "access removed in the app", || async {
        t.scim.members(&group).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(t.state_of(&pending).await, "cancelled");
    let (_, again) = call(&t, get, &format!("/Users/{uid}"), "idp-secret", None).await;
    assert_eq!(again["active"], false);
    let offboarded = t
        .app
        .store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "person.offboarded")
        .unwrap();
    assert_eq!(offboarded.actor, "scim:patch");
}

#[tokio::test]
async fn okta_put_and_delete_offboard_too() {
    let t = app().await;
    t.scim.create_user("alice@example.com").await;
    let group = t.scim.create_group("platform-admins").await;
    let id = t.file_request(STORY).await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "granted", || async {
        (t.scim.members(&group).await.len() == 1).then_some(())
    })
    .await;
    // Okta creates (links) the user, then later PUTs the whole resource with active false.
    let (s, created) = call(
        &t,
        reqwest::Method::POST,
        "/Users",
        "idp-secret",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "alice@example.com", "active": true,
            "emails": [{"value": "alice@example.com", "primary": true, "type": "work"}]
        })),
    )
    .await;
    assert_eq!(s, 201);
    let uid = created["id"].as_str().unwrap().to_string();
    let mut put = created.clone();
    put["active"] = json!(false);
    let (s, after) = call(
        &t,
        reqwest::Method::PUT,
        &format!("/Users/{uid}"),
        "idp-secret",
        Some(put),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(after["active"], false);
    eventually(15, "access removed", || async {
        t.scim.members(&group).await.is_empty().then_some(())
    })
    .await;
    // DELETE of another person: offboarded (nothing to revoke), 204.
    let bob = grantry::http::scim_inbound::user_id("bob@example.com");
    let (s, _) = call(
        &t,
        reqwest::Method::DELETE,
        &format!("/Users/{bob}"),
        "idp-secret",
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(t.app.store.is_offboarded("bob@example.com").await.unwrap());
}
