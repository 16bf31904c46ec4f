//! A real SCIM 2.0 service provider for tests: `scim2-server` from PyPI, started on a free port
//! through ../shared/oracles/scim/run_server.py.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const TOKEN: &str = "scim-test-token";

pub struct Scim {
    child: Child,
    pub base_url: String,
    http: reqwest::Client,
}

fn python() -> String {
    std::env::var("GRANTRY_TEST_PYTHON").unwrap_or_else(|_| {
        super::manifest_dir()
            .join(".venv-scim/bin/python")
            .display()
            .to_string()
    })
}

impl Scim {
    pub async fn start() -> Scim {
        let py = python();
        assert!(
            std::path::Path::new(&py).exists(),
            "{py} is missing: run `scripts/test` (or .ci/run), which installs scim2-server into .venv-scim"
        );
        let mut child = Command::new(&py)
            .arg(super::oracle("scim/run_server.py"))
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                "0",
                "--bearer-token",
                TOKEN,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start scim2-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("scim2-server printed its URL")
            .unwrap()
            .expect("a line");
        let base_url = first
            .trim()
            .strip_prefix("SCIM_BASE_URL=")
            .expect("SCIM_BASE_URL line")
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::new();
        let scim = Scim {
            child,
            base_url,
            http,
        };
        super::eventually(30, "scim2-server answers", || async {
            scim.http
                .get(format!("{}/ServiceProviderConfig", scim.base_url))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        scim
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "SCIM POST {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn create_user(&self, email: &str) -> String {
        let v = self
            .post(
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": email, "emails": [{"value": email, "primary": true}], "active": true
                }),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn create_group(&self, name: &str) -> String {
        let v = self
            .post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}))
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// The group's member ids, as the SCIM server holds them.
    pub async fn members(&self, group_id: &str) -> Vec<String> {
        let v: Value = self
            .http
            .get(format!("{}/Groups/{group_id}", self.base_url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["value"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a member directly (out of band), as an admin would in the app.
    pub async fn add_member(&self, group_id: &str, user_id: &str) {
        let r = self
            .http
            .patch(format!("{}/Groups/{group_id}", self.base_url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}]})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// The server's process id (to freeze it with SIGSTOP and thaw it with SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("scim2-server running")
    }

    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}
