//! The catalog: apps, their owners and connector, and the entitlements one may request.
//!
//! Access-as-code: a TOML file the deploying team keeps in its own repository. [`Catalog::parse`]
//! returns every problem at once, each with its place, so `grantry catalog check` can list them all.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;

use super::AccessDuration;

/// How much harm misuse of an entitlement could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        })
    }
}

/// What an entitlement is in the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementKind {
    #[default]
    Group,
    Team,
    Role,
    License,
}

/// One approval step: who may approve, and how many of them must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `owners` (the app's owners), `manager` (the subject's manager), or emails.
    pub approvers: Vec<String>,
    /// How many distinct approvals complete the step (N of M).
    pub need: u32,
    /// Backup approvers (emails), asked only when fewer than `need` of `approvers` can decide
    /// (they left, are the requester or the subject).
    pub backup: Vec<String>,
}

impl Step {
    /// The default: one of the app's owners.
    pub fn owners() -> Self {
        Self {
            approvers: vec!["owners".into()],
            need: 1,
            backup: Vec::new(),
        }
    }
}

/// One requestable entitlement of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct Entitlement {
    pub id: String,
    pub name: String,
    pub kind: EntitlementKind,
    /// The name of the group/team/role in the app (a SCIM group's displayName, a team slug).
    pub target: String,
    pub risk: Risk,
    /// `None`: no limit other than `permanent`.
    pub max_duration: Option<AccessDuration>,
    /// Used when a request names no duration.
    pub default_duration: AccessDuration,
    /// Whether access without an end date may be requested.
    pub allow_permanent: bool,
    /// Whether approvers may approve for less time than asked (default: yes).
    pub allow_shorter_approval: bool,
    /// Approval steps, in order (default: one step, one of the app's owners).
    pub steps: Vec<Step>,
    /// Entitlements (`app/entitlement`) that must not be held together with this one.
    pub conflicts: Vec<String>,
    /// Break-glass: where set, an emergency request is granted at once for at most this long
    /// (IT's status channel is alerted and the owners review it afterwards).
    pub break_glass: Option<AccessDuration>,
    /// For a bundle (an entitlement of the [`BUNDLE_APP`]): the entitlements it grants, as
    /// `app/entitlement`, one grant each. Empty for an app's own entitlements.
    pub members: Vec<String>,
}

/// The id of the catalog's built-in app that holds the bundles (`[[bundles]]`): a bundle is
/// requested as `/access bundle <id> …` and decided, routed and expired as one request.
pub const BUNDLE_APP: &str = "bundle";

/// The durations offered in pickers, before the entitlement's own limits.
const LADDER: [&str; 11] = [
    "30m", "1h", "2h", "4h", "8h", "1d", "2d", "3d", "1w", "2w", "4w",
];

impl Entitlement {
    /// Whether this is a bundle of other entitlements.
    pub fn is_bundle(&self) -> bool {
        !self.members.is_empty()
    }

    /// The durations a person may pick for this entitlement: the usual ladder up to
    /// `max_duration` (always including the default), then `None` (permanent) where allowed.
    pub fn duration_choices(&self) -> Vec<Option<AccessDuration>> {
        let mut v: Vec<AccessDuration> = LADDER
            .iter()
            .filter_map(|s| AccessDuration::parse(s).ok())
            .filter(|d| self.max_duration.is_none_or(|m| *d <= m))
            .collect();
        for extra in [Some(self.default_duration), self.max_duration]
            .into_iter()
            .flatten()
        {
            if !v.contains(&extra) {
                v.push(extra);
            }
        }
        v.sort();
        let mut out: Vec<Option<AccessDuration>> = v.into_iter().map(Some).collect();
        if self.allow_permanent {
            out.push(None);
        }
        out
    }
}

/// One app in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub id: String,
    pub name: String,
    /// Name of a connector instance in `grantry.toml` (`[connectors.<name>]`).
    pub connector: String,
    /// Owners' emails: the approvers of this app's requests.
    pub owners: Vec<String>,
    pub risk: Risk,
    pub entitlements: Vec<Entitlement>,
    /// The service desk (`[service_desks.<name>]`) that keeps a ticket for each request.
    pub service_desk: Option<String>,
}

impl App {
    /// The entitlement with this id (case-insensitive).
    pub fn entitlement(&self, id: &str) -> Option<&Entitlement> {
        self.entitlements
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(id))
    }
}

/// The whole catalog, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    pub apps: Vec<App>,
}

