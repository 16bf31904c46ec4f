//! IT's digest: computed from the store for a period, posted to the status channel by a job, on
//! the `[digest] schedule` (once per scheduled time across replicas: a `schedule_runs` slot) and
//! on demand (`/access digest`, `grantry digest --post`).

use std::collections::BTreeMap;

use super::FlowError;
use crate::chat::digest::{
    DayPoint, Digest, EntitlementStat, ExpiringItem, FailureItem, PendingItem,
};
use crate::store::digest::{PeriodDecision, PeriodRequest};
use crate::store::{Job, StoreError};
use crate::App;

/// A scheduled digest missed while no replica ran is still posted this long after its time.
pub const CATCH_UP_MS: i64 = 6 * 3_600_000;
/// The `schedule_runs` name of the scheduled digest.
pub const SLOT: &str = "digest";
const DAY_MS: i64 = 86_400_000;
/// Most rows read for a list (pending, failures, expiring).
const MAX_ROWS: i64 = 10_000;

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    })
}

/// Counts of the period's final decisions: (approved by people, auto-approved, denied by
/// people, denied by policy, median ms from request to a person's decision).
pub fn decision_counts(decisions: &[PeriodDecision]) -> (u64, u64, u64, u64, Option<i64>) {
    let (mut ok, mut auto, mut no, mut policy_no) = (0, 0, 0, 0);
    let mut waits = Vec::new();
    for d in decisions {
        match (d.kind.as_str(), d.outcome.as_str()) {
            ("approver", "approved") => ok += 1,
            ("approver", "rejected") => no += 1,
            ("policy", "auto_approve") => auto += 1,
            ("policy", "deny") => policy_no += 1,
            _ => continue,
        }
        if d.kind == "approver" {
            waits.push(d.at - d.requested_at);
        }
    }
    (ok, auto, no, policy_no, median(&mut waits))
}

/// Per entitlement, how its requests of the period went, most requested first (ties by name).
pub fn entitlement_stats(requests: &[PeriodRequest]) -> Vec<EntitlementStat> {
    let mut by: BTreeMap<String, (EntitlementStat, Vec<i64>)> = BTreeMap::new();
    for r in requests {
        let access = format!("{}/{}", r.app, r.entitlement);
        let (s, waits) = by.entry(access.clone()).or_insert_with(|| {
            (
                EntitlementStat {
                    access,
                    requests: 0,
                    approved_by_people: 0,
                    auto_approved: 0,
                    denied: 0,
                    median_decision_ms: None,
                },
                Vec::new(),
            )
        });
        s.requests += 1;
        match (r.decision_kind.as_deref(), r.decision_outcome.as_deref()) {
            (Some("approver"), Some("approved")) => {
                s.approved_by_people += 1;
                if let Some(at) = r.decided_at {
                    waits.push(at - r.created_at);
                }
            }
            (Some("approver"), Some("rejected")) | (Some("policy"), Some("deny")) => s.denied += 1,
            (Some("policy"), Some("auto_approve")) => s.auto_approved += 1,
            _ => {}
        }
    }
    let mut out: Vec<EntitlementStat> = by
        .into_values()
        .map(|(mut s, mut waits)| {
            s.median_decision_ms = median(&mut waits);
            s
        })
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.access.cmp(&b.access)));
    out
}

/// Entitlements requested at least `min_requests` times, every one approved by people: a rule
/// could approve them instead.
pub fn suggestions(stats: &[EntitlementStat], min_requests: u64) -> Vec<EntitlementStat> {
    stats
        .iter()
        .filter(|s| s.requests >= min_requests.max(1) && s.approved_by_people == s.requests)
        .cloned()
        .collect()
}

