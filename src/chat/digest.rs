//! The IT digest as a platform-neutral message: what happened in a period, what waits, what needs
//! a human, and which rules could take work off the approvers. `flow::digest` computes it;
//! each platform renders [`Digest::sections`] (Slack: one Block Kit section each) and, where it
//! can show images, the chart ([`super::chart`]).

use chrono_tz::Tz;

use super::escape;

/// A request waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingItem {
    pub request_id: String,
    /// `app/entitlement`.
    pub access: String,
    /// Who the access is for (shown escaped).
    pub subject: String,
    pub age_ms: i64,
    /// The entitlement's risk and the approval SLA that goes with it.
    pub risk: String,
    pub sla_ms: i64,
    /// The approvers still asked (names).
    pub waiting_on: Vec<String>,
}

/// Something that failed and needs a person in IT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureItem {
    /// The request (`R-…`) or grant (`G-…`) to retry.
    pub id: String,
    pub access: String,
    pub subject: String,
    /// What failed, in words.
    pub what: String,
    pub since_ms: i64,
}

/// A grant that ends soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringItem {
    pub grant_id: String,
    pub access: String,
    pub subject: String,
    pub expires_at_ms: i64,
}

/// How one entitlement's requests of the period went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementStat {
    pub access: String,
    /// Requests opened in the period.
    pub requests: u64,
    pub approved_by_people: u64,
    pub auto_approved: u64,
    /// Denied by policy or by people.
    pub denied: u64,
    /// Median time from request to a person's decision.
    pub median_decision_ms: Option<i64>,
}

impl EntitlementStat {
    /// Approved (by people or policy) out of all requests, in whole percent.
    pub fn approved_percent(&self) -> u64 {
        if self.requests == 0 {
            return 0;
        }
        ((self.approved_by_people + self.auto_approved) * 100 + self.requests / 2) / self.requests
    }
}

/// One bucket of the chart: requests opened in it and the median time to a person's decision of
/// the decisions made in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayPoint {
    pub start_ms: i64,
    pub requests: u64,
    pub median_decision_ms: Option<i64>,
}

/// The digest of `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The zone times are shown in.
    pub timezone: Tz,
    /// Requests opened in the period.
    pub opened: u64,
    /// Final decisions made in the period.
    pub approved_by_people: u64,
    pub auto_approved: u64,
    pub denied_by_people: u64,
    pub denied_by_policy: u64,
    /// Median time from request to a person's final decision, over the period's decisions.
    pub median_decision_ms: Option<i64>,
    /// Requests waiting for approval now, oldest first.
    pub pending: Vec<PendingItem>,
    /// The pending requests older than their SLA, oldest first.
    pub sla_breaches: Vec<PendingItem>,
    /// Failures waiting for IT, oldest first.
    pub failures: Vec<FailureItem>,
    /// Grants ending within [`Digest::expiring_within_ms`], soonest first.
    pub expiring: Vec<ExpiringItem>,
    pub expiring_within_ms: i64,
    /// The most requested entitlements of the period, most first.
    pub top: Vec<EntitlementStat>,
    /// Entitlements whose requests were all approved by people: candidates for `auto_approve`.
    pub suggestions: Vec<EntitlementStat>,
    /// The chart's buckets, oldest first.
    pub days: Vec<DayPoint>,
}

/// One titled part of the digest; `body` is mrkdwn with user text escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSection {
    pub title: String,
    pub body: String,
}

/// Items listed per section before "… and N more".
const LIST: usize = 5;