/// One problem in a catalog file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblem {
    /// e.g. `apps[1] (github).entitlements[0] (admins).max_duration`
    pub place: String,
    pub message: String,
}

impl fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A catalog that could not be accepted; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the catalog has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct CatalogError(pub Vec<CatalogProblem>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default, rename = "apps")]
    apps: Vec<RawApp>,
    #[serde(default)]
    bundles: Vec<RawBundle>,
}

/// A catalog role that bundles entitlements of several apps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    id: String,
    name: Option<String>,
    /// Who approves the bundle (the default step: one of them).
    #[serde(default)]
    owners: Vec<String>,
    /// The members, as `app/entitlement`.
    entitlements: Vec<String>,
    risk: Option<Risk>,
    max_duration: Option<String>,
    default_duration: Option<String>,
    #[serde(default)]
    allow_permanent: bool,
    allow_shorter_approval: Option<bool>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    id: String,
    name: Option<String>,
    connector: String,
    #[serde(default)]
    owners: Vec<String>,
    #[serde(default)]
    risk: Risk,
    #[serde(default)]
    entitlements: Vec<RawEntitlement>,
    /// A `[service_desks.<name>]` that keeps a ticket per request.
    service_desk: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntitlement {
    id: String,
    name: Option<String>,
    #[serde(default)]
    kind: EntitlementKind,
    target: Option<String>,
    risk: Option<Risk>,
    max_duration: Option<String>,
    default_duration: Option<String>,
    #[serde(default)]
    allow_permanent: bool,
    allow_shorter_approval: Option<bool>,
    /// The longest break-glass grant (absent: no break-glass for this entitlement).
    break_glass: Option<String>,
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    conflicts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    approvers: Vec<String>,
    need: Option<u32>,
    #[serde(default)]
    backup: Vec<String>,
}

/// The app and entitlement named by `app/entitlement` among `apps` (case-insensitive).
fn find_in<'a>(apps: &'a [App], qualified: &str) -> Option<(&'a App, &'a Entitlement)> {
    let (a, e) = qualified.split_once('/')?;
    let app = apps.iter().find(|x| x.id.eq_ignore_ascii_case(a))?;
    Some((app, app.entitlement(e)?))
}

