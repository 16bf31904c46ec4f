//! The pages: the request ledger (`/admin`), grants, one request's history, charts, export.
//! Each handler passes the guard first, reads one page of rows, and renders HTML.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::auth::{viewer, Viewer};
use super::charts::{self, Kind, Point};
use super::html::{self, esc, input, pager, select, time, Nav};
use crate::audit::{self, ExportFormat};
use crate::domain::{RequestId, RequestState};
use crate::store::ledger::{GrantFilter, RequestFilter};
use crate::store::StoreError;
use crate::App;

const DAY_MS: i64 = 86_400_000;
/// The longest period the charts cover, in days.
const MAX_CHART_DAYS: i64 = 92;

fn internal(viewer: &Viewer, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin page failed");
    html::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        Some(viewer),
        "The page could not be read from the database. Try again; the log has the details.",
    )
}

/// `YYYY-MM-DD` (UTC midnight) in ms; `Err` names the field when the text is not a date.
fn date_ms(field: &str, v: Option<&str>) -> Result<Option<i64>, String> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Some(t.and_utc().timestamp_millis()))
            .ok_or_else(|| format!("{field}: {s:?} is not a date (YYYY-MM-DD); ignored")),
    }
}

fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A wait in words: `45m`, `2h 05m`, `1d 3h`.
fn wait(ms: i64) -> String {
    let m = ms.max(0) / 60_000;
    if m < 1 {
        "under 1m".into()
    } else if m < 60 {
        format!("{m}m")
    } else if m < 24 * 60 {
        format!("{}h {:02}m", m / 60, m % 60)
    } else {
        format!("{}d {}h", m / (24 * 60), (m % (24 * 60)) / 60)
    }
}

fn page_number(p: Option<&str>) -> i64 {
    p.and_then(|p| p.trim().parse::<i64>().ok())
        .filter(|p| (1..=100_000).contains(p))
        .unwrap_or(1)
}

/// The non-empty filters, URL-encoded (for paging links).
fn encode(pairs: &[(&str, &Option<String>)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|v| (*k, v))
        })
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

fn app_options(app: &App) -> Vec<(String, String)> {
    let mut v = vec![(String::new(), "Any app".to_string())];
    v.extend(
        app.catalog
            .apps
            .iter()
            .map(|a| (a.id.clone(), format!("{} ({})", a.name, a.id))),
    );
    v
}

fn notes(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("<p class=\"bad\" role=\"alert\">{}</p>", esc(p)))
        .collect()
}

fn ok(viewer: &Viewer, title: &str, nav: Nav, body: &str) -> Response {
    html::respond(
        StatusCode::OK,
        html::page(title, Some(nav), Some(viewer), body),
    )
}

/// `GET /admin` filters.
#[derive(Debug, Default, Deserialize)]
pub struct RequestsQuery {
    person: Option<String>,
    app: Option<String>,
    state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<String>,
}