/// `35m`, `4h 10m`, `2d 3h`.
pub fn human_duration(ms: i64) -> String {
    let mins = ms.max(0) / 60_000;
    let (d, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (d, h, m) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn bullets<T>(items: &[T], line: impl Fn(&T) -> String) -> String {
    let mut out: Vec<String> = items
        .iter()
        .take(LIST)
        .map(|i| format!("• {}", line(i)))
        .collect();
    if items.len() > LIST {
        out.push(format!("… and {} more", items.len() - LIST));
    }
    out.join("\n")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Digest {
    /// When a time is shown: `Mon 2026-11-30 09:00 CET`.
    pub fn local(&self, ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&self.timezone)
                    .format("%a %Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_else(|| ms.to_string())
    }

    /// The headline.
    pub fn title(&self) -> String {
        format!(
            "Access digest: {} to {}",
            self.local(self.from_ms),
            self.local(self.to_ms)
        )
    }

    /// Pending requests by age: under 4h, 4h to 1d, 1d to 3d, over 3d.
    pub fn pending_by_age(&self) -> [(&'static str, u64); 4] {
        let mut b = [("under 4h", 0), ("4h-1d", 0), ("1d-3d", 0), ("over 3d", 0)];
        for p in &self.pending {
            let i = match p.age_ms {
                a if a < 4 * 3_600_000 => 0,
                a if a < 86_400_000 => 1,
                a if a < 3 * 86_400_000 => 2,
                _ => 3,
            };
            b[i].1 += 1;
        }
        b
    }

    /// The parts, in order; each platform lays them out its own way.
    pub fn sections(&self) -> Vec<DigestSection> {
        let mut out = Vec::new();
        let decided = match self.median_decision_ms {
            Some(m) => format!(" (median {} to decide)", human_duration(m)),
            None => String::new(),
        };
        out.push(DigestSection {
            title: "Requests".into(),
            body: format!(
                "{} opened · {} approved by people{decided} · {} auto-approved · {} denied ({} by people, {} by policy)",
                self.opened,
                self.approved_by_people,
                self.auto_approved,
                self.denied_by_people + self.denied_by_policy,
                self.denied_by_people,
                self.denied_by_policy
            ),
        });
        let pending = if self.pending.is_empty() {
            "Nothing is waiting for approval.".to_string()
        } else {
            let ages: Vec<String> = self
                .pending_by_age()
                .iter()
                .map(|(label, n)| format!("{n} {label}"))
                .collect();
            let mut s = format!(
                "{} waiting: {}.",
                plural(self.pending.len() as u64, "request", "requests"),
                ages.join(", ")
            );
            if let Some(o) = self.pending.first() {
                s.push_str(&format!(
                    "\nOldest: {} *{}* for {}, waiting {}{}.",
                    o.request_id,
                    escape(&o.access),
                    escape(&o.subject),
                    human_duration(o.age_ms),
                    if o.waiting_on.is_empty() {
                        String::new()
                    } else {
                        format!(" on {}", escape(&o.waiting_on.join(", ")))
                    }
                ));
            }
            s
        };
        out.push(DigestSection {
            title: "Waiting for approval".into(),
            body: pending,
        });
        out.push(DigestSection {
            title: "SLA breaches".into(),
            body: if self.sla_breaches.is_empty() {
                "None: every pending request is within its approval SLA.".into()
            } else {
                format!(
                    "{} past the approval SLA:\n{}",
                    plural(self.sla_breaches.len() as u64, "request", "requests"),
                    bullets(&self.sla_breaches, |p| format!(
                        "{} *{}* for {}: waiting {} ({} risk, SLA {})",
                        p.request_id,
                        escape(&p.access),
                        escape(&p.subject),
                        human_duration(p.age_ms),
                        escape(&p.risk),
                        human_duration(p.sla_ms)
                    ))
                )
            },
        });
        out.push(DigestSection {
            title: "Needs a human".into(),
            body: if self.failures.is_empty() {
                "Nothing failed.".into()
            } else {
                format!(
                    "{}; fix the cause, then `grantry retry <id>`:\n{}",
                    plural(self.failures.len() as u64, "failure", "failures"),
                    bullets(&self.failures, |f| format!(
                        "{} *{}* for {}: {} (since {})",
                        f.id,
                        escape(&f.access),
                        escape(&f.subject),
                        escape(&f.what),
                        self.local(f.since_ms)
                    ))
                )
            },
        });
        out.push(DigestSection {
            title: format!(
                "Expiring in the next {}",
                human_duration(self.expiring_within_ms)
            ),
            body: if self.expiring.is_empty() {
                "No grant ends soon.".into()
            } else {
                format!(
                    "{}:\n{}",
                    plural(self.expiring.len() as u64, "grant", "grants"),
                    bullets(&self.expiring, |g| format!(
                        "{} *{}* of {}: {}",
                        g.grant_id,
                        escape(&g.access),
                        escape(&g.subject),
                        super::time_left(self.to_ms, g.expires_at_ms)
                    ))
                )
            },
        });
        out.push(DigestSection {
            title: "Most requested".into(),
            body: if self.top.is_empty() {
                "No requests in this period.".into()
            } else {
                bullets(&self.top, |e| {
                    format!(
                        "*{}*: {}, {}% approved ({} by people, {} automatically), {} denied{}",
                        escape(&e.access),
                        plural(e.requests, "request", "requests"),
                        e.approved_percent(),
                        e.approved_by_people,
                        e.auto_approved,
                        e.denied,
                        e.median_decision_ms
                            .map(|m| format!(", median {} to decide", human_duration(m)))
                            .unwrap_or_default()
                    )
                })
            },
        });
        if !self.suggestions.is_empty() {
            out.push(DigestSection {
                title: "Rules to consider".into(),
                body: bullets(&self.suggestions, |e| {
                    format!(
                        "*{}*: {}, {} approved by people{}: consider an auto_approve policy",
                        escape(&e.access),
                        plural(e.requests, "request", "requests"),
                        e.approved_by_people,
                        e.median_decision_ms
                            .map(|m| format!(" in median {}", human_duration(m)))
                            .unwrap_or_default()
                    )
                }),
            });
        }
        out
    }

    /// What the chart shows, in words (the image has no text).
    pub fn chart_caption(&self) -> String {
        let most = self.days.iter().map(|d| d.requests).max().unwrap_or(0);
        let slowest = self.days.iter().filter_map(|d| d.median_decision_ms).max();
        format!(
            "Bars: requests opened per day (highest {most}). Line: median time to a person's decision per day{}.",
            slowest
                .map(|m| format!(" (highest {})", human_duration(m)))
                .unwrap_or_else(|| ", none this period".into())
        )
    }

    /// The whole digest as one mrkdwn text (for platforms without layout, and the CLI).
    pub fn text(&self) -> String {
        let mut s = format!("*{}*", self.title());
        for sec in self.sections() {
            s.push_str(&format!("\n\n*{}*\n{}", sec.title, sec.body));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(35 * 60_000), "35m");
        assert_eq!(human_duration(2 * 3_600_000), "2h");
        assert_eq!(human_duration(4 * 3_600_000 + 10 * 60_000), "4h 10m");
        assert_eq!(human_duration(3 * 86_400_000), "3d");
        assert_eq!(human_duration(2 * 86_400_000 + 3 * 3_600_000 + 5), "2d 3h");
    }

    #[test]
    fn shares_round() {
        let e = EntitlementStat {
            access: "a/b".into(),
            requests: 3,
            approved_by_people: 1,
            auto_approved: 1,
            denied: 1,
            median_decision_ms: None,
        };
        assert_eq!(e.approved_percent(), 67);
    }
}
