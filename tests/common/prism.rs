//! Prism (npm `@stoplight/prism-cli`) serving an official OpenAPI description from
//! ../shared/oracles/openapi/ with `--errors`: a request that the description does not allow
//! (wrong path, method, header, body) is answered with an error, so connector tests fail on it.
//!
//! Prism alone is stateless. [`Front`] sits before it: every request is still validated by Prism,
//! while a small model of the app (who holds what) picks which documented response Prism gives
//! (`Prefer: code=…`) and may replace the body, so that grant, re-grant and revoke can be told
//! apart. Faults (429, 503) can be queued; they are answered by the front without Prism.

use std::collections::{BTreeSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::process::{Child, Command};

pub fn prism_bin() -> String {
    std::env::var("GRANTRY_TEST_PRISM").unwrap_or_else(|_| {
        super::manifest_dir()
            .join("tools/prism/node_modules/.bin/prism")
            .display()
            .to_string()
    })
}

/// A running `prism mock --errors`.
pub struct Prism {
    _child: Child,
    pub url: String,
}

impl Prism {
    /// Serves `../shared/oracles/openapi/<spec>` on a free port; waits until it answers.
    pub async fn start(spec: &str) -> Prism {
        Self::start_oracle(&format!("openapi/{spec}")).await
    }

    /// Serves `../shared/oracles/<path>` (an OpenAPI 3 or Swagger 2.0 description). Ready when
    /// its own log says it listens on its port and that port answers HTTP: an answer alone could
    /// come from another process that took the port first (CI once saw one test's requests reach
    /// another's front that way). One that could not bind its port (or died) is started again on
    /// another port, and its log is shown if it never comes up.
    pub async fn start_oracle(path: &str) -> Prism {
        let bin = prism_bin();
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: run `scripts/test` (or .ci/run), which installs @stoplight/prism-cli into tools/prism"
        );
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut log_text = String::new();
        for _attempt in 0..3 {
            let port = super::process::free_port();
            let log = std::env::temp_dir().join(format!("grantry-prism-{port}.log"));
            let log_file = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&bin)
                .args([
                    "mock",
                    "--errors",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .arg(super::oracle(path))
                .stdout(Stdio::from(log_file.try_clone().unwrap()))
                .stderr(Stdio::from(log_file))
                .kill_on_drop(true)
                .spawn()
                .expect("start prism");
            let url = format!("http://127.0.0.1:{port}");
            let listening = format!("Prism is listening on {url}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            let up = loop {
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                if said.contains(&listening) && probe.get(format!("{url}/")).send().await.is_ok() {
                    break child.try_wait().unwrap().is_none();
                }
                if tokio::time::Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            log_text = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            if up {
                return Prism { _child: child, url };
            }
            let _ = child.kill().await;
        }
        // Its log lists every route first: the end says why it stopped.
        let lines: Vec<&str> = log_text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!("prism did not come up on three ports; the end of its last log:\n{tail}");
    }
}

/// What the model says about one request: the status Prism should answer with (one the
/// description documents), and a body to answer instead of Prism's example.
#[derive(Default)]
pub struct Answer {
    pub code: Option<u16>,
    pub body: Option<Value>,
    /// Answer this without Prism (for endpoints the description does not cover, e.g. OAuth
    /// token endpoints).
    pub direct: Option<(u16, Value)>,
}

/// The app's state as the model keeps it: which (account, entitlement) pairs are held.
#[derive(Default, Debug)]
pub struct Model {
    pub held: BTreeSet<String>,
}

/// One request seen by the front.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Prism's `sl-violations` header: what the request broke in the description.
    pub violations: Option<String>,
    pub authorization: Option<String>,
    pub body: String,
}

/// A queued fault: (path part, status, headers).
type Fault = (String, u16, Vec<(String, String)>);

type Rule = dyn Fn(&Method, &str, &mut Model) -> Answer + Send + Sync;

struct Inner {
    prism: String,
    model: Model,
    rule: Box<Rule>,
    faults: VecDeque<Fault>,
    seen: Vec<Seen>,
}

/// The stateful front before Prism.
#[derive(Clone)]
pub struct Front {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    http: reqwest::Client,
}

async fn forward(
    State(front): State<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let record = |status: u16, violations: Option<String>| Seen {
        method: method.to_string(),
        path: path.clone(),
        status,
        violations,
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).to_string(),
    };
    let (answer, prism) = {
        let mut g = front.inner.lock().unwrap();
        if let Some(i) = g
            .faults
            .iter()
            .position(|(p, _, _)| path.contains(p.as_str()))
        {
            let (_, status, hs) = g.faults.remove(i).unwrap();
            g.seen.push(record(status, None));
            let mut resp = (StatusCode::from_u16(status).unwrap(), "{}").into_response();
            for (k, v) in hs {
                resp.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            return resp;
        }
        let Inner { rule, model, .. } = &mut *g;
        let answer = rule(&method, uri.path(), model);
        if let Some((status, body)) = &answer.direct {
            g.seen.push(record(*status, None));
            return (
                StatusCode::from_u16(*status).unwrap(),
                axum::Json(body.clone()),
            )
                .into_response();
        }
        (answer, g.prism.clone())
    };
    let mut rb = front
        .http
        .request(method.clone(), format!("{prism}{path}"))
        .body(body.clone());
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            rb = rb.header(k, v);
        }
    }
    if let Some(code) = answer.code {
        rb = rb.header("prefer", format!("code={code}"));
    }
    let resp = rb.send().await.expect("prism answers");
    let status = resp.status().as_u16();
    let violations = resp
        .headers()
        .get("sl-violations")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let resp_headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    front
        .inner
        .lock()
        .unwrap()
        .seen
        .push(record(status, violations));
    let body = match (&answer.body, status < 300) {
        (Some(b), true) => b.to_string(),
        _ => text,
    };
    let mut out = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in resp_headers.iter() {
        if k == "content-type" || k == "link" {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

impl Front {
    /// A front before `prism`, answering by `rule`.
    pub async fn start(
        prism: &Prism,
        rule: impl Fn(&Method, &str, &mut Model) -> Answer + Send + Sync + 'static,
    ) -> Front {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let front = Front {
            inner: Arc::new(Mutex::new(Inner {
                prism: prism.url.clone(),
                model: Model::default(),
                rule: Box::new(rule),
                faults: VecDeque::new(),
                seen: Vec::new(),
            })),
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let app = Router::new().fallback(forward).with_state(front.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        front
    }

    /// Answers the next request whose path contains `path_part` with `status` and `headers`.
    pub fn fail_next(&self, path_part: &str, status: u16, headers: &[(&str, &str)]) {
        self.inner.lock().unwrap().faults.push_back((
            path_part.to_string(),
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.inner.lock().unwrap().seen.clear();
    }

    /// What the model holds now.
    pub fn held(&self) -> BTreeSet<String> {
        self.inner.lock().unwrap().model.held.clone()
    }

    /// Changes the model (e.g. access given outside grantry).
    pub fn with_model(&self, f: impl FnOnce(&mut Model)) {
        f(&mut self.inner.lock().unwrap().model)
    }

    /// Asserts Prism found nothing wrong with any request it saw.
    pub fn assert_conforms(&self) {
        for s in self.seen() {
            assert!(
                s.violations.is_none() && s.status != 422 && s.status != 405,
                "{} {} broke the API description: status {} {:?}",
                s.method,
                s.path,
                s.status,
                s.violations
            );
        }
    }

    /// The (method, path without query) pairs seen, in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.seen()
            .into_iter()
            .map(|s| (s.method, s.path.split('?').next().unwrap_or("").to_string()))
            .collect()
    }
}

/// A throwaway 2048-bit RSA key made with the `openssl` CLI: (PKCS#8 PEM, PKCS#1 PEM,
/// PKCS#1 DER public key for verifying signatures with ring).
pub fn rsa_test_key() -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl CLI (scripts/test installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    let pkcs8 = std::fs::read_to_string(&key).unwrap();
    let pkcs1 =
        String::from_utf8(run(&["rsa", "-in", key.to_str().unwrap(), "-traditional"])).unwrap();
    let public = run(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
    ]);
    (pkcs8, pkcs1, public)
}

/// Verifies an RS256 JWT with a PKCS#1 DER public key; returns its claims.
pub fn verify_jwt(jwt: &str, public_der: &[u8]) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_der,
    )
    .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
    .expect("the JWT's signature verifies with the public key");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}
