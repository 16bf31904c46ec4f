//! `grantry`: the bot's command line. Errors end here as `anyhow`, with their cause chain.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use grantry::audit::{self, Verdict};
use grantry::clock::{format_utc, SystemClock};
use grantry::config::Config;
use grantry::domain::Catalog;
use grantry::store::{Store, StoreOptions};
use grantry::App;

#[derive(Parser)]
#[command(
    name = "grantry",
    version,
    about = "Keeps the grants: access requests, approvals, provisioning and the ledger, in Slack."
)]
struct Cli {
    /// Configuration file (TOML). Environment variables GRANTRY__SECTION__KEY override it.
    #[arg(
        long,
        short,
        global = true,
        default_value = "grantry.toml",
        env = "GRANTRY_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: HTTP endpoints, job workers and the expiry sweeper.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Check the catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The ledger of grants.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Remove a grant now (queued; the running server's workers revoke it through its connector).
    Revoke {
        /// The grant id (G-…).
        grant: String,
        /// Why, for the holder and the audit.
        #[arg(long)]
        reason: String,
        /// Who is revoking (for the audit), e.g. your email.
        #[arg(long, env = "USER")]
        by: String,
    },
    /// Try again after a failure IT has fixed: a failed request (R-…) is provisioned again, a
    /// grant whose revoke gave up (G-…) is revoked again.
    Retry {
        /// The request id (R-…) or grant id (G-…).
        id: String,
        /// Who is retrying (for the audit).
        #[arg(long, env = "USER")]
        by: String,
    },
    /// A person left: revoke every grant of theirs and cancel their open requests.
    Offboard {
        email: String,
        /// Who is offboarding (for the audit).
        #[arg(long, env = "USER")]
        by: String,
    },
    /// Policies: check them against cases.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Access reviews: owners keep or revoke each active grant of an app.
    Review {
        #[command(subcommand)]
        command: ReviewCommand,
    },
    /// IT's digest of the last period (`[digest] period`): print it, or queue it for the status
    /// channel (the running server's workers post it, with its chart).
    Digest {
        /// Queue it for `slack.status_channel` instead of printing it.
        #[arg(long)]
        post: bool,
        /// Also write the chart (PNG) here.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
    /// Compare the ledger with what the apps really grant; exit 1 on any difference.
    Reconcile {
        /// Remove access held without a grant and restore granted access that is missing.
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Report every problem in the catalog, with its place; exit 1 if there is any.
    Check {
        /// Catalog file (default: the one the config names).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Prove the hash chain is whole; exit 1 and name the first bad event otherwise.
    Verify,
    /// Every decision, approver, policy and entitlement change, for an auditor. States first
    /// whether the hash chain verified; exits 1 if it did not (the export is still written).
    Export {
        /// Only events from this date (YYYY-MM-DD, UTC) or RFC 3339 time on.
        #[arg(long)]
        since: Option<String>,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_since(s: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("--since {s:?}: use YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0))
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run cases (TOML `[[case]]`: name, subject, app, entitlement, duration, reason, ticket,
    /// held, requester, hour_utc, on_call_level, expect = deny | auto_approve | needs_approval);
    /// exit 1 on any mismatch.
    Test { cases: PathBuf },
    /// The decisions behind a request: policies with their reasons, each step's approvers, and
    /// its audit trail.
    Explain { request: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyCases {
    case: Vec<PolicyCase>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyCase {
    name: String,
    subject: String,
    requester: Option<String>,
    app: String,
    entitlement: String,
    duration: Option<String>,
    #[serde(default = "default_reason")]
    reason: String,
    #[serde(default)]
    ticket: bool,
    #[serde(default)]
    held: Vec<String>,
    #[serde(default = "default_hour")]
    hour_utc: i64,
    /// The subject's escalation level on call (0: not on call).
    #[serde(default)]
    on_call_level: i64,
    expect: String,
}

fn default_reason() -> String {
    "a reason long enough".into()
}

fn default_hour() -> i64 {
    12
}

#[derive(Subcommand)]
enum ReviewCommand {
    /// Send each owner of the app a Keep / Revoke card per active grant.
    Start {
        app: String,
        /// Days until unanswered items are escalated to IT.
        #[arg(long, default_value_t = 7)]
        days: i64,
        #[arg(long, env = "USER")]
        by: String,
    },
    /// Write a campaign's result.
    Export {
        review: String,
        /// jsonl or csv.
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

#[derive(Subcommand)]
enum GrantsCommand {
    /// List grants, newest first.
    List {
        /// Only grants in this state: active, revoking, revoked.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // tokio-postgres logs a statement's parameters (people's names and reasons) at debug.
    if let Ok(quiet) = "tokio_postgres=info".parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GRANTRY_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn open_store(config: &Config) -> Result<Store> {
    Store::open(&StoreOptions {
        url: config.database.url.clone(),
        synchronous: config.database.synchronous.clone(),
        read_connections: config.database.read_connections,
    })
    .await
    .context("opening the database")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}

/// mimalloc instead of glibc's malloc: allocation was ~15% of the server's CPU under load, most of it
/// glibc's arena locking and consolidation across tokio's and sqlx's threads (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    init_logging();
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = config.server.workers(&config.database.url, cores) {
        runtime.worker_threads(n);
    }
    runtime
        .build()
        .context("starting the runtime")?
        .block_on(run(cli, config))
}

async fn run(cli: Cli, config: Config) -> Result<()> {
    match cli.command {
        Command::Serve => {
            let listen = config.server.listen.clone();
            let app = Arc::new(App::build(config, Arc::new(SystemClock)).await?);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(address = %listener.local_addr()?, "grantry listening");
            grantry::serve(app, listener, shutdown_signal()).await?;
        }
        Command::Revoke { grant, reason, by } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            println!(
                "{}",
                grantry::flow::lifecycle::revoke(&app, &format!("cli:{by}"), &grant, &reason)
                    .await?
            );
        }
        Command::Retry { id, by } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            println!(
                "{}",
                grantry::flow::lifecycle::retry(&app, &format!("cli:{by}"), &id).await?
            );
        }
        Command::Offboard { email, by } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            let report =
                grantry::flow::lifecycle::offboard(&app, &email, &format!("cli:{by}")).await?;
            println!(
                "offboarding {}: revoking {} grant(s) {:?}, cancelled {} request(s) {:?}",
                report.email,
                report.revoking.len(),
                report.revoking,
                report.cancelled.len(),
                report.cancelled
            );
        }
        Command::Digest { post, chart } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            let now = app.now_ms();
            let from = now - grantry::flow::digest::period_ms(&app);
            let digest = grantry::flow::digest::compute(&app, from, now).await?;
            if let Some(path) = &chart {
                let png = grantry::chat::chart::render(&digest.days)?;
                std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("chart written to {}", path.display());
            }
            if post {
                let Some(channel) = app.config.slack.status_channel.clone() else {
                    bail!("slack.status_channel is not set: there is nowhere to post the digest");
                };
                grantry::flow::digest::post_now(&app, "slack", &channel, None).await?;
                println!("digest queued for {channel}; the running server posts it");
            } else {
                println!("{}", digest.text());
            }
        }
        Command::Reconcile { fix } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            let report = grantry::jobs::reconcile::reconcile(&app, fix, "cli:reconcile").await?;
            println!("{}", report.text());
            if !report.clean() && !fix {
                std::process::exit(1);
            }
        }
        Command::Review {
            command:
                ReviewCommand::Start {
                    app: app_id,
                    days,
                    by,
                },
        } => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            match grantry::flow::reviews::start(&app, &app_id, &format!("cli:{by}"), days).await? {
                Ok((id, n)) => {
                    println!("review {id} started: {n} grant(s) sent to the owners of {app_id}")
                }
                Err(msg) => bail!(msg),
            }
        }
        Command::Review {
            command: ReviewCommand::Export { review, format },
        } => {
            let csv = match format.as_str() {
                "csv" => true,
                "jsonl" => false,
                other => bail!("unknown format '{other}' (use csv or jsonl)"),
            };
            let app = App::build(config, Arc::new(SystemClock)).await?;
            match grantry::flow::reviews::export(&app, &review, csv).await? {
                Some(text) => print!("{text}"),
                None => bail!("there is no review {review}"),
            }
        }
        Command::Policy {
            command: PolicyCommand::Test { cases },
        } => {
            let catalog = App::load_catalog(&config)?;
            let directory = match &config.directory.people_file {
                Some(p) => grantry::directory::Directory::load(&config.resolve(p))?,
                None => grantry::directory::Directory::default(),
            };
            let engine = grantry::policy::cedar::Engine::load(&config.resolve(&config.policy.dir))?;
            let text = std::fs::read_to_string(&cases)
                .with_context(|| format!("reading {}", cases.display()))?;
            let cases: PolicyCases =
                toml::from_str(&text).with_context(|| format!("parsing {}", cases.display()))?;
            println!("policies: {} from {}", engine.len(), engine.source);
            println!(
                "{:<4} {:<50} {:<15} {:<15} policies",
                "", "case", "expected", "got"
            );
            let mut failed = 0;
            for c in &cases.case {
                let subject = directory
                    .by_email(&c.subject)
                    .with_context(|| format!("{}: no person {}", c.name, c.subject))?;
                let requester = match &c.requester {
                    Some(r) => directory
                        .by_email(r)
                        .with_context(|| format!("{}: no person {r}", c.name))?,
                    None => subject,
                };
                let app = catalog
                    .app(&c.app)
                    .with_context(|| format!("{}: no app {}", c.name, c.app))?;
                let ent = app
                    .entitlement(&c.entitlement)
                    .with_context(|| format!("{}: no entitlement {}", c.name, c.entitlement))?;
                let duration = c
                    .duration
                    .as_deref()
                    .map(grantry::domain::AccessDuration::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", c.name))?;
                let d = grantry::policy::decide_in(
                    &engine,
                    &catalog,
                    &grantry::policy::PolicyInput {
                        requester,
                        subject,
                        app,
                        entitlement: ent,
                        duration,
                        reason_length: c.reason.chars().count(),
                        has_ticket: c.ticket,
                        held: c.held.clone(),
                        hour_utc: c.hour_utc,
                        on_call_level: c.on_call_level,
                    },
                );
                let got = match d.outcome {
                    grantry::policy::Outcome::Deny => "deny",
                    grantry::policy::Outcome::AutoApprove => "auto_approve",
                    grantry::policy::Outcome::NeedsApproval => "needs_approval",
                };
                let ok = got == c.expect;
                failed += usize::from(!ok);
                println!(
                    "{:<4} {:<50} {:<15} {:<15} {}",
                    if ok { "ok" } else { "FAIL" },
                    c.name,
                    c.expect,
                    got,
                    d.policy_ids.join(", ")
                );
            }
            println!("{} passed, {failed} failed", cases.case.len() - failed);
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Command::Policy {
            command: PolicyCommand::Explain { request },
        } => {
            let id = grantry::domain::RequestId::parse(&request)
                .with_context(|| format!("{request} is not a request id"))?;
            let store = open_store(&config).await?;
            let req = store
                .request(&id)
                .await?
                .with_context(|| format!("there is no request {id}"))?;
            println!(
                "{id}: {} asks for {}/{} for {} ({}), now {}",
                req.requester_email,
                req.app,
                req.entitlement,
                req.duration
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "ever".into()),
                if req.subject_email == req.requester_email {
                    "self".to_string()
                } else {
                    format!("for {}", req.subject_email)
                },
                req.state.as_str()
            );
            println!("reason: {}", req.reason);
            println!("decisions:");
            for d in store.decisions(&id).await? {
                println!(
                    "  {}  {:<8} {:<15} by {:<24} policies {} reasons {}",
                    format_utc(d.at),
                    d.kind,
                    d.outcome,
                    d.actor,
                    d.policy_ids,
                    d.reasons
                );
            }
            println!("approvers:");
            for a in store.approvals(&id).await? {
                println!(
                    "  step {}  {:<28} {:<9}{}",
                    a.step + 1,
                    a.approver_email,
                    a.state,
                    a.on_behalf_of
                        .map(|b| format!("  ({b})"))
                        .unwrap_or_default()
                );
            }
            println!("audit:");
            for e in store.audit_for_request(id.as_str()).await? {
                println!(
                    "  #{:<6} {}  {:<24} {:<26} {}",
                    e.seq,
                    format_utc(e.at),
                    e.actor,
                    e.action,
                    e.detail
                );
            }
        }
        Command::Migrate => {
            open_store(&config).await?;
            println!("database is up to date");
        }
        Command::Catalog {
            command: CatalogCommand::Check { catalog },
        } => {
            let path = catalog.unwrap_or_else(|| config.resolve(&config.catalog.path));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let names: Vec<String> = config.connectors.keys().cloned().collect();
            match Catalog::parse(&text, Some(&names)) {
                Ok(c) => {
                    let ents: usize = c.apps.iter().map(|a| a.entitlements.len()).sum();
                    println!(
                        "{}: ok ({} apps, {ents} entitlements)",
                        path.display(),
                        c.apps.len()
                    );
                }
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let store = open_store(&config).await?;
            match audit::verify(&store).await? {
                Verdict::Whole { events, head } => {
                    println!("audit chain whole: {events} events, head {head}")
                }
                Verdict::Broken { seq, problem } => {
                    eprintln!("audit chain BROKEN at event {seq}: {problem}");
                    std::process::exit(1);
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Export { since, format, out },
        } => {
            let format = match format.as_str() {
                "jsonl" => audit::ExportFormat::Jsonl,
                "csv" => audit::ExportFormat::Csv,
                other => bail!("unknown format '{other}' (use jsonl or csv)"),
            };
            let since = since.as_deref().map(parse_since).transpose()?.unwrap_or(0);
            let store = open_store(&config).await?;
            let written = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    audit::export(&store, since, format, &mut w).await?
                }
                None => audit::export(&store, since, format, &mut std::io::stdout().lock()).await?,
            };
            eprintln!("{written} event(s) exported");
            if !matches!(audit::verify(&store).await?, Verdict::Whole { .. }) {
                eprintln!("the audit chain did NOT verify: see the export's first line");
                std::process::exit(1);
            }
        }
        Command::Grants {
            command: GrantsCommand::List { state, limit, json },
        } => {
            if let Some(s) = &state {
                if grantry::domain::GrantState::parse(s).is_none() {
                    bail!("unknown state '{s}' (use active, revoking or revoked)");
                }
            }
            let store = open_store(&config).await?;
            let grants = store.grants(state.as_deref(), limit).await?;
            if json {
                for g in grants {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": g.id, "request_id": g.request_id, "subject": g.subject_email, "app": g.app,
                            "entitlement": g.entitlement, "state": g.state, "approved_by": g.approved_by,
                            "granted_at": g.granted_at, "expires_at": g.expires_at, "revoked_at": g.revoked_at,
                        })
                    );
                }
            } else {
                println!(
                    "{:<11} {:<11} {:<28} {:<30} {:<9} {:<20} {:<20}",
                    "GRANT", "REQUEST", "SUBJECT", "ACCESS", "STATE", "GRANTED", "EXPIRES"
                );
                for g in grants {
                    println!(
                        "{:<11} {:<11} {:<28} {:<30} {:<9} {:<20} {:<20}",
                        g.id,
                        g.request_id,
                        g.subject_email,
                        format!("{}/{}", g.app, g.entitlement),
                        g.state,
                        format_utc(g.granted_at),
                        g.expires_at
                            .map(format_utc)
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
        }
    }
    Ok(())
}