/// The request ledger: filters, one page of requests, newest first.
pub async fn requests(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<RequestsQuery>,
) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let mut problems = Vec::new();
    let from = date_ms("From", q.from.as_deref()).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let to = date_ms("To", q.to.as_deref()).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let state = q.state.clone().filter(|s| RequestState::parse(s).is_some());
    let filter = RequestFilter {
        person: q.person.clone(),
        app: q.app.clone(),
        state: state.clone(),
        from_ms: from,
        // "To" includes that whole day.
        to_ms: to.map(|t| t + DAY_MS),
    };
    let size = app.config.admin.page_size;
    let page = page_number(q.page.as_deref());
    let found = match app
        .store
        .ledger_requests(&filter, size, (page - 1) * size)
        .await
    {
        Ok(f) => f,
        Err(e) => return internal(&viewer, e),
    };
    let mut states = vec![(String::new(), "Any state".to_string())];
    states.extend(
        RequestState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), s.describe().to_string())),
    );
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin\" aria-label=\"Filter requests\">{}{}{}{}{}\
         <div><button type=\"submit\">Filter</button></div><div><a href=\"/admin\">Clear filters</a></div></form>{}\
         <p><a href=\"/admin/export\">Export the audit trail</a></p>",
        input("person", "Person (requester or subject)", "search", q.person.as_deref().unwrap_or("")),
        select("app", "App", &app_options(&app), q.app.as_deref().unwrap_or("")),
        select("state", "State", &states, state.as_deref().unwrap_or("")),
        input("from", "Opened from", "date", q.from.as_deref().unwrap_or("")),
        input("to", "Opened to", "date", q.to.as_deref().unwrap_or("")),
        notes(&problems),
    );
    if found.rows.is_empty() {
        body.push_str("<p id=\"results\">No requests match these filters.</p>");
    } else {
        body.push_str(&format!(
            "<table id=\"results\"><caption>Requests, newest first (page {page}, {} shown)</caption><thead><tr>\
             <th scope=\"col\">Request</th><th scope=\"col\">Opened</th><th scope=\"col\">Requester</th>\
             <th scope=\"col\">For</th><th scope=\"col\">Access</th><th scope=\"col\">Duration</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Reason</th></tr></thead><tbody>",
            found.rows.len()
        ));
        for r in &found.rows {
            let reason: String = r.reason.chars().take(120).collect();
            body.push_str(&format!(
                "<tr><th scope=\"row\"><a href=\"/admin/requests/{id}\">{id}</a></th><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(Some(r.created_at_ms)),
                esc(&r.requester_email),
                esc(&r.subject_email),
                esc(&r.app),
                esc(&r.entitlement),
                r.duration.map_or("permanent".to_string(), |d| d.to_string()),
                esc(r.state.as_str()),
                esc(&reason),
                id = esc(r.id.as_str()),
            ));
        }
        body.push_str("</tbody></table>");
    }
    let query = encode(&[
        ("person", &q.person),
        ("app", &q.app),
        ("state", &state),
        ("from", &q.from),
        ("to", &q.to),
    ]);
    body.push_str(&pager("/admin", &query, page, found.more));
    ok(&viewer, "Requests", Nav::Requests, &body)
}

/// `GET /admin/grants` filters.
#[derive(Debug, Default, Deserialize)]
pub struct GrantsQuery {
    person: Option<String>,
    app: Option<String>,
    state: Option<String>,
    expiring: Option<String>,
    page: Option<String>,
}

const EXPIRING: [(&str, &str, i64); 4] = [
    ("1d", "Ending within a day", DAY_MS),
    ("3d", "Ending within 3 days", 3 * DAY_MS),
    ("7d", "Ending within a week", 7 * DAY_MS),
    ("30d", "Ending within 30 days", 30 * DAY_MS),
];

