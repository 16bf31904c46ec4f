//! Teams harness: our own signing key served by a local OpenID metadata endpoint (as
//! login.botframework.com serves Microsoft's), tokens signed with it the way the Bot Connector
//! signs them, the Bot Connector itself as Prism serving its official Swagger description
//! (`../shared/oracles/teams/connector-api/`) behind a [`Front`] that answers the OAuth token
//! endpoint and hands out conversation and activity ids, and a check of rendered cards against
//! the Adaptive Card schema.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::prism::{Answer, Front, Prism};

pub const APP_ID: &str = "0b6c3c1e-4c6f-4b8e-9d3a-7e2f5a1d9c00";
pub const ISSUER: &str = "https://api.botframework.com";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const KID: &str = "grantry-test-key";

pub const ALICE: &str = "a1a1a1a1-0000-4000-8000-000000000111";
pub const BOB: &str = "b2b2b2b2-0000-4000-8000-000000000222";
pub const CAROL: &str = "c3c3c3c3-0000-4000-8000-000000000333";
pub const MALLORY: &str = "d6d6d6d6-0000-4000-8000-000000000666";

/// Our key pair and the metadata endpoint publishing its public half.
pub struct Keys {
    pair: ring::rsa::KeyPair,
    /// `…/v1/.well-known/openidconfiguration` on 127.0.0.1.
    pub metadata_url: String,
    /// How many times the JWKS was fetched.
    pub jwks_fetches: Arc<AtomicUsize>,
}

/// The modulus and exponent of a PKCS#1 DER RSA public key.
pub fn n_e(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(d: &[u8], at: usize) -> (usize, usize) {
        // (content start, content length) of the TLV at `at`.
        let len0 = d[at + 1] as usize;
        if len0 < 0x80 {
            (at + 2, len0)
        } else {
            let n = len0 & 0x7f;
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | d[at + 2 + i] as usize;
            }
            (at + 2 + n, len)
        }
    }
    let (seq, _) = read(der, 0);
    let (n_at, n_len) = read(der, seq);
    let (e_at, e_len) = read(der, n_at + n_len);
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|&&x| x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (
        strip(&der[n_at..n_at + n_len]),
        strip(&der[e_at..e_at + e_len]),
    )
}

