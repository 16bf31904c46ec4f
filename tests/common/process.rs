//! The real `grantry` binary as a child process: start it on a free port with `GRANTRY__…`
//! overrides, wait until `/readyz` answers, send it SIGTERM.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use grantry::store::{Store, StoreOptions};
use tokio::process::{Child, Command};

use super::eventually;

/// A port for a child process to listen on, taken from 20000–31999: below Linux's ephemeral
/// range (32768–60999), where every `bind(…:0)` in the tests (fronts, fake servers) and every
/// outgoing connection gets its port. Asking the kernel for an ephemeral port and handing it to
/// a child raced with those: another test's listener could take the port before the child bound
/// it, and the child's traffic then went to the wrong test (seen once with two Prism fronts).
/// Each call in a process gets a different port; the start differs per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Wall-clock seconds, as Slack stamps its requests (the binary runs on the system clock).
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A running `grantry serve`.
pub struct Grantry {
    pub child: Child,
    pub port: u16,
    pub base_url: String,
}

impl Grantry {
    /// Starts `grantry --config <config> serve` on a free port with these extra environment
    /// variables, and waits until `/readyz` answers 200.
    pub async fn start(config: &Path, env: &[(&str, String)]) -> Grantry {
        Self::start_with_log(config, env, None).await
    }

    /// As [`Grantry::start`], writing its log (stderr) to `log` when given.
    pub async fn start_with_log(
        config: &Path,
        env: &[(&str, String)],
        log: Option<&Path>,
    ) -> Grantry {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_grantry"));
        cmd.args(["--config", config.to_str().unwrap(), "serve"])
            .env("GRANTRY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                None => Stdio::inherit(),
            })
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start grantry");
        let base_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(30, "grantry answers /readyz", || async {
            http.get(format!("{base_url}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        Grantry {
            child,
            port,
            base_url,
        }
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().expect("still running");
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; panics if it takes longer than `within`.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("grantry did not exit within {within:?}"))
            .unwrap()
    }
}

/// The test's own handle on the database the binaries use.
pub async fn open_store(url: &str) -> Store {
    Store::connect(&StoreOptions {
        url: url.to_string(),
        synchronous: "normal".into(),
        read_connections: 4,
    })
    .await
    .unwrap()
}

/// Sends a signal to a process (e.g. `STOP`/`CONT` to freeze a peer server).
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}
