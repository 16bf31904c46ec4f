//! Policy evaluation at catalog scale: a generated catalog of 500 apps × 10 entitlements (5,000),
//! 1,000 people in 10 departments, and 101 Cedar policies (the baseline's 3, 40 department/app
//! `forbid`s, 40 department/app `auto_approve` permits, 18 on titles, risk, duration, tickets and
//! hours). Times `policy::decide` (eligibility, then Cedar's `request` and, where allowed,
//! `auto_approve`) over random (person, entitlement, context) inputs, on one thread and on every
//! core. `cargo run --release --bin grantry-policy-bench [-- --decisions N]`.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use grantry::domain::{AccessDuration, Catalog, Person, PersonStatus};
use grantry::policy::{self, cedar, Outcome, PolicyInput};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 500)]
    apps: usize,
    #[arg(long, default_value_t = 10)]
    entitlements_per_app: usize,
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
    /// Only the 3 baseline policies (to see what building the request costs apart from the 98 others).
    #[arg(long)]
    baseline_only: bool,
}

/// How many policies [`policies`] generates beside the baseline.
const GENERATED: usize = 98;

const RISKS: [&str; 4] = ["low", "medium", "high", "critical"];

fn catalog(apps: usize, per_app: usize) -> Result<Catalog> {
    let mut t = String::new();
    for a in 0..apps {
        t.push_str(&format!(
            "[[apps]]\nid = \"app{a}\"\nconnector = \"scim\"\nowners = [\"owner{a}@example.com\"]\n"
        ));
        for e in 0..per_app {
            let conflicts = if e == 1 {
                format!("conflicts = [\"app{a}/e0\"]\n")
            } else {
                String::new()
            };
            t.push_str(&format!(
                "[[apps.entitlements]]\nid = \"e{e}\"\nrisk = \"{}\"\nmax_duration = \"2w\"\n{conflicts}",
                RISKS[(a + e) % 4]
            ));
        }
    }
    Catalog::parse(&t, None).map_err(|e| anyhow::anyhow!("generated catalog: {e}"))
}

fn policies(apps: usize) -> Vec<(String, String)> {
    let mut texts = vec![("baseline".to_string(), cedar::BASELINE.to_string())];
    let mut t = String::new();
    for i in 0..40 {
        t.push_str(&format!(
            "@id(\"forbid-dept{d}-app{a}\") @reason(\"Dept{d} may not hold high-risk app{a} access\")\n\
             forbid(principal, action == Grantry::Action::\"request\", resource) when {{ principal.department == \"Dept{d}\" && resource.app == \"app{a}\" && resource.risk_level >= 3 }};\n",
            d = i % 10,
            a = (i * 7) % apps
        ));
    }
    for i in 0..40 {
        t.push_str(&format!(
            "@id(\"auto-dept{d}-app{a}\") @reason(\"low-risk app{a} access for Dept{d}\")\n\
             permit(principal, action == Grantry::Action::\"auto_approve\", resource) when {{ principal.department == \"Dept{d}\" && resource.app == \"app{a}\" && resource.risk == \"low\" && context.duration_minutes <= 480 }};\n",
            d = i % 10,
            a = (i * 11 + 3) % apps
        ));
    }
    for i in 0..6 {
        t.push_str(&format!(
            "@id(\"contractor-no-risk{l}-{i}\") @reason(\"contractors cannot hold risk {l} access\")\n\
             forbid(principal, action == Grantry::Action::\"request\", resource) when {{ principal.title like \"*Contractor*\" && resource.risk_level == {l} && context.hour_utc != {i} }};\n",
            l = 3 + i % 2
        ));
    }
    for i in 0..6 {
        t.push_str(&format!(
            "@id(\"ticketed-low-{i}\") @reason(\"low risk with a ticket and a reason\")\n\
             permit(principal, action == Grantry::Action::\"auto_approve\", resource) when {{ context.has_ticket && resource.risk_level == 1 && context.reason_length >= {} && !context.for_someone_else }};\n",
            20 + i
        ));
    }
    for i in 0..6 {
        t.push_str(&format!(
            "@id(\"long-critical-{i}\") @reason(\"critical access is never longer than 8h\")\n\
             forbid(principal, action == Grantry::Action::\"request\", resource) when {{ resource.risk_level == 4 && (context.permanent || context.duration_minutes > {}) }};\n",
            480 + i
        ));
    }
    texts.push(("generated".to_string(), t));
    texts
}

fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| Person {
            email: format!("p{i}@example.com"),
            name: None,
            slack_id: None,
            teams_id: None,
            department: Some(format!("Dept{}", i % 10)),
            title: Some(if i % 13 == 0 {
                "Contractor".into()
            } else {
                "Engineer".into()
            }),
            manager: Some(format!("p{}@example.com", i / 10)),
            status: if i % 97 == 0 {
                PersonStatus::Terminated
            } else {
                PersonStatus::Active
            },
            accounts: Default::default(),
        })
        .collect()
}

struct Case {
    person: usize,
    app: usize,
    ent: usize,
    minutes: u64,
    has_ticket: bool,
    reason_length: usize,
    held: Vec<String>,
    hour: i64,
    on_call_level: i64,
}

fn run(
    engine: &cedar::Engine,
    cat: &Catalog,
    ppl: &[Person],
    cases: &[Case],
) -> (Vec<u64>, [usize; 3]) {
    let mut lat = Vec::with_capacity(cases.len());
    let mut counts = [0usize; 3];
    for c in cases {
        let app = &cat.apps[c.app];
        let input = PolicyInput {
            requester: &ppl[c.person],
            subject: &ppl[c.person],
            app,
            entitlement: &app.entitlements[c.ent],
            duration: AccessDuration::from_minutes(c.minutes).ok(),
            reason_length: c.reason_length,
            has_ticket: c.has_ticket,
            held: c.held.clone(),
            hour_utc: c.hour,
            on_call_level: c.on_call_level,
        };
        let t = Instant::now();
        let d = policy::decide(engine, &input);
        lat.push(t.elapsed().as_nanos() as u64);
        counts[match d.outcome {
            Outcome::Deny => 0,
            Outcome::AutoApprove => 1,
            Outcome::NeedsApproval => 2,
        }] += 1;
    }
    (lat, counts)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cat = catalog(args.apps, args.entitlements_per_app)?;
    let mut texts = policies(args.apps);
    if args.baseline_only {
        texts.truncate(1);
    }
    let engine = cedar::Engine::from_texts(&texts, "generated").context("policies")?;
    let ppl = people(1_000);
    let ents: usize = cat.apps.iter().map(|a| a.entitlements.len()).sum();
    // The baseline's own (3 since the `approve` action, which `decide` does not evaluate) and the
    // 98 generated ones.
    let baseline = cedar::Engine::from_texts(&texts[..1], "baseline").context("baseline")?;
    let expected = baseline.len() + if args.baseline_only { 0 } else { GENERATED };
    ensure!(
        engine.len() == expected,
        "expected {expected} policies, have {}",
        engine.len()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let cases: Vec<Case> = (0..args.decisions)
        .map(|_| {
            let app = rng.random_range(0..cat.apps.len());
            Case {
                person: rng.random_range(0..ppl.len()),
                app,
                ent: rng.random_range(0..args.entitlements_per_app),
                minutes: [30, 240, 480, 1440, 10080][rng.random_range(0..5)],
                has_ticket: rng.random_bool(0.3),
                reason_length: rng.random_range(5..80),
                held: (0..rng.random_range(0..4))
                    .map(|_| {
                        format!(
                            "app{}/e{}",
                            rng.random_range(0..cat.apps.len()),
                            rng.random_range(0..2)
                        )
                    })
                    .collect(),
                hour: rng.random_range(0..24),
                on_call_level: [0, 0, 0, 1, 2, 3][rng.random_range(0..6)],
            }
        })
        .collect();
    println!(
        "catalog: {} apps, {ents} entitlements; {} people; {} policies; {} decisions",
        cat.apps.len(),
        ppl.len(),
        engine.len(),
        cases.len()
    );
    run(&engine, &cat, &ppl, &cases[..cases.len().min(5_000)]); // warm-up

    let start = Instant::now();
    let (mut lat, counts) = run(&engine, &cat, &ppl, &cases);
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "1 thread: {:.0} decisions/s; per decision p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        cases.len() as f64 / secs,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    println!(
        "outcomes: {} denied, {} auto-approved, {} to approvers",
        counts[0], counts[1], counts[2]
    );
    ensure!(
        args.baseline_only || counts.iter().all(|&c| c > 0),
        "every outcome should occur: {counts:?}"
    );

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = cases.len().div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in cases.chunks(chunk) {
            let (engine, cat, ppl) = (&engine, &cat, &ppl);
            s.spawn(move || run(engine, cat, ppl, part));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{threads} threads: {:.0} decisions/s",
        cases.len() as f64 / secs
    );
    Ok(())
}
