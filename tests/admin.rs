//! The admin pages over plain HTTP: who gets in (reverse-proxy header and OIDC sign-in against a
//! stand-in identity provider), the ledger's filters against a seeded store, one request's
//! history with its audit events, the export download, and hostile text rendered inert.

mod common;

use common::oidc::IdP;
use common::*;
use grantry::domain::{AccessDuration, AccessRequest, GrantId, RequestId, RequestState};
use grantry::store::grants::GrantRecord;

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

fn header_mode(c: &mut grantry::config::Config) {
    c.admin.enabled = true;
    c.admin.auth = "header".into();
    c.admin.header = "X-Forwarded-Email".into();
    c.admin.viewers = vec!["auditor@example.com".into()];
    c.admin.page_size = 3;
    c.lifecycle.it_admins = vec!["carol@example.com".into()];
    c.approvals.timeout = "60d".into();
}

async fn get_as(t: &TestApp, who: Option<&str>, path: &str) -> (u16, String) {
    let mut req = t.http().get(format!("{}{path}", t.base_url));
    if let Some(w) = who {
        req = req.header("X-Forwarded-Email", w);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Inserts a request as the store would hold it.
async fn seed(
    t: &TestApp,
    (requester, subject): (&str, &str),
    (app, entitlement): (&str, &str),
    state: RequestState,
    created: i64,
    reason: &str,
) -> String {
    let id = RequestId::generate();
    let r = AccessRequest {
        id: id.clone(),
        platform: "slack".into(),
        requester_chat_id: "U111".into(),
        requester_email: requester.into(),
        subject_email: subject.into(),
        app: app.into(),
        entitlement: entitlement.into(),
        duration: Some(AccessDuration::parse("4h").unwrap()),
        reason: reason.into(),
        ticket: None,
        extends_grant: None,
        state,
        created_at_ms: created,
        updated_at_ms: created,
    };
    let mut tx = t.app.store.begin().await.unwrap();
    tx.insert_request(&r, None, None).await.unwrap();
    tx.commit().await.unwrap();
    id.to_string()
}

async fn seed_grant(
    t: &TestApp,
    request_id: &str,
    subject: &str,
    state: &str,
    expires: i64,
) -> String {
    let id = GrantId::generate().as_str().to_string();
    let mut tx = t.app.store.begin().await.unwrap();
    tx.insert_grant(&GrantRecord {
        id: id.clone(),
        request_id: request_id.into(),
        subject_email: subject.into(),
        app: "github".into(),
        entitlement: "platform-admins".into(),
        connector: "scim".into(),
        account_id: "acct".into(),
        target: "platform-admins".into(),
        receipt: "{}".into(),
        state: state.into(),
        approved_by: Some("bob@example.com".into()),
        granted_at: expires - 4 * H,
        expires_at: Some(expires),
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn the_proxy_header_admits_it_admins_and_viewers_only() {
    let t = spawn_app_with(header_mode).await;
    let (s, body) = get_as(&t, None, "/admin").await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("sign-in proxy"), "{body}");
    let (s, _) = get_as(&t, Some(""), "/admin").await;
    assert_eq!(s, 401, "an empty header is nobody");
    let (s, body) = get_as(&t, Some("mallory@example.com"), "/admin").await;
    assert_eq!(s, 403);
    assert!(
        body.contains("mallory@example.com may not read the admin pages"),
        "{body}"
    );
    for path in [
        "/admin/grants",
        "/admin/charts",
        "/admin/export",
        "/admin/export/download",
    ] {
        assert_eq!(
            get_as(&t, Some("mallory@example.com"), path).await.0,
            403,
            "{path}"
        );
    }
    let (s, body) = get_as(&t, Some("Carol@Example.com"), "/admin").await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("Signed in as carol@example.com (IT admin)"),
        "{body}"
    );
    assert!(body.contains("<html lang=\"en\">"));
    assert!(!body.contains("<script"), "no JavaScript");
    let (s, body) = get_as(&t, Some("auditor@example.com"), "/admin/charts").await;
    assert_eq!(s, 200);
    assert!(body.contains("(viewer)"), "{body}");
    let r = t
        .http()
        .get(format!("{}/admin", t.base_url))
        .header("X-Forwarded-Email", "carol@example.com")
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn the_admin_pages_are_not_served_unless_enabled() {
    let t = spawn_app().await;
    assert_eq!(get_as(&t, Some("carol@example.com"), "/admin").await.0, 404);
}

#[tokio::test]
async fn filters_pick_the_right_requests_and_grants() {
    let t = spawn_app_with(header_mode).await;
    let now = t.app.now_ms();
    let day = |n: i64| now - n * D;
    let alice_gh = seed(
        &t,
        ("alice@example.com", "alice@example.com"),
        ("github", "platform-admins"),
        RequestState::Active,
        day(10),
        "deploy the fix",
    )
    .await;
    let alice_pending = seed(
        &t,
        ("alice@example.com", "alice@example.com"),
        ("github", "readers"),
        RequestState::PendingApproval,
        day(2),
        "read the code",
    )
    .await;
    let bob_for_dave = seed(
        &t,
        ("bob@example.com", "dave@example.com"),
        ("github", "readers"),
        RequestState::Denied,
        day(5),
        "new hire access",
    )
    .await;
    let mallory = seed(
        &t,
        ("mallory@example.com", "mallory@example.com"),
        ("other", "thing"),
        RequestState::Rejected,
        day(1),
        "just because",
    )
    .await;
    let (s, body) = get_as(&t, Some("carol@example.com"), "/admin?person=ALICE").await;
    assert_eq!(s, 200);
    assert!(
        body.contains(&alice_gh) && body.contains(&alice_pending),
        "{body}"
    );
    assert!(!body.contains(&bob_for_dave) && !body.contains(&mallory));
    // The subject counts as the person too.
    let body = get_as(
        &t,
        Some("carol@example.com"),
        "/admin?person=dave%40example.com",
    )
    .await
    .1;
    assert!(
        body.contains(&bob_for_dave) && !body.contains(&alice_gh),
        "{body}"
    );
    let body = get_as(
        &t,
        Some("carol@example.com"),
        "/admin?app=github&state=pending_approval",
    )
    .await
    .1;
    assert!(body.contains(&alice_pending), "{body}");
    assert!(!body.contains(&alice_gh) && !body.contains(&bob_for_dave));
    // Dates: opened from 6 days ago up to (and including) 2 days ago.
    let date = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let body = get_as(
        &t,
        Some("carol@example.com"),
        &format!("/admin?from={}&to={}", date(day(6)), date(day(2))),
    )
    .await
    .1;
    assert!(
        body.contains(&bob_for_dave) && body.contains(&alice_pending),
        "{body}"
    );
    assert!(!body.contains(&alice_gh) && !body.contains(&mallory));
    // LIKE's wildcards are literal.
    let body = get_as(&t, Some("carol@example.com"), "/admin?person=%25")
        .await
        .1;
    assert!(body.contains("No requests match these filters."), "{body}");
    // A bad date is named and ignored; the form keeps what was typed, escaped.
    let body = get_as(&t, Some("carol@example.com"), "/admin?from=%22%3E%3Cb%3E")
        .await
        .1;
    assert!(body.contains("is not a date"), "{body}");
    assert!(!body.contains("\"><b>"), "{body}");
    // Newest first, three to a page, then the next page.
    let body = get_as(&t, Some("carol@example.com"), "/admin").await.1;
    let pos = |id: &str| body.find(id).unwrap_or_else(|| panic!("{id} missing"));
    assert!(pos(&mallory) < pos(&alice_pending) && pos(&alice_pending) < pos(&bob_for_dave));
    assert!(!body.contains(&alice_gh), "page 1 holds three");
    assert!(body.contains("href=\"/admin?page=2\""), "{body}");
    let body = get_as(&t, Some("carol@example.com"), "/admin?page=2")
        .await
        .1;
    assert!(
        body.contains(&alice_gh) && !body.contains(&mallory),
        "{body}"
    );

    // Grants: by holder, state, and ending soon.
    let soon = seed_grant(&t, &alice_gh, "alice@example.com", "active", now + 5 * H).await;
    let later = seed_grant(
        &t,
        &alice_pending,
        "alice@example.com",
        "active",
        now + 10 * D,
    )
    .await;
    let gone = seed_grant(&t, &bob_for_dave, "dave@example.com", "revoked", now - H).await;
    let body = get_as(&t, Some("carol@example.com"), "/admin/grants?expiring=1d")
        .await
        .1;
    assert!(
        body.contains(&soon) && !body.contains(&later) && !body.contains(&gone),
        "{body}"
    );
    let body = get_as(&t, Some("carol@example.com"), "/admin/grants?state=revoked")
        .await
        .1;
    assert!(body.contains(&gone) && !body.contains(&soon), "{body}");
    let body = get_as(
        &t,
        Some("carol@example.com"),
        "/admin/grants?person=alice&app=github",
    )
    .await
    .1;
    assert!(
        body.contains(&soon) && body.contains(&later) && !body.contains(&gone),
        "{body}"
    );
    assert!(
        body.contains(&format!("href=\"/admin/requests/{alice_gh}\"")),
        "grants link to their request"
    );
}

#[tokio::test]
async fn a_request_page_shows_its_history_and_hostile_text_stays_text() {
    let t = spawn_app_with(header_mode).await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;
    let id = t
        .file_request("github platform-admins for 4h because <script>alert('x')</script> INC-42")
        .await;
    assert_eq!(t.click("U222", "grantry.approve", &id).await, 200);
    eventually(15, "grant", || async {
        t.app.store.grant_for_request(&id).await.unwrap()
    })
    .await;
    let (s, body) = get_as(
        &t,
        Some("carol@example.com"),
        &format!("/admin/requests/{id}"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("<script>"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{body}"
    );
    for action in ["request.submitted", "request.approved"] {
        assert!(body.contains(action), "{action} missing: {body}");
    }
    assert!(body.contains("bob@example.com"), "the approver");
    assert!(
        body.contains("audit events of this request are intact"),
        "{body}"
    );
    let events = t.app.store.audit_for_request(&id).await.unwrap();
    assert!(events.len() >= 3);
    let mut last = 0;
    for e in &events {
        let at = body
            .find(&format!("<td class=\"num\">{}</td>", e.seq))
            .unwrap();
        assert!(at > last, "events in order");
        last = at;
    }
    // Someone edits one of its events in the database: the page says so, and names the event.
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&t.db.url).await.unwrap();
        sqlx::query("UPDATE audit_events SET actor = 'nobody@example.com' WHERE seq = $1")
            .bind(events[0].seq)
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let body = get_as(
        &t,
        Some("carol@example.com"),
        &format!("/admin/requests/{id}"),
    )
    .await
    .1;
    assert!(body.contains("1 of the"), "{body}");
    assert!(body.contains("do not verify"), "{body}");
    assert!(
        body.contains("its content was changed after it was written"),
        "{body}"
    );
    let (s, body) = get_as(&t, Some("carol@example.com"), "/admin/requests/R-00000000").await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(
        get_as(&t, Some("carol@example.com"), "/admin/requests/%3Cx%3E")
            .await
            .0,
        404
    );
    // The ledger escapes the reason as well.
    let body = get_as(&t, Some("carol@example.com"), "/admin").await.1;
    assert!(body.contains(&id) && !body.contains("<script>"), "{body}");
}

#[tokio::test]
async fn the_export_downloads_the_verified_chain() {
    let t = spawn_app_with(header_mode).await;
    let id = t
        .file_request("github platform-admins for 4h because incident INC-42")
        .await;
    let fetch = |q: &'static str| {
        t.http()
            .get(format!("{}/admin/export/download?{q}", t.base_url))
            .header("X-Forwarded-Email", "auditor@example.com")
            .send()
    };
    let r = fetch("format=csv&since=").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"grantry-audit-all.csv\""
    );
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("# grantry audit export; chain_verified=true; head="),
        "{text}"
    );
    assert_eq!(
        lines.next().unwrap(),
        "seq,at,actor,action,request_id,grant_id,detail,prev_hash,hash"
    );
    assert!(text.contains(&id));

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let r = t
        .http()
        .get(format!(
            "{}/admin/export/download?format=jsonl&since={today}",
            t.base_url
        ))
        .header("X-Forwarded-Email", "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        r.headers()["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"grantry-audit-since-{today}.jsonl\"")
    );
    let text = r.text().await.unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["chain_verified"], true, "{text}");
    assert!(text.lines().count() > 1);
    let r = fetch("since=yesterday").await.unwrap();
    assert_eq!(r.status(), 400);
}