/// The grant ledger: who holds (or held) what, with filters.
pub async fn grants(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<GrantsQuery>,
) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let now = app.now_ms();
    let expiring = EXPIRING
        .iter()
        .find(|(k, _, _)| Some(*k) == q.expiring.as_deref())
        .map(|(_, _, ms)| (now, now + ms));
    let state = q
        .state
        .clone()
        .filter(|s| ["active", "revoking", "revoked"].contains(&s.as_str()));
    let filter = GrantFilter {
        person: q.person.clone(),
        app: q.app.clone(),
        state: state.clone(),
        expiring,
    };
    let size = app.config.admin.page_size;
    let page = page_number(q.page.as_deref());
    let found = match app
        .store
        .ledger_grants(&filter, size, (page - 1) * size)
        .await
    {
        Ok(f) => f,
        Err(e) => return internal(&viewer, e),
    };
    let states: Vec<(String, String)> = [
        ("", "Any state"),
        ("active", "active"),
        ("revoking", "revoking"),
        ("revoked", "revoked"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut ends = vec![(String::new(), "Any time".to_string())];
    ends.extend(
        EXPIRING
            .iter()
            .map(|(k, t, _)| (k.to_string(), t.to_string())),
    );
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/grants\" aria-label=\"Filter grants\">{}{}{}{}\
         <div><button type=\"submit\">Filter</button></div><div><a href=\"/admin/grants\">Clear filters</a></div></form>",
        input("person", "Holder", "search", q.person.as_deref().unwrap_or("")),
        select("app", "App", &app_options(&app), q.app.as_deref().unwrap_or("")),
        select("state", "State", &states, state.as_deref().unwrap_or("")),
        select("expiring", "Ends", &ends, q.expiring.as_deref().unwrap_or("")),
    );
    if found.rows.is_empty() {
        body.push_str("<p id=\"results\">No grants match these filters.</p>");
    } else {
        body.push_str(&format!(
            "<table id=\"results\"><caption>Grants, {} (page {page}, {} shown)</caption><thead><tr>\
             <th scope=\"col\">Grant</th><th scope=\"col\">Holder</th><th scope=\"col\">Access</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Granted</th><th scope=\"col\">Ends</th>\
             <th scope=\"col\">Approved by</th><th scope=\"col\">Request</th><th scope=\"col\">Revoked</th></tr></thead><tbody>",
            if expiring.is_some() { "soonest to end first" } else { "newest first" },
            found.rows.len()
        ));
        for g in &found.rows {
            let revoked = match g.revoked_at {
                Some(at) => format!(
                    "{} by {}: {}",
                    time(Some(at)),
                    esc(g.revoked_by.as_deref().unwrap_or("?")),
                    esc(g.revoke_reason.as_deref().unwrap_or(""))
                ),
                None => "—".into(),
            };
            body.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><a href=\"/admin/requests/{rid}\">{rid}</a></td><td>{revoked}</td></tr>",
                esc(&g.id),
                esc(&g.subject_email),
                esc(&g.app),
                esc(&g.entitlement),
                esc(&g.state),
                time(Some(g.granted_at)),
                g.expires_at.map_or("permanent".to_string(), |t| time(Some(t))),
                esc(g.approved_by.as_deref().unwrap_or("—")),
                rid = esc(&g.request_id),
            ));
        }
        body.push_str("</tbody></table>");
    }
    let query = encode(&[
        ("person", &q.person),
        ("app", &q.app),
        ("state", &state),
        ("expiring", &q.expiring),
    ]);
    body.push_str(&pager("/admin/grants", &query, page, found.more));
    ok(&viewer, "Grants", Nav::Grants, &body)
}

/// A JSON array of strings stored as text, as a list for people.
fn json_list(text: &str) -> String {
    let items: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    if items.is_empty() {
        "—".into()
    } else {
        format!(
            "<ul>{}</ul>",
            items
                .iter()
                .map(|i| format!("<li>{}</li>", esc(i)))
                .collect::<String>()
        )
    }
}