/// The chart's buckets: 24-hour windows ending at `to_ms` (the first clipped to `from_ms`),
/// with requests opened and the median time to a person's decision of the decisions made in each.
pub fn days(
    from_ms: i64,
    to_ms: i64,
    requests: &[PeriodRequest],
    decisions: &[PeriodDecision],
) -> Vec<DayPoint> {
    let span = (to_ms - from_ms).max(1);
    let n = ((span + DAY_MS - 1) / DAY_MS).clamp(1, 92);
    let index = |t: i64| -> Option<usize> {
        if t < from_ms || t >= to_ms {
            return None;
        }
        let back = (to_ms - 1 - t) / DAY_MS;
        (back < n).then(|| (n - 1 - back) as usize)
    };
    let mut counts = vec![0u64; n as usize];
    let mut waits: Vec<Vec<i64>> = vec![Vec::new(); n as usize];
    for r in requests {
        if let Some(i) = index(r.created_at) {
            counts[i] += 1;
        }
    }
    for d in decisions.iter().filter(|d| d.kind == "approver") {
        if let Some(i) = index(d.at) {
            waits[i].push(d.at - d.requested_at);
        }
    }
    (0..n as usize)
        .map(|i| DayPoint {
            start_ms: (to_ms - (n - i as i64) * DAY_MS).max(from_ms),
            requests: counts[i],
            median_decision_ms: median(&mut waits[i]),
        })
        .collect()
}

/// The configured period in milliseconds (7 days if the config could not say).
pub fn period_ms(app: &App) -> i64 {
    app.config.digest.period_ms().unwrap_or(7 * DAY_MS)
}

/// Computes the digest of `[from_ms, to_ms)`; what waits now is measured at `to_ms`.
pub async fn compute(app: &App, from_ms: i64, to_ms: i64) -> Result<Digest, FlowError> {
    let cfg = &app.config.digest;
    let store = &app.store;
    let requests = store.digest_requests(from_ms, to_ms).await?;
    let decisions = store.digest_decisions(from_ms, to_ms).await?;
    let (approved, auto, denied_people, denied_policy, median_ms) = decision_counts(&decisions);
    let mut pending = Vec::new();
    for w in store.waiting_requests(MAX_ROWS).await? {
        let risk = app
            .catalog
            .app(&w.app)
            .and_then(|a| a.entitlement(&w.entitlement))
            .map(|e| e.risk.to_string())
            .unwrap_or_else(|| "medium".into());
        pending.push(PendingItem {
            request_id: w.id,
            access: format!("{}/{}", w.app, w.entitlement),
            subject: w.subject_email,
            age_ms: (to_ms - w.created_at).max(0),
            sla_ms: app.config.approvals.sla_ms(&risk),
            risk,
            waiting_on: Vec::new(),
        });
    }
    if let Some(oldest) = pending.first_mut() {
        let id = crate::domain::RequestId::from_stored(oldest.request_id.clone());
        oldest.waiting_on = store
            .approvals(&id)
            .await?
            .into_iter()
            .filter(|a| a.state == "pending")
            .map(|a| a.approver_name)
            .collect();
    }
    let sla_breaches = pending
        .iter()
        .filter(|p| p.age_ms >= p.sla_ms)
        .cloned()
        .collect();
    let failures = store
        .waiting_failures(MAX_ROWS)
        .await?
        .into_iter()
        .map(|f| FailureItem {
            what: if f.kind == "revoke" {
                "IT could not remove it by hand; the access is still held".into()
            } else {
                "provisioning failed".into()
            },
            id: f.id,
            access: format!("{}/{}", f.app, f.entitlement),
            subject: f.subject_email,
            since_ms: f.since,
        })
        .collect();
    let expiring_within_ms = cfg.expiring_within_ms().unwrap_or(3 * DAY_MS);
    let expiring = store
        .grants_ending_within(to_ms, expiring_within_ms, MAX_ROWS)
        .await?
        .into_iter()
        .map(|g| ExpiringItem {
            expires_at_ms: g.expires_at.unwrap_or(to_ms),
            grant_id: g.id,
            access: format!("{}/{}", g.app, g.entitlement),
            subject: g.subject_email,
        })
        .collect();
    let stats = entitlement_stats(&requests);
    Ok(Digest {
        from_ms,
        to_ms,
        timezone: cfg.tz().unwrap_or(chrono_tz::UTC),
        opened: requests.len() as u64,
        approved_by_people: approved,
        auto_approved: auto,
        denied_by_people: denied_people,
        denied_by_policy: denied_policy,
        median_decision_ms: median_ms,
        pending,
        sla_breaches,
        failures,
        expiring,
        expiring_within_ms,
        suggestions: suggestions(&stats, cfg.suggest_min_requests),
        top: stats.into_iter().take(cfg.top.max(1)).collect(),
        days: days(from_ms, to_ms, &requests, &decisions),
    })
}

