//! Expiry sweep at scale: 1,000,000 active grants of which 10,000 are due; times how long the
//! sweeper takes to find the due ones and enqueue their revocations (with their audit events),
//! and checks the count. `cargo run --release --bin grantry-sweep-bench [-- --grants N --due M]`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use grantry::clock::SystemClock;
use grantry::config::Config;
use grantry::App;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    grants: i64,
    #[arg(long, default_value_t = 10_000)]
    due: i64,
    /// SQLite synchronous: full or normal.
    #[arg(long, default_value = "full")]
    synchronous: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile_dir()?;
    let here = env!("CARGO_MANIFEST_DIR");
    for f in ["catalog.toml", "people.toml"] {
        std::fs::copy(format!("{here}/examples/{f}"), dir.join(f))?;
    }
    let db = dir.join("grantry.db");
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\nsynchronous = \"{}\"\n[directory]\npeople_file = \"people.toml\"\n\
         [slack]\napi_base_url = \"http://127.0.0.1:9/api\"\nsigning_secret = {{ file = \"{d}/s\" }}\nbot_token = {{ file = \"{d}/s\" }}\n\
         [jobs]\nworkers = 0\n[connectors.scim]\ntype = \"scim\"\nbase_url = \"http://127.0.0.1:9/v2\"\ntoken_file = \"{d}/s\"\n",
        db.display(),
        args.synchronous,
        d = dir.display()
    );
    std::fs::write(dir.join("s"), "bench")?;
    std::fs::write(dir.join("grantry.toml"), text)?;
    let config = Config::load(&dir.join("grantry.toml"))?;
    let app = App::build(config, Arc::new(SystemClock)).await?;

    // Seed through SQLite itself (a recursive CTE), outside grantry: requests and grants.
    let seeding = Instant::now();
    let (n, due) = (args.grants, args.due);
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "PRAGMA foreign_keys = ON; BEGIN;
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
             INSERT INTO requests (id, platform, requester_chat_id, requester_email, subject_email, app, entitlement,
                 duration_minutes, reason, state, created_at, updated_at)
             SELECT 'R-B' || i, 'slack', 'U' || i, 'u' || i || '@example.com', 'u' || i || '@example.com', 'github',
                 'readers', 60, 'bench', 'active', 0, 0 FROM s;
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
             INSERT INTO grants (id, request_id, subject_email, app, entitlement, connector, account_id, target,
                 receipt, state, granted_at, expires_at)
             SELECT 'G-B' || i, 'R-B' || i, 'u' || i || '@example.com', 'github', 'readers', 'scim', 'acct' || i,
                 'readers', '{{}}', 'active', 0, CASE WHEN i % ({n} / {due}) = 0 THEN 1000 ELSE 4102444800000 END FROM s;
             COMMIT; ANALYZE;"
        ))
        .status()
        .context("sqlite3 (Debian package sqlite3) seeds the database")?;
    ensure!(status.success(), "seeding failed");
    println!(
        "seeded {n} active grants ({due} due) in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let swept = grantry::jobs::sweeper::sweep(&app).await?;
    let took = start.elapsed();
    let jobs = app
        .store
        .jobs(Some("queued"), 100_000)
        .await?
        .into_iter()
        .filter(|j| j.kind == "revoke")
        .count();
    println!(
        "sweep: found and enqueued {swept} due grants (revoke job + audit event each) in {:.3} s; {jobs} revoke jobs queued",
        took.as_secs_f64()
    );
    ensure!(
        swept as i64 == due && jobs as i64 == due,
        "expected {due} due grants"
    );
    let again = Instant::now();
    let none = grantry::jobs::sweeper::sweep(&app).await?;
    println!(
        "a second sweep with nothing due: {none} in {:.1} ms",
        again.elapsed().as_secs_f64() * 1000.0
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("grantry-sweep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