async fn request_body(app: &App, id: &RequestId) -> Result<Option<(String, String)>, StoreError> {
    let store = &app.store;
    let Some(r) = store.request(id).await? else {
        return Ok(None);
    };
    let decisions = store.decisions(id).await?;
    let approvals = store.approvals(id).await?;
    let grants = store.grants_for_request(id.as_str()).await?;
    let events = store.audit_for_request(id.as_str()).await?;
    let checks = audit::check_events(store, &events).await?;
    let state = if r.state.describe() == r.state.as_str() {
        esc(r.state.as_str())
    } else {
        format!("{} ({})", esc(r.state.as_str()), esc(r.state.describe()))
    };
    let mut b = format!(
        "<h2>Request</h2><dl><dt>State</dt><dd>{state}</dd><dt>Requester</dt><dd>{}</dd><dt>For</dt><dd>{}</dd>\
         <dt>Access</dt><dd>{}/{}</dd><dt>Duration</dt><dd>{}</dd><dt>Reason</dt><dd>{}</dd><dt>Ticket</dt><dd>{}</dd>\
         <dt>Opened</dt><dd>{}</dd><dt>Last change</dt><dd>{}</dd><dt>Asked on</dt><dd>{}</dd>{}</dl>",
        esc(&r.requester_email),
        esc(&r.subject_email),
        esc(&r.app),
        esc(&r.entitlement),
        r.duration.map_or("permanent".to_string(), |d| d.to_string()),
        esc(&r.reason),
        esc(r.ticket.as_deref().unwrap_or("—")),
        time(Some(r.created_at_ms)),
        time(Some(r.updated_at_ms)),
        esc(&r.platform),
        r.extends_grant
            .as_deref()
            .map(|g| format!("<dt>Extends grant</dt><dd>{}</dd>", esc(g)))
            .unwrap_or_default(),
    );
    b.push_str("<h2>Decisions</h2>");
    if decisions.is_empty() {
        b.push_str("<p>No decision yet.</p>");
    } else {
        b.push_str(
            "<table><caption>Decisions, oldest first</caption><thead><tr><th scope=\"col\">When</th>\
             <th scope=\"col\">By</th><th scope=\"col\">Kind</th><th scope=\"col\">Outcome</th>\
             <th scope=\"col\">Policies</th><th scope=\"col\">Reasons</th><th scope=\"col\">Waited</th></tr></thead><tbody>",
        );
        for d in &decisions {
            b.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(Some(d.at)),
                esc(&d.actor),
                esc(&d.kind),
                esc(&d.outcome),
                json_list(&d.policy_ids),
                json_list(&d.reasons),
                wait(d.at - r.created_at_ms),
            ));
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Approvers</h2>");
    if approvals.is_empty() {
        b.push_str("<p>No approvers were asked.</p>");
    } else {
        b.push_str(
            "<table><caption>Approvers by step</caption><thead><tr><th scope=\"col\">Step</th>\
             <th scope=\"col\">Approver</th><th scope=\"col\">State</th><th scope=\"col\">Decided</th>\
             <th scope=\"col\">On behalf of</th></tr></thead><tbody>",
        );
        for a in &approvals {
            b.push_str(&format!(
                "<tr><td class=\"num\">{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.step + 1,
                esc(&a.approver_name),
                esc(&a.approver_email),
                esc(&a.state),
                time(a.decided_at),
                esc(a.on_behalf_of.as_deref().unwrap_or("—")),
            ));
        }
        b.push_str("</tbody></table>");
    }
    // One grant, or one per entitlement of a bundle.
    b.push_str(if grants.len() > 1 {
        "<h2>Grants</h2>"
    } else {
        "<h2>Grant</h2>"
    });
    if grants.is_empty() {
        b.push_str("<p>No grant was made.</p>");
    }
    for g in &grants {
        b.push_str(&format!(
            "<dl><dt>Grant</dt><dd>{} ({}/{})</dd><dt>State</dt><dd>{}</dd><dt>In the app</dt><dd>{} via {} (account {})</dd>\
             <dt>Granted</dt><dd>{}</dd><dt>Ends</dt><dd>{}</dd><dt>Approved by</dt><dd>{}</dd><dt>Revoked</dt><dd>{}</dd></dl>",
            esc(&g.id),
            esc(&g.app),
            esc(&g.entitlement),
            esc(&g.state),
            esc(&g.target),
            esc(&g.connector),
            esc(&g.account_id),
            time(Some(g.granted_at)),
            g.expires_at.map_or("permanent".to_string(), |t| time(Some(t))),
            esc(g.approved_by.as_deref().unwrap_or("—")),
            match g.revoked_at {
                Some(at) => format!(
                    "{} by {}: {}",
                    time(Some(at)),
                    esc(g.revoked_by.as_deref().unwrap_or("?")),
                    esc(g.revoke_reason.as_deref().unwrap_or(""))
                ),
                None => "—".into(),
            }
        ));
    }
    let broken = checks.iter().filter(|c| c.is_some()).count();
    b.push_str("<h2 id=\"audit\">Audit events</h2>");
    if broken == 0 {
        b.push_str(&format!(
            "<p class=\"ok\" id=\"chain\">The {} audit events of this request are intact and linked to the events before them in the chain.</p>",
            events.len()
        ));
    } else {
        b.push_str(&format!(
            "<p class=\"bad\" id=\"chain\" role=\"alert\">{broken} of the {} audit events of this request do not verify: the audit trail was changed. Run <code>grantry audit verify</code>.</p>",
            events.len()
        ));
    }
    b.push_str(
        "<table id=\"events\"><caption>Audit events of this request, in order</caption><thead><tr>\
         <th scope=\"col\">Seq</th><th scope=\"col\">When</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">Grant</th><th scope=\"col\">Detail</th><th scope=\"col\">Chain</th></tr></thead><tbody>",
    );
    for (e, check) in events.iter().zip(&checks) {
        let detail = serde_json::from_str::<serde_json::Value>(&e.detail)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| e.detail.clone());
        b.push_str(&format!(
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td><td>{}</td></tr>",
            e.seq,
            time(Some(e.at)),
            esc(&e.actor),
            esc(&e.action),
            esc(e.grant_id.as_deref().unwrap_or("—")),
            esc(&detail),
            match check {
                None => "<span class=\"ok\">intact</span>".to_string(),
                Some(p) => format!("<span class=\"bad\">{}</span>", esc(p)),
            }
        ));
    }
    b.push_str("</tbody></table>");
    Ok(Some((format!("Request {}", r.id.as_str()), b)))
}