/// Queues the digest of the period ending now for `channel` on `platform`. With `dedupe` (a
/// chat platform's retry key), a second call with the same key queues nothing. Returns whether
/// it queued.
pub async fn post_now(
    app: &App,
    platform: &str,
    channel: &str,
    dedupe: Option<&str>,
) -> Result<bool, StoreError> {
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    if let Some(key) = dedupe {
        if !tx.claim_slot(&format!("digest:{key}"), 0, now).await? {
            return Ok(false);
        }
    }
    let job = Job::PostDigest {
        platform: platform.to_string(),
        channel: channel.to_string(),
        from_ms: now - period_ms(app),
        to_ms: now,
    };
    tx.enqueue(&job, now, app.config.jobs.max_attempts).await?;
    tx.commit().await?;
    Ok(true)
}

/// The sweeper's part: when a scheduled time has come (within [`CATCH_UP_MS`]), claims its slot
/// and queues the digest of the period ending then, in one transaction, so however many replicas
/// sweep, one digest is posted. Returns whether this call queued it.
pub async fn scheduled(app: &App) -> Result<bool, StoreError> {
    let Ok(Some(schedule)) = app.config.digest.schedule() else {
        return Ok(false);
    };
    let Some((platform, channel)) = app.status_channel() else {
        return Ok(false);
    };
    let now = app.now_ms();
    let Some(run) = schedule.last_run(now, CATCH_UP_MS) else {
        return Ok(false);
    };
    let mut tx = app.store.begin().await?;
    if !tx.claim_slot(SLOT, run, now).await? {
        return Ok(false);
    }
    let job = Job::PostDigest {
        platform: platform.into(),
        channel: channel.to_string(),
        from_ms: run - period_ms(app),
        to_ms: run,
    };
    tx.enqueue(&job, now, app.config.jobs.max_attempts).await?;
    tx.commit().await?;
    tracing::info!(run_at = run, "scheduled digest queued");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(app_ent: (&str, &str), at: i64, decided: Option<(&str, &str, i64)>) -> PeriodRequest {
        PeriodRequest {
            id: format!("R-{at}"),
            app: app_ent.0.into(),
            entitlement: app_ent.1.into(),
            created_at: at,
            decision_kind: decided.map(|d| d.0.into()),
            decision_outcome: decided.map(|d| d.1.into()),
            decided_at: decided.map(|d| d.2),
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
    }

    #[test]
    fn stats_and_suggestions() {
        let h = 3_600_000;
        let mut rs = Vec::new();
        for i in 0..10 {
            rs.push(req(
                ("github", "readers"),
                i,
                Some(("approver", "approved", i + 2 * h)),
            ));
        }
        rs.push(req(
            ("github", "admins"),
            0,
            Some(("approver", "approved", h)),
        ));
        rs.push(req(
            ("github", "admins"),
            1,
            Some(("approver", "rejected", 1 + h)),
        ));
        rs.push(req(("okta", "x"), 2, Some(("policy", "auto_approve", 2))));
        let stats = entitlement_stats(&rs);
        assert_eq!(stats[0].access, "github/readers");
        assert_eq!(stats[0].requests, 10);
        assert_eq!(stats[0].median_decision_ms, Some(2 * h));
        assert_eq!(stats[1].access, "github/admins");
        assert_eq!((stats[1].approved_by_people, stats[1].denied), (1, 1));
        assert_eq!(stats[2].auto_approved, 1);
        let s = suggestions(&stats, 10);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].access, "github/readers");
        assert!(suggestions(&stats, 11).is_empty());
    }

    #[test]
    fn buckets_end_at_the_period_end() {
        let to = 10 * DAY_MS;
        let from = to - 7 * DAY_MS;
        let rs = vec![
            req(("a", "b"), from, None),
            req(("a", "b"), to - 1, None),
            req(("a", "b"), to - 1, None),
            req(("a", "b"), from - 1, None),
        ];
        let ds = vec![PeriodDecision {
            request_id: "R-1".into(),
            kind: "approver".into(),
            outcome: "approved".into(),
            at: to - DAY_MS,
            requested_at: to - DAY_MS - 3_600_000,
        }];
        let d = days(from, to, &rs, &ds);
        assert_eq!(d.len(), 7);
        assert_eq!(d[0].start_ms, from);
        assert_eq!(d[0].requests, 1);
        assert_eq!(d[6].requests, 2);
        assert_eq!(d[6].median_decision_ms, Some(3_600_000));
        assert_eq!(d[5].median_decision_ms, None);
    }
}
