//! A local stand-in for Slack's Web API: records every call and answers with Slack's documented
//! example responses (../shared/oracles/slack/web-api-responses/*.spec-examples.json), with the
//! channel and ts made unique. Faults can be queued to test retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub authorization: Option<String>,
}

/// A queued fault: answer the next call of `method` with this status, header and body.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: String,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: VecDeque<Fault>,
    ts: u64,
    /// Socket Mode: frames to push to the connected client, and the acks it sent back.
    socket_out: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    socket_acks: Vec<Value>,
    addr: Option<std::net::SocketAddr>,
    /// User group id → members, for usergroups.* (groups from Slack's usergroups.list example).
    usergroups: std::collections::BTreeMap<String, Vec<String>>,
    /// Files uploaded to the URLs files.getUploadURLExternal handed out: (file id, bytes).
    uploads: Vec<(String, Vec<u8>)>,
}

#[derive(Clone)]
pub struct SlackStandIn {
    inner: Arc<Mutex<Inner>>,
    addr: std::net::SocketAddr,
}

fn example(method: &str) -> Value {
    let path = super::oracle(&format!(
        "slack/web-api-responses/{method}.spec-examples.json"
    ));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["200"].clone()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed: Value = if is_json {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    };
    let mut g = inner.lock().unwrap();
    g.calls.push(Call {
        method: method.clone(),
        body: parsed.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    if let Some(i) = g.faults.iter().position(|f| f.method == method) {
        let f = g.faults.remove(i).unwrap();
        let mut resp =
            (StatusCode::from_u16(f.status).unwrap(), f.body.to_string()).into_response();
        if let Some(s) = f.retry_after {
            resp.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return resp;
    }
    g.ts += 1;
    let ts = format!("1700000000.{:06}", g.ts);
    if method == "apps.connections.open" {
        let addr = g.addr.unwrap();
        return axum::Json(
            serde_json::json!({"ok": true, "url": format!("ws://{addr}/link/?ticket=t")}),
        )
        .into_response();
    }
    if let Some(v) = usergroups(&mut g, &method, &parsed) {
        return axum::Json(v).into_response();
    }
    if method == "files.getUploadURLExternal" {
        // Slack's documented shape: a pre-signed upload URL and the new file's id.
        let addr = g.addr.unwrap();
        let id = format!("F0UPLOAD{:04}", g.ts);
        return axum::Json(serde_json::json!({
            "ok": true, "upload_url": format!("http://{addr}/upload/v1/{id}"), "file_id": id
        }))
        .into_response();
    }
    let mut v = match method.as_str() {
        "chat.postMessage"
        | "chat.update"
        | "chat.postEphemeral"
        | "users.lookupByEmail"
        | "views.open" => example(&method),
        _ => serde_json::json!({"ok": true}),
    };
    match method.as_str() {
        "chat.postMessage" => {
            let ch = parsed["channel"].as_str().unwrap_or("C0").to_string();
            // Posting to a user id opens the DM: Slack answers with the DM channel.
            v["channel"] = Value::String(if ch.starts_with('U') {
                format!("D{ch}")
            } else {
                ch
            });
            v["ts"] = Value::String(ts.clone());
            v["message"]["ts"] = Value::String(ts);
        }
        "chat.update" => {
            v["channel"] = parsed["channel"].clone();
            v["ts"] = parsed["ts"].clone();
        }
        _ => {}
    }
    axum::Json(v).into_response()
}

/// usergroups.list / usergroups.users.list / usergroups.users.update over the stand-in's state.
fn usergroups(g: &mut Inner, method: &str, parsed: &Value) -> Option<Value> {
    let group = parsed["usergroup"].as_str().unwrap_or_default().to_string();
    match method {
        "usergroups.list" => {
            let mut v = example(method);
            if let Some(list) = v["usergroups"].as_array_mut() {
                for ug in list {
                    let id = ug["id"].as_str().unwrap_or_default().to_string();
                    let users = g.usergroups.get(&id).cloned().unwrap_or_default();
                    ug["user_count"] = users.len().into();
                    ug["users"] = users.into();
                }
            }
            Some(v)
        }
        "usergroups.users.list" => {
            let mut v = example(method);
            v["users"] = g.usergroups.get(&group).cloned().unwrap_or_default().into();
            Some(v)
        }
        "usergroups.users.update" => {
            let users: Vec<String> = parsed["users"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect();
            g.usergroups.insert(group.clone(), users.clone());
            let mut v = example(method);
            v["usergroup"]["id"] = group.into();
            v["usergroup"]["user_count"] = users.len().into();
            v["usergroup"]["users"] = users.into();
            Some(v)
        }
        _ => None,
    }
}

/// The upload URL: keeps the bytes (Slack answers 200 with a short text body).
async fn upload(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    inner.lock().unwrap().uploads.push((id, body.to_vec()));
    (StatusCode::OK, format!("OK - {}", body.len())).into_response()
}

/// Socket Mode: the bot connects here; we say hello, forward queued envelopes, record acks.
async fn link(
    State(inner): State<Arc<Mutex<Inner>>>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use axum::extract::ws::Message;
    ws.on_upgrade(move |mut socket| async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        inner.lock().unwrap().socket_out = Some(tx);
        let hello = serde_json::json!({"type": "hello", "num_connections": 1}).to_string();
        if socket.send(Message::Text(hello.into())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(frame) => if socket.send(Message::Text(frame.into())).await.is_err() { return },
                    None => return,
                },
                got = socket.recv() => match got {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        inner.lock().unwrap().socket_acks.push(v);
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    })
}

impl SlackStandIn {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/api/{method}", post(handle))
            .route("/link/", axum::routing::get(link))
            .route("/upload/v1/{id}", post(upload))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        inner.lock().unwrap().addr = Some(addr);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { inner, addr }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Whether a Socket Mode client is connected.
    pub fn socket_connected(&self) -> bool {
        self.inner.lock().unwrap().socket_out.is_some()
    }

    /// Sends a Socket Mode envelope to the connected client.
    pub fn socket_send(&self, envelope: Value) {
        let g = self.inner.lock().unwrap();
        g.socket_out
            .as_ref()
            .expect("a socket client")
            .send(envelope.to_string())
            .unwrap();
    }

    /// The acks the client sent, in order.
    pub fn socket_acks(&self) -> Vec<Value> {
        self.inner.lock().unwrap().socket_acks.clone()
    }

    /// A user group's members now.
    pub fn usergroup_users(&self, id: &str) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .usergroups
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets a user group's members (a change made outside grantry).
    pub fn set_usergroup_users(&self, id: &str, users: &[&str]) {
        self.inner
            .lock()
            .unwrap()
            .usergroups
            .insert(id.into(), users.iter().map(|u| u.to_string()).collect());
    }

    /// Files uploaded so far: (file id, bytes).
    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.lock().unwrap().uploads.clone()
    }

    pub fn fail_next(&self, fault: Fault) {
        self.inner.lock().unwrap().faults.push_back(fault);
    }
}