/// One request's whole history.
pub async fn request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let not_found = || {
        html::message(
            StatusCode::NOT_FOUND,
            "No such request",
            Some(&viewer),
            &format!("There is no request {id}."),
        )
    };
    let Some(rid) = RequestId::parse(&id) else {
        return not_found();
    };
    match request_body(&app, &rid).await {
        Ok(Some((title, body))) => ok(&viewer, &title, Nav::Requests, &body),
        Ok(None) => not_found(),
        Err(e) => internal(&viewer, e),
    }
}

/// `GET /admin/charts` period.
#[derive(Debug, Default, Deserialize)]
pub struct ChartsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Requests per day and the median time to a person's decision per day, over a period.
pub async fn charts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ChartsQuery>,
) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let mut problems = Vec::new();
    let today = app.now_ms().div_euclid(DAY_MS) * DAY_MS;
    let to_day = date_ms("To", q.to.as_deref())
        .unwrap_or_else(|e| {
            problems.push(e);
            None
        })
        .unwrap_or(today);
    let to = to_day + DAY_MS;
    let mut from = date_ms("From", q.from.as_deref())
        .unwrap_or_else(|e| {
            problems.push(e);
            None
        })
        .unwrap_or(to - 30 * DAY_MS);
    if from >= to {
        problems.push("From is after To; showing the 30 days up to To".into());
        from = to - 30 * DAY_MS;
    }
    if to - from > MAX_CHART_DAYS * DAY_MS {
        problems.push(format!(
            "Charts cover at most {MAX_CHART_DAYS} days; showing the last {MAX_CHART_DAYS} up to To"
        ));
        from = to - MAX_CHART_DAYS * DAY_MS;
    }
    let read = async {
        let requests = app.store.digest_requests(from, to).await?;
        let decisions = app.store.digest_decisions(from, to).await?;
        Ok::<_, StoreError>(crate::flow::digest::days(from, to, &requests, &decisions))
    };
    let days = match read.await {
        Ok(d) => d,
        Err(e) => return internal(&viewer, e),
    };
    let (from_s, to_s) = (date_of(from), date_of(to - DAY_MS));
    let volume: Vec<Point> = days
        .iter()
        .map(|d| Point {
            label: date_of(d.start_ms),
            value: Some(d.requests as f64),
            text: format!("{} requests", d.requests),
        })
        .collect();
    // Minutes while every median is under two hours, else hours.
    let longest = days
        .iter()
        .filter_map(|d| d.median_decision_ms)
        .max()
        .unwrap_or(0);
    let (unit, unit_ms) = if longest < 2 * 3_600_000 {
        ("minutes", 60_000.0)
    } else {
        ("hours", 3_600_000.0)
    };
    let medians: Vec<Point> = days
        .iter()
        .map(|d| Point {
            label: date_of(d.start_ms),
            value: d.median_decision_ms.map(|m| m as f64 / unit_ms),
            text: d
                .median_decision_ms
                .map_or("no decisions by people".into(), wait),
        })
        .collect();
    let total: u64 = days.iter().map(|d| d.requests).sum();
    let busiest = days.iter().max_by_key(|d| d.requests);
    let decided = days
        .iter()
        .filter(|d| d.median_decision_ms.is_some())
        .count();
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/charts\" aria-label=\"Choose the period\">{}{}\
         <div><button type=\"submit\">Show</button></div></form>{}",
        input("from", "From", "date", &from_s),
        input("to", "To", "date", &to_s),
        notes(&problems)
    );
    body.push_str("<h2>Requests per day</h2>");
    body.push_str(&charts::chart(
        "volume",
        &format!("Requests per day, {from_s} to {to_s}"),
        &format!(
            "{total} requests in {} days{}.",
            days.len(),
            busiest
                .filter(|b| b.requests > 0)
                .map(|b| format!(
                    "; the busiest day was {} with {}",
                    date_of(b.start_ms),
                    b.requests
                ))
                .unwrap_or_default()
        ),
        "requests",
        Kind::Bars,
        &volume,
    ));
    body.push_str("<h2>Median time to decision per day</h2>");
    body.push_str(&charts::chart(
        "decision",
        &format!("Median time from request to a person's decision, per day, {from_s} to {to_s}"),
        &format!(
            "{decided} of {} days had decisions by people; the vertical axis is in {unit}.",
            days.len()
        ),
        unit,
        Kind::Line,
        &medians,
    ));
    body.push_str(
        "<table id=\"series\"><caption>The charts' numbers, per day (UTC)</caption><thead><tr><th scope=\"col\">Day</th>\
         <th scope=\"col\">Requests</th><th scope=\"col\">Median time to decision</th></tr></thead><tbody>",
    );
    for (v, m) in volume.iter().zip(&medians) {
        body.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&v.label),
            v.value.unwrap_or(0.0) as u64,
            esc(&m.text)
        ));
    }
    body.push_str("</tbody></table>");
    ok(&viewer, "Charts", Nav::Charts, &body)
}

