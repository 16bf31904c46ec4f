//! IT's digest: its numbers against a seeded store, the chart as a decoded PNG, `/access digest`
//! (refused for others; for IT admins the text and the file upload reach Slack), and the
//! schedule posting once per scheduled time however many replicas sweep.

mod common;

use std::sync::Arc;

use common::*;
use grantry::chat::chart;
use grantry::clock::Clock;
use grantry::domain::{AccessRequest, GrantId, RequestId, RequestState};
use grantry::store::approvals::NewApproval;
use grantry::store::decisions::DecisionRecord;
use grantry::store::fulfilments::Fulfilment;
use grantry::store::grants::GrantRecord;
use serde_json::Value;

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

fn configure(c: &mut grantry::config::Config) {
    c.slack.status_channel = Some("CIT".into());
    c.lifecycle.it_admins = vec!["carol@example.com".into()];
    // Seeded requests wait for days: keep the sweeper from timing them out.
    c.approvals.timeout = "30d".into();
}

/// Inserts a request in `state`, opened at `created`, with its final decision if given.
async fn request(
    t: &TestApp,
    access: (&str, &str),
    subject: &str,
    state: RequestState,
    created: i64,
    decision: Option<(&str, &str, i64)>,
) -> String {
    let id = RequestId::generate();
    let r = AccessRequest {
        id: id.clone(),
        platform: "slack".into(),
        requester_chat_id: "U111".into(),
        requester_email: subject.into(),
        subject_email: subject.into(),
        app: access.0.into(),
        entitlement: access.1.into(),
        duration: None,
        reason: "seeded for the digest".into(),
        ticket: None,
        extends_grant: None,
        state,
        created_at_ms: created,
        updated_at_ms: decision.map_or(created, |d| d.2),
    };
    let mut tx = t.app.store.begin().await.unwrap();
    tx.insert_request(&r, None, None).await.unwrap();
    if let Some((kind, outcome, at)) = decision {
        tx.insert_decision(&DecisionRecord {
            request_id: id.to_string(),
            kind: kind.into(),
            outcome: outcome.into(),
            actor: if kind == "policy" {
                "policy".into()
            } else {
                "bob@example.com".into()
            },
            policy_ids: "[]".into(),
            reasons: "[]".into(),
            at,
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    id.to_string()
}

async fn grant(t: &TestApp, request_id: &str, state: &str, expires_at: i64, now: i64) -> String {
    let id = GrantId::generate().as_str().to_string();
    let mut tx = t.app.store.begin().await.unwrap();
    tx.insert_grant(&GrantRecord {
        id: id.clone(),
        request_id: request_id.into(),
        subject_email: "alice@example.com".into(),
        app: "github".into(),
        entitlement: "platform-admins".into(),
        connector: "scim".into(),
        account_id: "acct".into(),
        target: "platform-admins".into(),
        receipt: "{}".into(),
        state: state.into(),
        approved_by: Some("bob@example.com".into()),
        granted_at: now - D,
        expires_at: Some(expires_at),
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// What the seed put where, for the assertions.
struct Seeded {
    to: i64,
    oldest: String,
    breach_admins: String,
    failed: String,
    stuck_grant: String,
    expiring: Vec<String>,
}

/// A week of requests ending at `to` (every time at least an hour from a day boundary):
/// 10 github/readers approved by people after 2h, all on the last day; github/platform-admins
/// approved after 1h (3 days back), denied by a person after 3h (2 days back), denied by policy
/// (6 days back), auto-approved (4 days back), and two still waiting (5h and 1h old); a request
/// opened before the period but approved in it after 4h; a readers request waiting 8 days (the
/// oldest); a failed request and a grant IT could not revoke by hand; grants ending in 2h, in 2d,
/// in 5d and a revoked one.
async fn seed(t: &TestApp) -> Seeded {
    use RequestState::*;
    let to = t.clock.now_ms();
    let readers = ("github", "readers");
    let admins = ("github", "platform-admins");
    let alice = "alice@example.com";
    for i in 0..10 {
        let c = to - 20 * H + i * 60_000;
        request(
            t,
            readers,
            alice,
            Active,
            c,
            Some(("approver", "approved", c + 2 * H)),
        )
        .await;
    }
    let c = to - 3 * D + H;
    request(
        t,
        admins,
        alice,
        Active,
        c,
        Some(("approver", "approved", c + H)),
    )
    .await;
    let c = to - 2 * D + H;
    request(
        t,
        admins,
        alice,
        Rejected,
        c,
        Some(("approver", "rejected", c + 3 * H)),
    )
    .await;
    let c = to - 6 * D + H;
    request(t, admins, alice, Denied, c, Some(("policy", "deny", c))).await;
    let c = to - 4 * D + H;
    request(
        t,
        admins,
        alice,
        Active,
        c,
        Some(("policy", "auto_approve", c)),
    )
    .await;
    let breach_admins = request(t, admins, alice, PendingApproval, to - 5 * H, None).await;
    request(t, admins, alice, PendingApproval, to - H, None).await;
    let c = to - 7 * D - 2 * H;
    request(
        t,
        admins,
        alice,
        Active,
        c,
        Some(("approver", "approved", c + 4 * H)),
    )
    .await;
    // Outside the period entirely.
    let c = to - 9 * D;
    request(
        t,
        readers,
        alice,
        Active,
        c,
        Some(("approver", "approved", c + H)),
    )
    .await;
    let oldest = request(t, readers, alice, PendingApproval, to - 8 * D - H, None).await;
    let mut tx = t.app.store.begin().await.unwrap();
    let oldest_id = RequestId::parse(&oldest).unwrap();
    tx.insert_approval(&NewApproval {
        request_id: &oldest_id,
        step: 0,
        email: "bob@example.com",
        name: "Bob Owner",
        platform: "slack",
        chat_user_id: Some("U222"),
        on_behalf_of: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let failed = request(t, admins, alice, Failed, to - 9 * D, None).await;
    let held = request(t, admins, alice, Active, to - 10 * D, None).await;
    let stuck_grant = grant(t, &held, "revoking", to + 20 * D, to).await;
    let mut tx = t.app.store.begin().await.unwrap();
    tx.insert_fulfilment(&Fulfilment {
        id: "T-SEEDED01".into(),
        task_key: format!("revoke:{stuck_grant}"),
        kind: "revoke".into(),
        request_id: held.clone(),
        grant_id: Some(stuck_grant.clone()),
        app: "github".into(),
        entitlement: "platform-admins".into(),
        target: "platform-admins".into(),
        subject_email: alice.into(),
        channel: "CIT".into(),
        revoke_by: None,
        revoke_reason: None,
        state: "open".into(),
        created_at: to - 2 * D,
        decided_by: None,
        decided_at: None,
        message_channel: None,
        message_ts: None,
    })
    .await
    .unwrap();
    assert!(tx
        .decide_fulfilment("T-SEEDED01", "failed", "carol@example.com", to - D)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let mut expiring = Vec::new();
    for (offset, state) in [
        (2 * H, "active"),
        (2 * D, "active"),
        (5 * D, "active"),
        (H, "revoked"),
    ] {
        let r = request(t, admins, alice, Active, to - 10 * D, None).await;
        let g = grant(t, &r, state, to + offset, to).await;
        if state == "active" && offset < 3 * D {
            expiring.push(g);
        }
    }
    Seeded {
        to,
        oldest,
        breach_admins,
        failed,
        stuck_grant,
        expiring,
    }
}

fn section<'a>(d: &'a [grantry::chat::digest::DigestSection], title: &str) -> &'a str {
    &d.iter()
        .find(|s| s.title.starts_with(title))
        .unwrap_or_else(|| panic!("no section {title}"))
        .body
}

#[tokio::test]
async fn the_digest_numbers_match_the_seeded_store() {
    let t = spawn_app_with(configure).await;
    let s = seed(&t).await;
    let d = grantry::flow::digest::compute(&t.app, s.to - 7 * D, s.to)
        .await
        .unwrap();
    assert_eq!(
        d.opened, 16,
        "10 readers + 6 platform-admins opened in the week"
    );
    assert_eq!(
        d.approved_by_people, 12,
        "10 readers, 1 admin, 1 opened before"
    );
    assert_eq!(
        (d.auto_approved, d.denied_by_people, d.denied_by_policy),
        (1, 1, 1)
    );
    assert_eq!(d.median_decision_ms, Some(2 * H));
    let pending: Vec<&str> = d.pending.iter().map(|p| p.request_id.as_str()).collect();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending[0], s.oldest);
    assert_eq!(d.pending[0].waiting_on, vec!["Bob Owner".to_string()]);
    assert_eq!(
        d.pending_by_age().map(|(_, n)| n),
        [1, 1, 0, 1],
        "under 4h, 4h-1d, 1d-3d, over 3d"
    );
    let breaches: Vec<(&str, &str, i64)> = d
        .sla_breaches
        .iter()
        .map(|p| (p.request_id.as_str(), p.risk.as_str(), p.sla_ms))
        .collect();
    assert_eq!(
        breaches,
        vec![
            (s.oldest.as_str(), "low", 24 * H),
            (s.breach_admins.as_str(), "high", 4 * H)
        ]
    );
    let failures: Vec<&str> = d.failures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(failures, vec![s.failed.as_str(), s.stuck_grant.as_str()]);
    let expiring: Vec<String> = d.expiring.iter().map(|g| g.grant_id.clone()).collect();
    assert_eq!(expiring, s.expiring);
    let top: Vec<(&str, u64, u64, u64, u64, u64)> = d
        .top
        .iter()
        .map(|e| {
            (
                e.access.as_str(),
                e.requests,
                e.approved_by_people,
                e.auto_approved,
                e.denied,
                e.approved_percent(),
            )
        })
        .collect();
    assert_eq!(
        top,
        vec![
            ("github/readers", 10, 10, 0, 0, 100),
            ("github/platform-admins", 6, 1, 1, 2, 33)
        ]
    );
    assert_eq!(d.top[0].median_decision_ms, Some(2 * H));
    assert_eq!(d.suggestions.len(), 1);
    assert_eq!(d.suggestions[0].access, "github/readers");
    let per_day: Vec<u64> = d.days.iter().map(|p| p.requests).collect();
    assert_eq!(per_day, vec![0, 1, 0, 1, 1, 1, 12]);
    let medians: Vec<Option<i64>> = d.days.iter().map(|p| p.median_decision_ms).collect();
    assert_eq!(
        medians,
        vec![
            Some(4 * H),
            None,
            None,
            None,
            Some(H),
            Some(3 * H),
            Some(2 * H)
        ]
    );

    // The words people read.
    let secs = d.sections();
    assert_eq!(
        section(&secs, "Requests"),
        "16 opened · 12 approved by people (median 2h to decide) · 1 auto-approved · 2 denied (1 by people, 1 by policy)"
    );
    assert!(section(&secs, "Waiting").starts_with(&format!(
        "3 requests waiting: 1 under 4h, 1 4h-1d, 0 1d-3d, 1 over 3d.\nOldest: {} *github/readers* for alice@example.com, waiting 8d 1h on Bob Owner.",
        s.oldest
    )));
    assert!(section(&secs, "SLA breaches").starts_with("2 requests past the approval SLA:"));
    assert!(section(&secs, "Needs a human").contains(&s.stuck_grant));
    assert_eq!(
        section(&secs, "Rules to consider"),
        "• *github/readers*: 10 requests, 10 approved by people in median 2h: consider an auto_approve policy"
    );

    // The chart: a PNG of the right size whose bars have the heights of the numbers.
    let png = chart::render(&d.days).unwrap();
    assert_eq!(bar_heights(&png, &d.days), vec![0, 17, 0, 17, 17, 17, 200]);
}

/// Decodes the PNG and measures each bar: from the first bar-coloured pixel down to the axis.
fn bar_heights(png: &[u8], days: &[grantry::chat::digest::DayPoint]) -> Vec<u32> {
    let dec = png::Decoder::new(std::io::Cursor::new(png));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (chart::WIDTH, chart::HEIGHT));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let l = chart::layout(days);
    l.bars
        .iter()
        .map(|&(left, _, _)| {
            let x = left + 1;
            (0..l.baseline)
                .find(|&y| {
                    let i = ((y * chart::WIDTH + x) * 3) as usize;
                    buf[i..i + 3] == chart::BAR
                })
                .map_or(0, |top| l.baseline - top)
        })
        .collect()
}

fn digest_posts(t: &TestApp) -> Vec<Value> {
    t.slack
        .calls_of("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == "CIT" && c.body["blocks"][0]["type"] == "header")
        .map(|c| c.body)
        .collect()
}

#[tokio::test]
async fn access_digest_is_for_it_admins_and_posts_text_and_chart() {
    let t = spawn_app_with(configure).await;
    let s = seed(&t).await;
    let before = t.app.store.jobs(None, 10_000).await.unwrap().len();
    let (status, body) = t.command("U111", "digest", "trig-digest-1").await;
    assert_eq!(status, 200);
    assert!(
        body["text"].as_str().unwrap().starts_with("Only IT admins"),
        "{body}"
    );
    let tr = &t;
    let queued = |kind: &'static str| async move {
        tr.app
            .store
            .jobs(None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == kind)
            .count()
    };
    assert_eq!(queued("post_digest").await, 0, "nothing queued for Alice");

    // Slack is briefly unavailable for the upload: only the chart's job retries.
    t.slack.fail_next(slack::Fault {
        method: "files.getUploadURLExternal".into(),
        status: 503,
        retry_after: None,
        body: serde_json::json!({}),
    });
    let (status, body) = t.command("U333", "digest", "trig-digest-2").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["text"],
        "Posting the digest of the last 7d to <#CIT> in a moment."
    );
    let post = eventually(10, "digest posted", || async {
        digest_posts(&t).into_iter().next()
    })
    .await;
    let text = post["blocks"].to_string();
    assert!(post["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .starts_with("Access digest: "));
    for want in [
        "16 opened · 12 approved by people (median 2h to decide) · 1 auto-approved · 2 denied (1 by people, 1 by policy)",
        "3 requests waiting: 1 under 4h, 1 4h-1d, 0 1d-3d, 1 over 3d.",
        &s.oldest,
        "*github/readers*: 10 requests, 10 approved by people in median 2h: consider an auto_approve policy",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }

    // The chart: upload URL, the bytes there, then the file shared in the status channel.
    let complete = eventually(10, "upload completed", || async {
        t.slack
            .calls_of("files.completeUploadExternal")
            .into_iter()
            .next()
    })
    .await;
    let asked = t.slack.calls_of("files.getUploadURLExternal");
    assert_eq!(asked.len(), 2, "the 503, then the retry");
    let asked = &asked[1..];
    assert_eq!(
        asked[0].authorization.as_deref(),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    let uploads = t.slack.uploads();
    assert_eq!(uploads.len(), 1);
    let (file_id, bytes) = &uploads[0];
    assert_eq!(asked[0].body["length"], bytes.len().to_string());
    assert!(asked[0].body["filename"]
        .as_str()
        .unwrap()
        .ends_with(".png"));
    assert_eq!(complete.body["channel_id"], "CIT");
    assert_eq!(complete.body["files"][0]["id"], file_id.as_str());
    assert!(complete.body["initial_comment"]
        .as_str()
        .unwrap()
        .starts_with("Bars: requests opened per day (highest 12)"));
    let d = grantry::flow::digest::compute(&t.app, s.to - 7 * D, s.to)
        .await
        .unwrap();
    assert_eq!(bar_heights(bytes, &d.days).iter().max(), Some(&200));

    // A second delivery of the same command (Slack's retry) queues nothing more.
    t.command("U333", "digest", "trig-digest-2").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(queued("post_digest").await, 1);
    assert_eq!(queued("post_digest_chart").await, 1);
    assert_eq!(digest_posts(&t).len(), 1);
    assert!(t.app.store.jobs(None, 10_000).await.unwrap().len() > before);
}

#[tokio::test]
async fn the_schedule_posts_once_however_many_replicas_sweep() {
    // A time two days ahead, in Berlin: the digest's schedule names exactly that minute.
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let at = chrono::Utc::now().with_timezone(&tz) + chrono::Duration::days(2);
    use chrono::{Datelike, Timelike};
    let schedule = format!(
        "{} {} {} {} *",
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    );
    let t = spawn_app_with(|c| {
        configure(c);
        c.digest.schedule = schedule.clone();
        c.digest.timezone = "Europe/Berlin".into();
    })
    .await;
    let sched = t.app.config.digest.schedule().unwrap().unwrap();
    let run = sched.next_run(t.clock.now_ms()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(digest_posts(&t).is_empty(), "not before its time");

    // A second replica on the same database sweeps too.
    let replica = grantry::App::build(
        t.app.config.clone(),
        t.clock.clone() as Arc<dyn grantry::clock::Clock>,
    )
    .await
    .unwrap();
    t.clock.advance_ms(run - t.clock.now_ms() + 60_000);
    let mine = grantry::flow::digest::scheduled(&replica).await.unwrap();
    let post = eventually(10, "scheduled digest", || async {
        digest_posts(&t).into_iter().next()
    })
    .await;
    assert!(!grantry::flow::digest::scheduled(&replica).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let jobs: Vec<_> = t
        .app
        .store
        .jobs(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "post_digest")
        .collect();
    assert_eq!(
        jobs.len(),
        1,
        "one digest for the slot (replica won: {mine})"
    );
    let payload: Value = serde_json::from_str(&jobs[0].payload).unwrap();
    assert_eq!(payload["to_ms"], run);
    assert_eq!(payload["from_ms"], run - 7 * D);
    assert_eq!(digest_posts(&t).len(), 1);
    assert!(
        post["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains(" CE"),
        "shown in Berlin time"
    );
}