/// A client that does not follow redirects, and the cookies it was given.
struct Browser {
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            assert!(
                c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/admin"),
                "{c}"
            );
            let (kv, _) = c.split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
    }

    async fn get(&mut self, url: &str) -> (u16, String, String) {
        let r = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, location, r.text().await.unwrap())
    }
}

/// Signs in as `email` through the provider's form; returns the final redirect (back to the app).
async fn sign_in(t: &TestApp, idp: &IdP, b: &mut Browser, email: &str) -> String {
    let (s, to_login, _) = b
        .get(&format!("{}/admin/grants?state=active", t.base_url))
        .await;
    assert_eq!(s, 303);
    assert_eq!(
        to_login,
        "/admin/login?next=%2Fadmin%2Fgrants%3Fstate%3Dactive"
    );
    let (s, authorize, _) = b.get(&format!("{}{to_login}", t.base_url)).await;
    assert_eq!(s, 303);
    assert!(
        authorize.starts_with(&format!("{}/authorize?", idp.issuer())),
        "{authorize}"
    );
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let (s, _, form) = b.get(&authorize).await;
    assert_eq!(s, 200, "{form}");
    let q: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(authorize.split_once('?').unwrap().1).unwrap();
    let mut fields: Vec<(&str, String)> = ["redirect_uri", "state", "nonce", "code_challenge"]
        .iter()
        .map(|k| (*k, q[*k].clone()))
        .collect();
    fields.push(("email", email.into()));
    let r = b
        .http
        .post(format!("{}/authorize", idp.issuer()))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn oidc_sign_in_sets_a_session_and_refuses_forgeries() {
    let idp = IdP::start().await;
    let t = spawn_app_at(|c, base, dir| {
        header_mode(c);
        c.admin = idp.admin_config(dir, base);
        c.admin.viewers = vec!["auditor@example.com".into()];
    })
    .await;
    let mut b = Browser::new();
    let callback = sign_in(&t, &idp, &mut b, "carol@example.com").await;
    assert!(
        callback.starts_with(&format!("{}/admin/callback?code=", t.base_url)),
        "{callback}"
    );

    // The way back with another state is refused, and the code is not exchanged.
    let tampered = callback.replace("state=", "state=x");
    let (s, _, body) = b.get(&tampered).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(idp.token_calls(), 0);
    // Without the sign-in cookie (another browser) it is refused too.
    let (s, _, _) = Browser::new().get(&callback).await;
    assert_eq!(s, 401);

    let (s, back, _) = b.get(&callback).await;
    assert_eq!(s, 303);
    assert_eq!(back, "/admin/grants?state=active");
    assert_eq!(idp.token_calls(), 1);
    assert!(idp.refusals().is_empty(), "{:?}", idp.refusals());
    assert!(b.cookies.contains_key("grantry_admin"));
    assert!(
        !b.cookies.contains_key("grantry_admin_login"),
        "the sign-in state is spent"
    );
    let (s, _, body) = b.get(&format!("{}{back}", t.base_url)).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("Signed in as carol@example.com (IT admin)"),
        "{body}"
    );
    assert!(body.contains("action=\"/admin/logout\""));
    // The code is single-use: replaying the callback fails at the provider.
    let (s, _, _) = b.get(&callback).await;
    assert_eq!(s, 401, "the sign-in state cookie was spent");

    // A forged session (payload changed, signature kept) is no session.
    let session = b.cookies["grantry_admin"].clone();
    let (_, sig) = session.split_once('.').unwrap();
    let forged = format!(
        "{}.{sig}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"email":"mallory@example.com","exp":9999999999}"#
        )
    );
    let mut m = Browser::new();
    m.cookies.insert("grantry_admin".into(), forged);
    let (s, loc, _) = m.get(&format!("{}/admin", t.base_url)).await;
    assert_eq!((s, loc.as_str()), (303, "/admin/login?next=%2Fadmin"));

    // Someone the provider knows but grantry does not let in: 403.
    let mut m = Browser::new();
    let callback = sign_in(&t, &idp, &mut m, "mallory@example.com").await;
    let (s, back, _) = m.get(&callback).await;
    assert_eq!(s, 303);
    let (s, _, body) = m.get(&format!("{}{back}", t.base_url)).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("mallory@example.com may not read the admin pages"));

    // Sessions end: after session_hours the cookie no longer opens the pages.
    t.clock.advance_ms(9 * H);
    let (s, _, _) = b.get(&format!("{}/admin", t.base_url)).await;
    assert_eq!(s, 303);

    // Only admin paths are returned to.
    let (s, loc, _) = b
        .get(&format!(
            "{}/admin/login?next=https://evil.example/",
            t.base_url
        ))
        .await;
    assert_eq!(s, 303);
    let cookie = b.cookies["grantry_admin_login"].clone();
    let payload = cookie.split_once('.').unwrap().0;
    let state: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["next"], "/admin");
    assert!(loc.starts_with(idp.issuer()));
}