/// The export form.
pub async fn export_form(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let body = "<p>The audit trail as a file: every event since the date (all of them when it is empty), \
        led by whether the whole chain verifies, as <code>grantry audit export</code> writes it.</p>\
        <form method=\"get\" action=\"/admin/export/download\" aria-label=\"Export the audit trail\">\
        <p><label for=\"since\">Events since (UTC)</label><br><input id=\"since\" name=\"since\" type=\"date\"></p>\
        <fieldset><legend>Format</legend>\
        <input type=\"radio\" id=\"format-jsonl\" name=\"format\" value=\"jsonl\" checked> <label for=\"format-jsonl\">JSON lines</label> \
        <input type=\"radio\" id=\"format-csv\" name=\"format\" value=\"csv\"> <label for=\"format-csv\">CSV</label></fieldset>\
        <p><button type=\"submit\" id=\"download\">Download the export</button></p></form>";
    ok(&viewer, "Export the audit trail", Nav::Export, body)
}

/// `GET /admin/export/download` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    since: Option<String>,
    format: Option<String>,
}

/// The export as a download.
pub async fn export_download(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ExportQuery>,
) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let since = match date_ms("Since", q.since.as_deref()) {
        Ok(s) => s,
        Err(e) => return html::message(StatusCode::BAD_REQUEST, "Not a date", Some(&viewer), &e),
    };
    let (format, ext, mime) = match q.format.as_deref().unwrap_or("jsonl") {
        "csv" => (ExportFormat::Csv, "csv", "text/csv; charset=utf-8"),
        _ => (ExportFormat::Jsonl, "jsonl", "application/x-ndjson"),
    };
    let mut out = Vec::new();
    let written = match audit::export(&app.store, since.unwrap_or(0), format, &mut out).await {
        Ok(n) => n,
        Err(e) => return internal(&viewer, e),
    };
    tracing::info!(
        events = written,
        format = ext,
        "audit exported from the admin pages"
    );
    let name = format!(
        "grantry-audit-{}.{ext}",
        since.map_or("all".to_string(), |s| format!("since-{}", date_of(s)))
    );
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_like_people_write_them() {
        assert_eq!(wait(30_000), "under 1m");
        assert_eq!(wait(45 * 60_000), "45m");
        assert_eq!(wait(125 * 60_000), "2h 05m");
        assert_eq!(wait(27 * 3_600_000), "1d 3h");
    }

    #[test]
    fn dates_parse_or_say_which_field_is_wrong() {
        assert_eq!(
            date_ms("From", Some("2026-12-01")).unwrap(),
            Some(1_796_083_200_000)
        );
        assert_eq!(date_ms("From", Some(" ")).unwrap(), None);
        assert!(date_ms("From", Some("12/01/2026"))
            .unwrap_err()
            .starts_with("From:"));
    }
}
