//! Slack Socket Mode: instead of Slack POSTing to our endpoints, we open a WebSocket to Slack
//! (`apps.connections.open` with an app-level token) and receive the same payloads as envelopes.
//! Each envelope goes through the same [`super::dispatch`] as the HTTP endpoints and is acked on
//! the socket with the reply as its payload. The connection is re-opened when Slack asks
//! (`disconnect`) or when it drops, with backoff.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{dispatch, Reply};
use crate::chat::slack::payload;
use crate::chat::slack::SlackClient;
use crate::chat::ChatError;
use crate::config::Secret;
use crate::App;

/// Why a socket session ended.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(transparent)]
    Slack(#[from] ChatError),
    #[error("socket url from Slack is not usable: {0}")]
    BadUrl(String),
    #[error("connecting: {0}")]
    Connect(String),
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

enum Ended {
    Stop,
    Reconnect,
}

/// Runs Socket Mode until `stop` turns true.
pub async fn run(app: Arc<App>, app_token: Secret, mut stop: watch::Receiver<bool>) {
    let client = SlackClient::new(
        &app.config.slack.api_base_url,
        app_token,
        Duration::from_secs(app.config.slack.timeout_secs),
    );
    let mut backoff = Duration::from_millis(500);
    while !*stop.borrow() {
        match session(&app, &client, &mut stop).await {
            Ok(Ended::Stop) => return,
            Ok(Ended::Reconnect) => backoff = Duration::from_millis(500),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Slack Socket Mode connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn session(
    app: &Arc<App>,
    client: &SlackClient,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, SocketError> {
    let opened = client.call("apps.connections.open", &json!({})).await?;
    let url = opened
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| SocketError::BadUrl("no url in apps.connections.open".into()))?
        .to_string();
    let parsed = reqwest::Url::parse(&url).map_err(|e| SocketError::BadUrl(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| SocketError::BadUrl("no host".into()))?
        .to_string();
    let tls = match parsed.scheme() {
        "wss" => true,
        "ws" => false,
        other => return Err(SocketError::BadUrl(format!("scheme {other}"))),
    };
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| SocketError::Connect("timed out".into()))?
    .map_err(|e| SocketError::Connect(e.to_string()))?;
    if tls {
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SocketError::Connect(e.to_string()))?
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ))
        .with_no_client_auth();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| SocketError::BadUrl(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| SocketError::Connect(e.to_string()))?;
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream).await?;
        serve(app, ws, stop).await
    } else {
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
        serve(app, ws, stop).await
    }
}

async fn serve<S>(
    app: &Arc<App>,
    mut ws: WebSocketStream<S>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, SocketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::info!("Slack Socket Mode connected");
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return Ok(Ended::Stop);
            }
        };
        let text = match msg {
            None => return Ok(Ended::Reconnect),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Ping(p))) => {
                ws.send(Message::Pong(p)).await?;
                continue;
            }
            Some(Ok(Message::Close(_))) => return Ok(Ended::Reconnect),
            Some(Ok(_)) => continue,
        };
        let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!("Socket Mode sent a frame that is not JSON");
            continue;
        };
        let kind = envelope
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "hello" => continue,
            "disconnect" => return Ok(Ended::Reconnect),
            _ => {}
        }
        let Some(envelope_id) = envelope.get("envelope_id").and_then(Value::as_str) else {
            continue;
        };
        let body = envelope.get("payload").cloned().unwrap_or(Value::Null);
        let raw = body.to_string();
        let reply = match payload::parse_socket(kind, body) {
            Ok(inbound) => dispatch(app, inbound, raw.as_bytes()).await,
            Err(e) => Err(crate::http::HttpError::BadRequest(e.to_string())),
        };
        let ack = match reply {
            Ok(Reply::Json(v)) => json!({"envelope_id": envelope_id, "payload": v}),
            Ok(Reply::Empty) => json!({"envelope_id": envelope_id}),
            Err(e) => {
                // Acked anyway: Slack would only re-send what we cannot read.
                tracing::warn!(error = %e, kind, "Socket Mode envelope not handled");
                json!({"envelope_id": envelope_id})
            }
        };
        ws.send(Message::Text(ack.to_string().into())).await?;
    }
}
