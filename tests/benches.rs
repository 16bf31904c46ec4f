//! The bench binaries still run: each in a small configuration, in the debug build the tests use.
//! Their figures are not checked here (docs/benchmarks.md has them, from release builds); what is
//! checked is that each finishes and that its own checks hold (the policy bench's policy count and
//! outcomes, the sweep's due count, the ack bench's "the store gained what was acked", the provision
//! bench's memberships). A bench nobody runs rots: the policy bench once stopped at its own count
//! check for weeks after the baseline gained a policy.

mod common;

use std::process::{Command, Output, Stdio};

use common::process::free_port;
use common::*;

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .current_dir(manifest_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("start the bench");
    assert!(
        out.status.success(),
        "{bin} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn policy_bench_decides_over_its_generated_catalog() {
    let bin = env!("CARGO_BIN_EXE_grantry-policy-bench");
    let full = stdout(&run(bin, &["--decisions", "2000"]));
    assert!(full.contains("101 policies; 2000 decisions"), "{full}");
    assert!(full.contains("decisions/s"), "{full}");
    let baseline = stdout(&run(bin, &["--decisions", "200", "--baseline-only"]));
    assert!(baseline.contains("3 policies; 200 decisions"), "{baseline}");
}

#[test]
fn sweep_bench_enqueues_every_due_grant() {
    let out = stdout(&run(
        env!("CARGO_BIN_EXE_grantry-sweep-bench"),
        &[
            "--grants",
            "3000",
            "--due",
            "120",
            "--synchronous",
            "normal",
        ],
    ));
    assert!(out.contains("found and enqueued 120 due grants"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_bench_counts_only_what_the_store_gained() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["catalog.toml", "people.toml"] {
        std::fs::copy(manifest_dir().join("examples").join(f), dir.path().join(f)).unwrap();
    }
    let port = free_port();
    let config = dir.path().join("grantry.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://{}/grantry.db\"\n\
             [directory]\npeople_file = \"people.toml\"\n[slack]\napi_base_url = \"http://127.0.0.1:9/api\"\n\
             [jobs]\nworkers = 0\n[connectors.scim]\ntype = \"scim\"\nbase_url = \"http://127.0.0.1:9/v2\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let _server = tokio::process::Command::new(env!("CARGO_BIN_EXE_grantry"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("SLACK_SIGNING_SECRET", "bench-secret")
        .env("SLACK_BOT_TOKEN", "xoxb-bench")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start grantry");
    let http = reqwest::Client::new();
    eventually(30, "grantry answers /readyz", || async {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    let url = format!("http://127.0.0.1:{port}");
    let bench = env!("CARGO_BIN_EXE_grantry-bench");
    for mode in ["commands", "clicks"] {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            let args = [
                "--url",
                &url,
                "--concurrency",
                "1,4",
                "--seconds",
                "1",
                "--mode",
                mode,
                "--prefile",
                "200",
            ];
            stdout(&run(bench, &args))
        })
        .await
        .unwrap();
        assert!(out.contains("| 4 |"), "{mode}: {out}");
    }
}

#[test]
fn provision_bench_sees_each_approval_become_a_membership() {
    let py = manifest_dir().join(".venv-scim/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `scripts/test` (or .ci/run), which installs scim2-server into .venv-scim",
        py.display()
    );
    let out = stdout(&run(
        env!("CARGO_BIN_EXE_grantry-provision-bench"),
        &["--approvals", "5"],
    ));
    assert!(out.contains("membership over 5 approvals: p50"), "{out}");
}
