//! Microsoft Teams end to end: Bot Framework JWTs checked against our own keys served by a local
//! OpenID metadata endpoint; the walking-skeleton story (message → cards → Approve → SCIM
//! membership → cards updated) through `/teams/messages` and the Bot Connector (Prism serving
//! Microsoft's Connector API description); the request form and Deny with a reason; every card
//! checked against the Adaptive Card schema.

mod common;

use common::teams::*;
use common::*;
use serde_json::{json, Value};

struct Teams {
    t: TestApp,
    keys: Keys,
    bf: Connector,
}

async fn start() -> Teams {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut grantry::config::Config) + Send + 'static) -> Teams {
    let keys = Keys::start().await;
    let bf = Connector::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("teams_password");
    std::fs::write(&password, "bot-client-secret").unwrap();
    let (meta, token_url, service_url) = (
        keys.metadata_url.clone(),
        format!("{}{TOKEN_PATH}", bf.front.url),
        bf.service_url(),
    );
    let t = spawn_app_with(move |c| {
        c.teams.app_id = APP_ID.into();
        c.teams.app_password.file = Some(password);
        c.teams.openid_metadata_url = meta;
        c.teams.token_url = token_url;
        c.teams.service_url = service_url;
        c.teams.tenant_id = Some(TENANT.into());
        c.teams.timeout_secs = 5;
        tweak(c);
    })
    .await;
    std::mem::forget(secrets); // the app reads the password at start; keep the file anyway
    Teams { t, keys, bf }
}

