//! A team's webhook receiver for the generic webhook connector: checks every signature the way
//! docs/connectors.md tells receivers to, keeps who holds what, and answers as documented.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Default)]
pub struct ReceiverState {
    pub held: BTreeSet<String>,
    pub events: Vec<Value>,
    /// Statuses (and Retry-After) to answer the next events with, before doing the work.
    pub faults: Vec<(u16, Option<&'static str>)>,
    secret: String,
}

#[derive(Clone)]
pub struct Receiver {
    pub state: Arc<Mutex<ReceiverState>>,
    pub url: String,
}

async fn receive(
    State(r): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ts: i64 = headers["x-grantry-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 300,
        "fresh timestamp"
    );
    let secret = r.lock().unwrap().secret.clone();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v1:{ts}:").as_bytes());
    mac.update(&body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    if headers["x-grantry-signature"].to_str().unwrap() != expected {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    let mut g = r.lock().unwrap();
    g.events.push(event.clone());
    if !g.faults.is_empty() {
        let (status, retry_after) = g.faults.remove(0);
        let mut resp = (
            StatusCode::from_u16(status).unwrap(),
            json!({"message": "busy"}).to_string(),
        )
            .into_response();
        if let Some(s) = retry_after {
            resp.headers_mut().insert("retry-after", s.parse().unwrap());
        }
        return resp;
    }
    let target = event["target"].as_str().unwrap().to_string();
    if target == "unknown-role" {
        return axum::Json(
            json!({"status": "failed", "message": "no role named unknown-role in Acme CRM"}),
        )
        .into_response();
    }
    let key = |e: &Value| format!("{}>{}", e["account"]["id"].as_str().unwrap(), target);
    let answer = match event["type"].as_str().unwrap() {
        "grant" if g.held.insert(key(&event)) => json!({"status": "applied"}),
        "grant" => json!({"status": "already_in_place"}),
        "revoke" if g.held.remove(&key(&event)) => json!({"status": "applied"}),
        "revoke" => json!({"status": "already_in_place"}),
        _ => {
            let members: Vec<String> = g
                .held
                .iter()
                .filter_map(|k| {
                    k.split_once('>')
                        .filter(|(_, t)| *t == target)
                        .map(|(a, _)| a.to_string())
                })
                .collect();
            json!({"members": members})
        }
    };
    axum::Json(answer).into_response()
}

impl Receiver {
    /// A receiver on a free port that verifies signatures made with `secret`.
    pub async fn start(secret: &str) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            secret: secret.to_string(),
            ..ReceiverState::default()
        }));
        let app = Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/grantry/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { state, url }
    }

    /// Who holds `target` now (account ids).
    pub fn holders(&self, target: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .held
            .iter()
            .filter_map(|k| {
                k.split_once('>')
                    .filter(|(_, t)| *t == target)
                    .map(|(a, _)| a.to_string())
            })
            .collect()
    }
}