impl Keys {
    /// A fresh key, endorsed for `msteams`, served on a random port.
    pub async fn start() -> Keys {
        let (pkcs8_pem, _, public_der) = super::prism::rsa_test_key();
        let b64: String = pkcs8_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let pair = ring::rsa::KeyPair::from_pkcs8(&STANDARD.decode(b64).unwrap()).unwrap();
        let (n, e) = n_e(&public_der);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let jwks = json!({"keys": [
            {"kty": "RSA", "use": "sig", "kid": KID, "n": URL_SAFE_NO_PAD.encode(&n),
             "e": URL_SAFE_NO_PAD.encode(&e), "endorsements": ["msteams", "skype"]},
        ]});
        let fetches = Arc::new(AtomicUsize::new(0));
        let meta = json!({"issuer": ISSUER, "jwks_uri": format!("{base}/v1/keys"),
            "id_token_signing_alg_values_supported": ["RS256"]});
        let counter = fetches.clone();
        let app = Router::new()
            .route(
                "/v1/.well-known/openidconfiguration",
                get(move || async move { Json(meta) }),
            )
            .route(
                "/v1/keys",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Json(jwks) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Keys {
            pair,
            metadata_url: format!("{base}/v1/.well-known/openidconfiguration"),
            jwks_fetches: fetches,
        }
    }

    /// A token as the Bot Connector sends it, with `claims` merged over the right ones.
    pub fn token(&self, service_url: &str, now_secs: i64, overrides: Value) -> String {
        self.token_with_kid(KID, service_url, now_secs, overrides)
    }

    /// The same, naming key `kid`.
    pub fn token_with_kid(
        &self,
        kid: &str,
        service_url: &str,
        now_secs: i64,
        overrides: Value,
    ) -> String {
        let mut claims = json!({
            "iss": ISSUER, "aud": APP_ID, "serviceurl": service_url,
            "nbf": now_secs - 60, "exp": now_secs + 3600, "iat": now_secs - 60,
        });
        if let Value::Object(o) = overrides {
            for (k, v) in o {
                claims[k] = v;
            }
        }
        let header = json!({"alg": "RS256", "kid": kid, "typ": "JWT", "x5t": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// The Bot Connector: Prism serving the official Connector API description, behind a front that
/// answers the token endpoint and gives every conversation and activity its own id.
pub struct Connector {
    pub front: Front,
    _prism: Prism,
    pub token_calls: Arc<AtomicUsize>,
}

pub const TOKEN_PATH: &str = "/botframework.com/oauth2/v2.0/token";
pub const CONNECTOR_TOKEN: &str = "bf-access-token";

impl Connector {
    pub async fn start() -> Connector {
        let prism =
            Prism::start_oracle("teams/connector-api/botbuilder-js.ConnectorAPI-v3.swagger.json")
                .await;
        let n = Arc::new(AtomicUsize::new(0));
        let token_calls = Arc::new(AtomicUsize::new(0));
        let tc = token_calls.clone();
        let front = Front::start(&prism, move |method, path, _model| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            if path == TOKEN_PATH {
                tc.fetch_add(1, Ordering::SeqCst);
                return Answer {
                    direct: Some((
                        200,
                        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                               "access_token": CONNECTOR_TOKEN}),
                    )),
                    ..Answer::default()
                };
            }
            let body = match (method.as_str(), path) {
                ("POST", "/v3/conversations") => json!({"id": format!("a:conv-{i}")}),
                ("POST", _) => json!({"id": format!("act-{i}")}),
                ("PUT", p) => json!({"id": p.rsplit('/').next().unwrap_or("")}),
                _ => return Answer::default(),
            };
            Answer {
                code: Some(200),
                body: Some(body),
                direct: None,
            }
        })
        .await;
        Connector {
            front,
            _prism: prism,
            token_calls,
        }
    }

    /// The service URL activities carry (the bot answers there).
    pub fn service_url(&self) -> String {
        format!("{}/", self.front.url)
    }

    /// Bodies of the activities the bot sent (POST …/activities), with their conversation id.
    pub fn sent(&self) -> Vec<(String, Value)> {
        self.front
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path.ends_with("/activities"))
            .map(|s| {
                let conv = s
                    .path
                    .trim_start_matches("/v3/conversations/")
                    .trim_end_matches("/activities")
                    .to_string();
                (conv, serde_json::from_str(&s.body).unwrap_or(Value::Null))
            })
            .collect()
    }

    /// Bodies of the activities the bot replaced (PUT), with their path.
    pub fn updated(&self) -> Vec<(String, Value)> {
        self.front
            .seen()
            .into_iter()
            .filter(|s| s.method == "PUT")
            .map(|s| (s.path, serde_json::from_str(&s.body).unwrap_or(Value::Null)))
            .collect()
    }
}

/// Microsoft's documented message activity, from `user` (Entra object id), saying `text`.
pub fn message(service_url: &str, user: &str, text: &str) -> Value {
    let raw =
        std::fs::read_to_string(super::oracle("teams/message-activity.msteams-docs.json")).unwrap();
    let mut a: Value = serde_json::from_str(&raw).unwrap();
    a["serviceUrl"] = json!(service_url);
    a["from"]["aadObjectId"] = json!(user);
    a["from"]["id"] = json!(format!("29:{user}"));
    a["conversation"]["id"] = json!(format!("a:personal-{user}"));
    a["recipient"]["id"] = json!(format!("28:{APP_ID}"));
    a["id"] = json!(super::rand_suffix());
    a["text"] = json!(text);
    a
}

/// An `Action.Execute` click by `user` with `verb` and `data`.
pub fn invoke(service_url: &str, user: &str, verb: &str, data: Value) -> Value {
    let raw = std::fs::read_to_string(super::oracle(
        "teams/invoke-adaptive-card-action.composed.json",
    ))
    .unwrap();
    let mut a: Value = serde_json::from_str(&raw).unwrap();
    a["serviceUrl"] = json!(service_url);
    a["from"]["aadObjectId"] = json!(user);
    a["from"]["id"] = json!(format!("29:{user}"));
    a["conversation"]["id"] = json!(format!("a:personal-{user}"));
    a["recipient"]["id"] = json!(format!("28:{APP_ID}"));
    a["id"] = json!(super::rand_suffix());
    a["value"]["action"]["id"] = json!(verb);
    a["value"]["action"]["verb"] = json!(verb);
    a["value"]["action"]["data"] = data;
    a
}

/// Checks a card against the Adaptive Card 1.5 JSON schema (with Python's `jsonschema`, which
/// `scripts/test` installs with kubernetes-validate in `.venv-k8s`). Returns the errors.
pub fn schema_errors(card: &Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    std::fs::write(&path, card.to_string()).unwrap();
    let python = super::manifest_dir().join(".venv-k8s/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs it",
        python.display()
    );
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
card = json.load(open(sys.argv[2]))
cls = jsonschema.validators.validator_for(schema)
for e in cls(schema).iter_errors(card):
    e = jsonschema.exceptions.best_match([e])
    while e.context:
        e = jsonschema.exceptions.best_match(e.context)
    print("/".join(str(p) for p in e.absolute_path), ":", e.message[:300])
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(super::oracle("teams/schemas/adaptive-card-1.5.schema.json"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schema check failed to run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