/// Checks the `[[bundles]]` against the apps and builds the built-in [`BUNDLE_APP`] holding them.
fn parse_bundles(
    raw: Vec<RawBundle>,
    apps: &[App],
    problems: &mut Vec<CatalogProblem>,
) -> Option<App> {
    let find = |q: &str| find_in(apps, q);
    let mut ents: Vec<Entitlement> = Vec::new();
    let mut all_owners: Vec<String> = Vec::new();
    for (i, b) in raw.into_iter().enumerate() {
        let place = format!("bundles[{i}] ({})", b.id);
        let mut problem = |field: &str, message: String| {
            problems.push(CatalogProblem {
                place: if field.is_empty() {
                    place.clone()
                } else {
                    format!("{place}.{field}")
                },
                message,
            })
        };
        if !valid_id(&b.id) {
            problem(
                "id",
                "use letters, digits, '-', '_' or '.' (at most 64)".into(),
            );
        }
        if ents.iter().any(|e| e.id.eq_ignore_ascii_case(&b.id)) {
            problem("id", format!("bundle '{}' is defined twice", b.id));
        }
        for o in &b.owners {
            if !looks_like_email(o) {
                problem("owners", format!("'{o}' is not an email address"));
            }
        }
        let owners: Vec<String> = b.owners.iter().map(|o| o.to_ascii_lowercase()).collect();
        if b.entitlements.is_empty() {
            problem(
                "entitlements",
                "a bundle needs at least one entitlement".into(),
            );
        }
        let mut members: Vec<String> = Vec::new();
        let mut found: Vec<(&App, &Entitlement)> = Vec::new();
        for m in &b.entitlements {
            match find(m) {
                None => problem(
                    "entitlements",
                    format!("'{m}' is not an app/entitlement of this catalog"),
                ),
                Some((a, e)) => {
                    let q = format!("{}/{}", a.id, e.id).to_ascii_lowercase();
                    if members.contains(&q) {
                        problem("entitlements", format!("'{m}' is listed twice"));
                    } else {
                        members.push(q);
                        found.push((a, e));
                    }
                }
            }
        }
        // Separation of duties inside the bundle: it could never be granted.
        for (a, e) in &found {
            for c in &e.conflicts {
                if members.contains(c) {
                    problem(
                        "entitlements",
                        format!(
                            "{}/{} conflicts with {c}: a bundle cannot hold both",
                            a.id, e.id
                        ),
                    );
                }
            }
        }
        let members_max = found.iter().filter_map(|(_, e)| e.max_duration).min();
        let max = match b.max_duration.as_deref().map(AccessDuration::parse) {
            None => members_max,
            Some(Ok(d)) => {
                if let Some((a, e)) = found
                    .iter()
                    .find(|(_, e)| e.max_duration.is_some_and(|m| d > m))
                {
                    problem(
                        "max_duration",
                        format!(
                            "{d} is longer than the {} {}/{} allows",
                            e.max_duration.map(|m| m.to_string()).unwrap_or_default(),
                            a.id,
                            e.id
                        ),
                    );
                }
                Some(d)
            }
            Some(Err(err)) => {
                problem("max_duration", err.to_string());
                members_max
            }
        };
        let default = match b.default_duration.as_deref().map(AccessDuration::parse) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(err)) => {
                problem("default_duration", err.to_string());
                None
            }
        };
        if let (Some(d), Some(m)) = (default, max) {
            if d > m {
                problem(
                    "default_duration",
                    format!("{d} is longer than max_duration {m}"),
                );
            }
        }
        if b.allow_permanent {
            if let Some((a, e)) = found.iter().find(|(_, e)| !e.allow_permanent) {
                problem(
                    "allow_permanent",
                    format!("{}/{} cannot be held permanently", a.id, e.id),
                );
            }
        }
        let (raw_steps, step_problems) = parse_steps(&b.steps, "");
        for (field, message) in step_problems {
            problem(field.trim_start_matches('.'), message);
        }
        // "owners" in a bundle's steps are the bundle's owners, named.
        let mut steps: Vec<Step> = raw_steps
            .into_iter()
            .map(|mut s| {
                if s.approvers.iter().any(|w| w == "owners") {
                    s.approvers.retain(|w| w != "owners");
                    s.approvers.extend(owners.iter().cloned());
                }
                s
            })
            .collect();
        if steps.is_empty() {
            steps.push(Step {
                approvers: owners.clone(),
                need: 1,
                backup: Vec::new(),
            });
        }
        if steps.iter().any(|s| s.approvers.is_empty()) {
            problem(
                "owners",
                "a bundle needs owners (or steps naming its approvers)".into(),
            );
        }
        for o in &owners {
            if !all_owners.contains(o) {
                all_owners.push(o.clone());
            }
        }
        let fallback = AccessDuration::from_minutes(8 * 60).expect("8h is valid");
        let risk = b
            .risk
            .or_else(|| found.iter().map(|(_, e)| e.risk).max())
            .unwrap_or_default();
        ents.push(Entitlement {
            name: b.name.unwrap_or_else(|| b.id.clone()),
            target: String::new(),
            risk,
            kind: EntitlementKind::Role,
            max_duration: max,
            default_duration: default.or(max.map(|m| m.min(fallback))).unwrap_or(fallback),
            allow_permanent: b.allow_permanent,
            allow_shorter_approval: b.allow_shorter_approval.unwrap_or(true),
            steps,
            conflicts: Vec::new(),
            break_glass: None,
            members,
            id: b.id,
        });
    }
    let risk = ents.iter().map(|e| e.risk).max().unwrap_or_default();
    Some(App {
        id: BUNDLE_APP.into(),
        name: "Bundles".into(),
        connector: String::new(),
        owners: all_owners,
        risk,
        entitlements: ents,
        service_desk: None,
    })
}

/// Parses approval steps; problems come back as (field relative to the app, message).
fn parse_steps(raw: &[RawStep], eplace: &str) -> (Vec<Step>, Vec<(String, String)>) {
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (k, st) in raw.iter().enumerate() {
        let need = st.need.unwrap_or(1);
        let place = format!("{eplace}.steps[{k}]");
        if st.approvers.is_empty() {
            problems.push((
                place.clone(),
                "a step needs approvers: owners, manager, or emails".into(),
            ));
        }
        for who in &st.approvers {
            if who != "owners" && who != "manager" && !looks_like_email(who) {
                problems.push((
                    place.clone(),
                    format!("'{who}' is not owners, manager or an email"),
                ));
            }
        }
        let named = st.approvers.iter().filter(|w| looks_like_email(w)).count();
        let fixed = !st.approvers.iter().any(|w| w == "owners" || w == "manager");
        if need == 0 || (fixed && need as usize > named + st.backup.len()) {
            problems.push((
                place.clone(),
                format!(
                    "need = {need} cannot be met by {} approver(s)",
                    st.approvers.len()
                ),
            ));
        }
        for who in &st.backup {
            if !looks_like_email(who) {
                problems.push((
                    format!("{place}.backup"),
                    format!("'{who}' is not an email"),
                ));
            }
        }
        steps.push(Step {
            approvers: st
                .approvers
                .iter()
                .map(|w| w.to_ascii_lowercase())
                .collect(),
            need,
            backup: st.backup.iter().map(|w| w.to_ascii_lowercase()).collect(),
        });
    }
    (steps, problems)
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !s.contains(' '),
        None => false,
    }
}