impl Teams {
    async fn post(&self, activity: &Value, token: Option<String>) -> (u16, Value) {
        let mut req = self
            .t
            .http()
            .post(format!("{}/teams/messages", self.t.base_url))
            .json(activity);
        if let Some(tok) = token {
            req = req.bearer_auth(tok);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Posts with a valid token for the activity's service URL.
    async fn send(&self, activity: &Value) -> (u16, Value) {
        let url = activity["serviceUrl"].as_str().unwrap().to_string();
        let token = self.keys.token(&url, self.t.now_secs(), json!({}));
        self.post(activity, Some(token)).await
    }

    /// The text of the messages sent to a conversation.
    fn texts_to(&self, conversation: &str) -> Vec<String> {
        self.bf
            .sent()
            .into_iter()
            .filter(|(c, _)| c == conversation)
            .map(|(_, a)| a["text"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn personal(user: &str) -> String {
    format!("a:personal-{user}")
}

fn card_of(activity: &Value) -> &Value {
    &activity["attachments"][0]["content"]
}

fn assert_valid_card(card: &Value) {
    let errors = schema_errors(card);
    assert!(
        errors.is_empty(),
        "card breaks the Adaptive Card schema: {errors:?}\n{card}"
    );
}

#[tokio::test]
async fn tokens_are_checked_as_the_bot_framework_requires() {
    let h = start().await;
    let url = h.bf.service_url();
    let now = h.t.now_secs();
    let msg = message(&url, ALICE, "access list");
    let before = h.t.fingerprint().await;

    // No token, a token for someone else, from someone else, expired, for another service
    // URL, signed by a key the metadata does not list, or not even a JWT: 401, nothing stored.
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        (
            "wrong audience",
            Some(h.keys.token(&url, now, json!({"aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            Some(
                h.keys
                    .token(&url, now, json!({"iss": "https://sts.windows.net/evil/"})),
            ),
        ),
        (
            "expired",
            Some(
                h.keys
                    .token(&url, now, json!({"exp": now - 301, "nbf": now - 7200})),
            ),
        ),
        (
            "wrong serviceUrl",
            Some(h.keys.token("https://evil.example/", now, json!({}))),
        ),
        (
            "unknown key id",
            Some(
                h.keys
                    .token_with_kid("some-other-key", &url, now, json!({})),
            ),
        ),
        ("not a JWT", Some("not.a.jwt".into())),
    ];
    for (what, token) in cases {
        let (status, _) = h.post(&msg, token).await;
        assert_eq!(status, 401, "{what}");
    }
    // A token whose signature does not match its claims.
    let good = h.keys.token(&url, now, json!({}));
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = h
        .keys
        .token(&url, now, json!({"aud": "x"}))
        .split('.')
        .nth(1)
        .unwrap()
        .into();
    assert_eq!(
        h.post(&msg, Some(parts.join("."))).await.0,
        401,
        "tampered claims"
    );

    assert_eq!(
        h.t.fingerprint().await,
        before,
        "a refused call changed something"
    );
    assert!(h
        .t
        .app
        .store
        .teams_conversation_of(ALICE)
        .await
        .unwrap()
        .is_none());
    // An unknown kid refetches the keys once, not on every call.
    let fetches = h
        .keys
        .jwks_fetches
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetches <= 2, "keys fetched {fetches} times");

    // Within the 5-minute skew, and valid: accepted, and the conversation remembered.
    let late = h.keys.token(&url, now, json!({"exp": now - 120}));
    let (status, _) = h.post(&msg, Some(late)).await;
    assert_eq!(status, 200);
    let r =
        h.t.app
            .store
            .teams_conversation_of(ALICE)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(r.conversation_id, personal(ALICE));
    assert_eq!(r.service_url, url);
    assert_eq!(r.tenant_id.as_deref(), Some(TENANT));

    // A malformed activity with a token: 400 with a reason.
    let (status, _) = h
        .post(
            &json!({"type": "message"}),
            Some(h.keys.token(&url, now, json!({}))),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_walking_skeleton_through_teams() {
    let h = start().await;
    let url = h.bf.service_url();
    let alice = h.t.scim.create_user("alice@example.com").await;
    let group = h.t.scim.create_group("platform-admins").await;

    // 1. Alice writes to the bot; the answer comes as a Bot Connector message.
    let (status, _) = h
        .send(&message(
            &url,
            ALICE,
            "<at>grantry</at> access github platform-admins for 4h because incident INC-42",
        ))
        .await;
    assert_eq!(status, 200);
    let reply = eventually(10, "reply to Alice", || async {
        h.texts_to(&personal(ALICE))
            .into_iter()
            .find(|t| t.contains("Request R-"))
    })
    .await;
    assert!(
        reply.contains("Bob Owner or Carol Owner") && reply.contains("for approval"),
        "{reply}"
    );
    let id = reply.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(h.t.state_of(&id).await, "pending_approval");

    // 2. Bob and Carol never wrote to the bot: a 1:1 conversation is created for each, and each
    //    gets an Adaptive Card with Approve and Deny.
    let cards = eventually(15, "two cards", || async {
        let c: Vec<(String, Value)> =
            h.bf.sent()
                .into_iter()
                .filter(|(_, a)| a["attachments"].is_array())
                .collect();
        (c.len() >= 2).then_some(c)
    })
    .await;
    let created: Vec<Value> =
        h.bf.front
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == "/v3/conversations")
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect();
    let mut members: Vec<String> = created
        .iter()
        .map(|b| b["members"][0]["id"].as_str().unwrap().to_string())
        .collect();
    members.sort();
    assert_eq!(members, [BOB.to_string(), CAROL.to_string()]);
    assert!(created
        .iter()
        .all(|b| b["tenantId"] == TENANT && b["bot"]["id"] == format!("28:{APP_ID}")));
    for (_, a) in &cards {
        let card = card_of(a);
        let s = card.to_string();
        for needle in [
            id.as_str(),
            "Alice Engineer",
            "Platform admins",
            "4h",
            "incident INC-42",
            "grantry.approve",
            "grantry.deny",
        ] {
            assert!(s.contains(needle), "card lacks {needle}: {s}");
        }
        assert_valid_card(card);
    }
    // Every call carried the connector token; the token was fetched once.
    for s in
        h.bf.front
            .seen()
            .iter()
            .filter(|s| s.path.starts_with("/v3/"))
    {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {CONNECTOR_TOKEN}").as_str())
        );
    }
    assert_eq!(
        h.bf.token_calls.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // 3. Mallory is no approver: refused, told, audited, nothing changed.
    let (status, body) = h
        .send(&invoke(
            &url,
            MALLORY,
            "grantry.approve",
            json!({"request_id": id}),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["type"], "application/vnd.microsoft.activity.message");
    assert_eq!(h.t.state_of(&id).await, "pending_approval");

    // 4. Bob approves: the invoke answer is his card, decided.
    let (status, body) = h
        .send(&invoke(
            &url,
            BOB,
            "grantry.approve",
            json!({"request_id": id}),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["type"], "application/vnd.microsoft.card.adaptive");
    let answered = body["value"].to_string();
    assert!(answered.contains("Approved by Bob Owner"), "{answered}");
    assert!(
        !answered.contains("Action.Execute"),
        "a live action stayed: {answered}"
    );
    assert_valid_card(&body["value"]);

    // 5. Alice is a member in SCIM; the grant names Bob; she is told in Teams.
    eventually(15, "membership in SCIM", || async {
        h.t.scim
            .members(&group)
            .await
            .contains(&alice)
            .then_some(())
    })
    .await;
    eventually(10, "request active", || async {
        (h.t.state_of(&id).await == "active").then_some(())
    })
    .await;
    let grant = h.t.app.store.grant_for_request(&id).await.unwrap().unwrap();
    assert_eq!(grant.approved_by.as_deref(), Some("bob@example.com"));
    eventually(10, "Alice told it is active", || async {
        h.texts_to(&personal(ALICE))
            .into_iter()
            .find(|t| t.contains("is active"))
    })
    .await;

    // 6. Both cards are replaced for everyone (PUT), showing the decision, no live action.
    let updates = eventually(10, "both cards updated", || async {
        let u = h.bf.updated();
        (u.len() >= 2).then_some(u)
    })
    .await;
    for (path, a) in &updates {
        let s = a.to_string();
        assert!(
            s.contains("Approved by Bob Owner") && !s.contains("Action.Execute"),
            "{path}: {s}"
        );
    }
    h.bf.front.assert_conforms();
}

#[tokio::test]
async fn the_request_form_and_deny_with_a_reason() {
    let h = start().await;
    let url = h.bf.service_url();

    // "access" alone sends the form.
    assert_eq!(h.send(&message(&url, ALICE, "access")).await.0, 200);
    let form = eventually(10, "the form", || async {
        h.bf.sent()
            .into_iter()
            .find(|(c, a)| c == &personal(ALICE) && a["attachments"].is_array())
    })
    .await;
    let card = card_of(&form.1).clone();
    assert!(
        card.to_string().contains("Input.ChoiceSet")
            && card.to_string().contains("github/platform-admins")
    );
    assert_valid_card(&card);

    // A short reason: the form comes back with the same words Slack shows, values kept.
    let data =
        json!({"access": "github/platform-admins", "duration": "2h", "reason": "x", "ticket": ""});
    let (status, body) = h.send(&invoke(&url, ALICE, "grantry.request", data)).await;
    assert_eq!(status, 200);
    let s = body["value"].to_string();
    assert!(
        s.contains("Say why in at least") && s.contains("\"value\":\"2h\""),
        "{s}"
    );
    assert_valid_card(&body["value"]);
    let before = h.t.fingerprint().await;
    assert_eq!(before.1, 0, "nothing filed");

    // An unknown entitlement: named.
    let data = json!({"access": "github/nope", "duration": "", "reason": "because I need it now", "ticket": ""});
    let (_, body) = h.send(&invoke(&url, ALICE, "grantry.request", data)).await;
    assert!(body["value"]
        .to_string()
        .contains("Choose one of this app's access levels"));

    // Right: filed; the form is replaced by what happens next.
    let data = json!({"access": "github/platform-admins", "duration": "2h", "reason": "incident INC-7 needs a hand", "ticket": "INC-7"});
    let (_, body) = h.send(&invoke(&url, ALICE, "grantry.request", data)).await;
    let s = body["value"].to_string();
    assert!(
        s.contains("Request R-") && s.contains("for approval"),
        "{s}"
    );
    let id = s
        .split("Request ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // Deny without a reason: asked for one, nothing changes.
    let (_, body) = h
        .send(&invoke(
            &url,
            BOB,
            "grantry.deny",
            json!({"request_id": id, "reason": ""}),
        ))
        .await;
    assert!(
        body["value"].as_str().unwrap().contains("Say why you deny"),
        "{body}"
    );
    assert_eq!(h.t.state_of(&id).await, "pending_approval");

    // With a reason: denied; Alice reads it.
    let (_, body) = h
        .send(&invoke(
            &url,
            BOB,
            "grantry.deny",
            json!({"request_id": id, "reason": "use the on-call rota"}),
        ))
        .await;
    assert!(
        body["value"].to_string().contains("Denied by Bob Owner"),
        "{body}"
    );
    assert_eq!(h.t.state_of(&id).await, "rejected");
    eventually(10, "Alice told why", || async {
        h.texts_to(&personal(ALICE))
            .into_iter()
            .find(|t| t.contains("use the on-call rota"))
    })
    .await;
    h.bf.front.assert_conforms();
}

/// The Teams app manifest: the fields Teams requires, the bot, its commands, icons of the sizes
/// Teams asks for (color 192×192, outline 32×32 with transparency).
#[test]
fn the_teams_app_manifest_is_complete() {
    let dir = manifest_dir().join("manifests/teams");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    for key in [
        "$schema",
        "manifestVersion",
        "version",
        "id",
        "developer",
        "name",
        "description",
        "icons",
        "accentColor",
        "bots",
    ] {
        assert!(!m[key].is_null(), "manifest lacks {key}");
    }
    assert!(m["$schema"]
        .as_str()
        .unwrap()
        .contains(&format!("v{}", m["manifestVersion"].as_str().unwrap())));
    assert!(m["name"]["short"].as_str().unwrap().len() <= 30);
    assert!(m["description"]["short"].as_str().unwrap().len() <= 80);
    assert!(m["description"]["full"].as_str().unwrap().len() <= 4000);
    let bot = &m["bots"][0];
    assert_eq!(bot["scopes"], json!(["personal", "team", "groupChat"]));
    let commands = bot["commandLists"][0]["commands"].as_array().unwrap();
    assert!(commands.len() <= 10);
    for c in commands {
        // Each command is a word grantry's command language understands.
        let title = c["title"].as_str().unwrap();
        assert!(title.len() <= 32 && c["description"].as_str().unwrap().len() <= 128);
        if title != "access" {
            let parsed = grantry::chat::command::parse(title);
            assert!(
                parsed.is_ok()
                    || matches!(parsed, Err(grantry::chat::command::CommandError::Usage(_))),
                "{title}: {parsed:?}"
            );
        }
    }
    for (icon, size, alpha) in [("color", 192u32, false), ("outline", 32, true)] {
        let png = std::fs::read(dir.join(m["icons"][icon].as_str().unwrap())).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((w, h), (size, size), "{icon} icon size");
        if alpha {
            assert_eq!(png[25], 6, "the outline icon needs an alpha channel");
        }
    }
}

/// A company on Teams only: no Slack token, Slack's endpoints closed, IT's notices in the Teams
/// status channel.
#[tokio::test]
async fn a_teams_only_deployment() {
    let h = start_with(|c| {
        c.slack.bot_token = grantry::config::SecretSource::default();
        c.slack.signing_secret = grantry::config::SecretSource::default();
        c.teams.status_conversation = Some("19:it-status@thread.tacv2".into());
        c.lifecycle.it_admins = vec!["carol@example.com".into()];
    })
    .await;
    assert!(h.t.app.chat("slack").is_none());
    assert_eq!(
        h.t.app.status_channel(),
        Some(("teams", "19:it-status@thread.tacv2"))
    );
    let (status, _) = h.t.command("U111", "list", "trig-1").await;
    assert_eq!(status, 401, "Slack is closed");

    // Offboarding tells IT, in Teams.
    grantry::flow::lifecycle::offboard(&h.t.app, "alice@example.com", "it@example.com")
        .await
        .unwrap();
    let text = eventually(10, "IT told in Teams", || async {
        h.texts_to("19:it-status@thread.tacv2").into_iter().next()
    })
    .await;
    assert!(text.contains("alice@example.com"), "{text}");

    // `access digest`: refused for Alice; for Carol (IT) the digest and its chart go to IT's
    // channel in Teams.
    assert_eq!(
        h.send(&message(&url_of(&h), ALICE, "access digest"))
            .await
            .0,
        200
    );
    eventually(10, "Alice refused", || async {
        h.texts_to(&personal(ALICE))
            .into_iter()
            .find(|t| t.contains("Only IT admins"))
    })
    .await;
    assert_eq!(h.send(&message(&url_of(&h), CAROL, "digest")).await.0, 200);
    eventually(10, "Carol told", || async {
        h.texts_to(&personal(CAROL))
            .into_iter()
            .find(|t| t.contains("Posting the digest"))
    })
    .await;
    let posted = eventually(15, "digest and chart in IT's channel", || async {
        let to_it: Vec<Value> =
            h.bf.sent()
                .into_iter()
                .filter(|(c, _)| c == "19:it-status@thread.tacv2")
                .map(|(_, a)| a)
                .collect();
        (to_it.len() >= 3).then_some(to_it)
    })
    .await;
    assert!(
        posted
            .iter()
            .any(|a| a["text"].as_str().unwrap_or("").contains("igest")),
        "{posted:?}"
    );
    let chart = posted
        .iter()
        .find(|a| a["attachments"][0]["contentType"] == "image/png")
        .expect("the chart as an inline image");
    let url = chart["attachments"][0]["contentUrl"].as_str().unwrap();
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(url.trim_start_matches("data:image/png;base64,"))
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    h.bf.front.assert_conforms();
}

fn url_of(h: &Teams) -> String {
    h.bf.service_url()
}