impl Catalog {
    /// Parses and checks a catalog. `known_connectors` are the connector instance names configured;
    /// pass `None` to skip that check.
    pub fn parse(text: &str, known_connectors: Option<&[String]>) -> Result<Self, CatalogError> {
        let raw: RawCatalog = toml::from_str(text).map_err(|e| {
            let place = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                }
                None => "catalog".to_string(),
            };
            CatalogError(vec![CatalogProblem {
                place,
                message: e.message().to_string(),
            }])
        })?;
        let mut problems = Vec::new();
        let mut apps = Vec::new();
        let mut seen_apps = HashSet::new();
        if raw.bundles.is_empty() {
            // nothing to reserve
        } else if raw
            .apps
            .iter()
            .any(|a| a.id.eq_ignore_ascii_case(BUNDLE_APP))
        {
            problems.push(CatalogProblem {
                place: "apps".into(),
                message: format!("the app id '{BUNDLE_APP}' is reserved for [[bundles]]"),
            });
        }
        for (i, a) in raw.apps.into_iter().enumerate() {
            let place = format!("apps[{i}] ({})", a.id);
            let mut problem = |field: &str, message: String| {
                problems.push(CatalogProblem {
                    place: if field.is_empty() {
                        place.clone()
                    } else {
                        format!("{place}.{field}")
                    },
                    message,
                })
            };
            if !valid_id(&a.id) {
                problem(
                    "id",
                    "use letters, digits, '-', '_' or '.' (at most 64)".into(),
                );
            }
            if !seen_apps.insert(a.id.to_ascii_lowercase()) {
                problem("id", format!("app '{}' is defined twice", a.id));
            }
            if let Some(known) = known_connectors {
                if !known.iter().any(|k| k == &a.connector) {
                    problem(
                        "connector",
                        format!(
                            "unknown connector '{}' (configured: {})",
                            a.connector,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            if a.owners.is_empty() {
                problem(
                    "owners",
                    "an app needs at least one owner to approve its requests".into(),
                );
            }
            for o in &a.owners {
                if !looks_like_email(o) {
                    problem("owners", format!("'{o}' is not an email address"));
                }
            }
            if a.entitlements.is_empty() {
                problem(
                    "entitlements",
                    "an app needs at least one entitlement".into(),
                );
            }
            let mut ents = Vec::new();
            let mut seen_ents = HashSet::new();
            for (j, e) in a.entitlements.into_iter().enumerate() {
                let eplace = format!("entitlements[{j}] ({})", e.id);
                if !valid_id(&e.id) {
                    problem(
                        &format!("{eplace}.id"),
                        "use letters, digits, '-', '_' or '.'".into(),
                    );
                }
                if !seen_ents.insert(e.id.to_ascii_lowercase()) {
                    problem(&eplace, format!("entitlement '{}' is defined twice", e.id));
                }
                let max = match e.max_duration.as_deref().map(AccessDuration::parse) {
                    None => None,
                    Some(Ok(d)) => Some(d),
                    Some(Err(err)) => {
                        problem(&format!("{eplace}.max_duration"), err.to_string());
                        None
                    }
                };
                let default = match e.default_duration.as_deref().map(AccessDuration::parse) {
                    None => None,
                    Some(Ok(d)) => Some(d),
                    Some(Err(err)) => {
                        problem(&format!("{eplace}.default_duration"), err.to_string());
                        None
                    }
                };
                if let (Some(d), Some(m)) = (default, max) {
                    if d > m {
                        problem(
                            &format!("{eplace}.default_duration"),
                            format!("{d} is longer than max_duration {m}"),
                        );
                    }
                }
                let break_glass = match e.break_glass.as_deref().map(AccessDuration::parse) {
                    None => None,
                    Some(Ok(d)) if d.minutes() <= 24 * 60 => Some(d),
                    Some(Ok(d)) => {
                        problem(
                            &format!("{eplace}.break_glass"),
                            format!("{d} is too long for emergency access: at most 1d"),
                        );
                        None
                    }
                    Some(Err(err)) => {
                        problem(&format!("{eplace}.break_glass"), err.to_string());
                        None
                    }
                };
                let (mut steps, step_problems) = parse_steps(&e.steps, &eplace);
                for (field, message) in step_problems {
                    problem(&field, message);
                }
                if steps.is_empty() {
                    steps.push(Step::owners());
                }
                let fallback = AccessDuration::from_minutes(8 * 60).expect("8h is valid");
                let default_duration = default.or(max.map(|m| m.min(fallback))).unwrap_or(fallback);
                ents.push(Entitlement {
                    name: e.name.unwrap_or_else(|| e.id.clone()),
                    target: e.target.unwrap_or_else(|| e.id.clone()),
                    risk: e.risk.unwrap_or(a.risk),
                    id: e.id,
                    kind: e.kind,
                    max_duration: max,
                    default_duration,
                    allow_permanent: e.allow_permanent,
                    allow_shorter_approval: e.allow_shorter_approval.unwrap_or(true),
                    steps,
                    conflicts: e.conflicts.iter().map(|c| c.to_ascii_lowercase()).collect(),
                    break_glass,
                    members: Vec::new(),
                });
            }
            apps.push(App {
                name: a.name.unwrap_or_else(|| a.id.clone()),
                id: a.id,
                connector: a.connector,
                owners: a
                    .owners
                    .into_iter()
                    .map(|o| o.to_ascii_lowercase())
                    .collect(),
                risk: a.risk,
                entitlements: ents,
                service_desk: a.service_desk,
            });
        }
        if !raw.bundles.is_empty() {
            if let Some(bundles) = parse_bundles(raw.bundles, &apps, &mut problems) {
                apps.push(bundles);
            }
        }
        if problems.is_empty() {
            Ok(Self { apps })
        } else {
            Err(CatalogError(problems))
        }
    }

    /// The app with this id (case-insensitive).
    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.id.eq_ignore_ascii_case(id))
    }

    /// The app and entitlement named by `app/entitlement`.
    pub fn resolve(&self, qualified: &str) -> Option<(&App, &Entitlement)> {
        find_in(&self.apps, qualified)
    }

    /// What a request for `ent` provisions: the bundle's members, or the entitlement itself.
    pub fn provisioned<'a>(
        &'a self,
        app: &'a App,
        ent: &'a Entitlement,
    ) -> Vec<(&'a App, &'a Entitlement)> {
        if ent.is_bundle() {
            ent.members.iter().filter_map(|m| self.resolve(m)).collect()
        } else {
            vec![(app, ent)]
        }
    }

    /// Up to three catalog names closest to a mistyped one, best first.
    pub fn closest<'a>(names: impl Iterator<Item = &'a str>, typed: &str) -> Vec<&'a str> {
        let typed = typed.to_ascii_lowercase();
        let mut scored: BTreeMap<(usize, &'a str), ()> = BTreeMap::new();
        for n in names {
            let d = edit_distance(&n.to_ascii_lowercase(), &typed);
            let contains = n.to_ascii_lowercase().contains(&typed) && !typed.is_empty();
            if d <= (typed.len() / 3).max(2) || contains {
                scored.insert((if contains { 0 } else { d }, n), ());
            }
        }
        scored.into_keys().take(3).map(|(_, n)| n).collect()
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[apps]]
id = "github"
connector = "scim"
owners = ["bob@example.com"]
risk = "high"
[[apps.entitlements]]
id = "platform-admins"
max_duration = "8h"
"#;

    #[test]
    fn a_good_catalog_parses() {
        let c = Catalog::parse(GOOD, Some(&["scim".to_string()])).unwrap();
        let e = c
            .app("GitHub")
            .unwrap()
            .entitlement("platform-admins")
            .unwrap();
        assert_eq!(e.target, "platform-admins");
        assert_eq!(e.risk, Risk::High);
        assert_eq!(e.default_duration.to_string(), "8h");
    }

    #[test]
    fn duration_choices_respect_the_maximum() {
        let c = Catalog::parse(GOOD, None).unwrap();
        let e = c
            .app("github")
            .unwrap()
            .entitlement("platform-admins")
            .unwrap();
        let shown: Vec<String> = e
            .duration_choices()
            .iter()
            .map(|d| d.unwrap().to_string())
            .collect();
        assert_eq!(shown, ["30m", "1h", "2h", "4h", "8h"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"
[[apps]]
id = "github"
connector = "nope"
owners = []
[[apps.entitlements]]
id = "admins"
max_duration = "forever"
"#;
        let err = Catalog::parse(text, Some(&["scim".to_string()])).unwrap_err();
        let places: Vec<_> = err.0.iter().map(|p| p.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "apps[0] (github).connector",
                "apps[0] (github).owners",
                "apps[0] (github).entitlements[0] (admins).max_duration"
            ]
        );
    }

    const TWO_APPS: &str = r#"
[[apps]]
id = "github"
connector = "scim"
owners = ["bob@example.com"]
[[apps.entitlements]]
id = "readers"
risk = "low"
max_duration = "2w"
[[apps.entitlements]]
id = "admins"
risk = "high"
max_duration = "8h"
conflicts = ["wiki/auditors"]
[[apps]]
id = "wiki"
connector = "scim"
owners = ["carol@example.com"]
[[apps.entitlements]]
id = "editors"
max_duration = "1w"
[[apps.entitlements]]
id = "auditors"
"#;

    #[test]
    fn bundles_become_the_bundle_app_with_members_durations_and_owner_steps() {
        let text = format!(
            "{TWO_APPS}\n[[bundles]]\nid = \"kit\"\nowners = [\"Dana@example.com\"]\nentitlements = [\"github/readers\", \"Wiki/editors\"]\n"
        );
        let c = Catalog::parse(&text, None).unwrap();
        let (app, kit) = c.resolve("bundle/kit").unwrap();
        assert_eq!(app.id, BUNDLE_APP);
        assert!(kit.is_bundle());
        assert_eq!(kit.members, ["github/readers", "wiki/editors"]);
        assert_eq!(
            kit.max_duration.unwrap().to_string(),
            "1w",
            "the members' shortest"
        );
        assert_eq!(kit.risk, Risk::Medium, "the members' highest");
        assert_eq!(kit.steps[0].approvers, ["dana@example.com"]);
        let provisioned: Vec<String> = c
            .provisioned(app, kit)
            .iter()
            .map(|(a, e)| format!("{}/{}", a.id, e.id))
            .collect();
        assert_eq!(provisioned, ["github/readers", "wiki/editors"]);
    }

    #[test]
    fn bad_bundles_are_refused_with_their_place() {
        let text = format!(
            "{TWO_APPS}\n[[bundles]]\nid = \"bad\"\nowners = [\"d@example.com\"]\nentitlements = [\"github/admins\", \"wiki/auditors\", \"github/nope\"]\nmax_duration = \"1d\"\n"
        );
        let err = Catalog::parse(&text, None).unwrap_err();
        let said: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            said,
            [
                "bundles[0] (bad).entitlements: 'github/nope' is not an app/entitlement of this catalog",
                "bundles[0] (bad).entitlements: github/admins conflicts with wiki/auditors: a bundle cannot hold both",
                "bundles[0] (bad).max_duration: 1d is longer than the 8h github/admins allows",
            ]
        );
        let reserved = format!(
            "{TWO_APPS}[[apps]]\nid = \"bundle\"\nconnector = \"scim\"\nowners = [\"b@example.com\"]\n[[apps.entitlements]]\nid = \"x\"\n[[bundles]]\nid = \"k\"\nowners = [\"d@example.com\"]\nentitlements = [\"github/readers\"]\n"
        );
        let err = Catalog::parse(&reserved, None).unwrap_err();
        assert!(
            err.to_string().contains("reserved for [[bundles]]"),
            "{err}"
        );
        let ownerless =
            format!("{TWO_APPS}\n[[bundles]]\nid = \"k\"\nentitlements = [\"github/readers\"]\n");
        let err = Catalog::parse(&ownerless, None).unwrap_err();
        assert!(err.to_string().contains("a bundle needs owners"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Catalog::parse("[[apps]]\nid = \n", None).unwrap_err();
        assert!(err.0[0].place.starts_with("line "), "{err}");
    }

    #[test]
    fn closest_names_for_typos() {
        let names = ["github", "gitlab", "okta", "google"];
        assert_eq!(
            Catalog::closest(names.iter().copied(), "githbu"),
            ["github"]
        );
        assert!(Catalog::closest(names.iter().copied(), "zzzzzz").is_empty());
    }
}
