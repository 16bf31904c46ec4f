//! Access reviews: `grantry review start <app>` asks the app's owners, grant by grant, to keep
//! or revoke; the first owner's answer decides the item (a revoke goes through the normal
//! revoke path); campaigns past due are escalated to IT; the result is exportable.

use serde_json::json;

use super::FlowError;
use crate::chat::{escape, ActionMessage, Button};
use crate::domain::ids::random_id;
use crate::store::audit::NewAuditEvent;
use crate::store::reviews::{Review, ReviewItem};
use crate::store::Job;
use crate::App;

/// `action_id`s of the review card's buttons; the value is the item id.
pub const KEEP: &str = "grantry.review_keep";
pub const REVOKE: &str = "grantry.review_revoke";

/// Starts a campaign for every active grant of `app_id`. Returns (review id, items).
pub async fn start(
    app: &App,
    app_id: &str,
    by: &str,
    days: i64,
) -> Result<Result<(String, usize), String>, FlowError> {
    start_for(app, app_id, by, days, None).await
}

/// Starts a campaign for the active grants of `app_id`, only `subject`'s when given.
pub async fn start_for(
    app: &App,
    app_id: &str,
    by: &str,
    days: i64,
    subject: Option<&str>,
) -> Result<Result<(String, usize), String>, FlowError> {
    let Some(catalog_app) = app.catalog.app(app_id) else {
        return Ok(Err(format!("there is no app {app_id} in the catalog")));
    };
    let grants: Vec<_> = app
        .store
        .active_grants_of_app(&catalog_app.id)
        .await?
        .into_iter()
        .filter(|g| subject.is_none_or(|s| g.subject_email.eq_ignore_ascii_case(s)))
        .collect();
    let now = app.now_ms();
    let review = Review {
        id: random_id("V"),
        app: catalog_app.id.clone(),
        started_by: by.to_string(),
        started_at: now,
        due_at: now + days.max(1) * 86_400_000,
        escalated_at: None,
    };
    let max = app.config.jobs.max_attempts;
    let mut tx = app.store.begin().await?;
    tx.insert_review(&review).await?;
    for g in &grants {
        let item = ReviewItem {
            id: random_id("I"),
            review_id: review.id.clone(),
            grant_id: g.id.clone(),
            subject_email: g.subject_email.clone(),
            entitlement: g.entitlement.clone(),
            decision: None,
            decided_by: None,
            decided_at: None,
        };
        tx.insert_review_item(&item).await?;
        for owner in catalog_app
            .owners
            .iter()
            .filter(|o| !o.eq_ignore_ascii_case(&g.subject_email))
        {
            let person = app.directory.by_email(owner);
            if person.is_some_and(|p| !p.is_active()) {
                continue;
            }
            let platform = app.default_platform();
            let chat_id = person.and_then(|p| app.directory.chat_id(platform, p));
            tx.insert_review_card(&item.id, owner, platform, chat_id)
                .await?;
            let job = Job::PostReviewCard {
                item_id: item.id.clone(),
                owner_email: owner.clone(),
            };
            tx.enqueue(&job, now, max).await?;
        }
    }
    tx.audit(now, NewAuditEvent {
        actor: by,
        action: "review.started",
        request_id: None,
        grant_id: None,
        detail: json!({"review": review.id, "app": review.app, "items": grants.len(), "due_at": review.due_at}),
    })
    .await?;
    tx.commit().await?;
    Ok(Ok((review.id, grants.len())))
}

/// The card an owner sees for an item.
pub async fn card(app: &App, item: &ReviewItem) -> Result<ActionMessage, FlowError> {
    let grant = app
        .store
        .grant(&crate::domain::GrantId::from_stored(item.grant_id.clone()))
        .await?;
    let (app_id, since, until) = grant
        .map(|g| {
            (
                g.app,
                crate::clock::format_utc(g.granted_at),
                g.expires_at.map(crate::clock::format_utc),
            )
        })
        .unwrap_or_default();
    let head = format!(
        ":clipboard: *Access review {}*: {} holds *{}/{}* since {}{}.",
        item.review_id,
        escape(&item.subject_email),
        app_id,
        item.entitlement,
        since,
        until
            .map(|u| format!(", until {u}"))
            .unwrap_or_else(|| ", with no end date".into())
    );
    Ok(match (&item.decision, &item.decided_by) {
        (Some(d), Some(by)) => ActionMessage {
            text: format!(
                "{head}\n{} by {} at {}.",
                if d == "keep" {
                    ":white_check_mark: Kept"
                } else {
                    ":lock: Revoked"
                },
                escape(by),
                item.decided_at
                    .map(crate::clock::format_utc)
                    .unwrap_or_default()
            ),
            buttons: Vec::new(),
        },
        _ => ActionMessage {
            text: format!("{head}\nShould they keep it?"),
            buttons: vec![
                Button {
                    label: "Keep".into(),
                    action_id: KEEP.into(),
                    value: item.id.clone(),
                },
                Button {
                    label: "Revoke".into(),
                    action_id: REVOKE.into(),
                    value: item.id.clone(),
                },
            ],
        },
    })
}

/// An owner's answer. Returns what to tell them.
pub async fn decide(
    app: &App,
    platform: &str,
    chat_id: &str,
    item_id: &str,
    keep: bool,
) -> Result<String, FlowError> {
    let Some(me) = app.directory.by_chat_id(platform, chat_id) else {
        return Ok("I don't know who you are yet: ask IT to add you to the people file.".into());
    };
    let Some(item) = app.store.review_item(item_id).await? else {
        return Ok("That review item does not exist.".into());
    };
    let asked = app
        .store
        .review_cards(item_id)
        .await?
        .iter()
        .any(|c| c.owner_email.eq_ignore_ascii_case(&me.email));
    let now = app.now_ms();
    let mut tx = app.store.begin().await?;
    if !asked {
        tx.audit(
            now,
            NewAuditEvent {
                actor: &me.email,
                action: "review.refused",
                request_id: None,
                grant_id: Some(&item.grant_id),
                detail: json!({"item": item.id, "why": "not_a_reviewer"}),
            },
        )
        .await?;
        tx.commit().await?;
        return Ok(format!(
            "You are not a reviewer of this grant ({}), so nothing changed.",
            item.grant_id
        ));
    }
    let decision = if keep { "keep" } else { "revoke" };
    if !tx
        .decide_review_item(item_id, decision, &me.email, now)
        .await?
    {
        return Ok(format!(
            "This grant was already reviewed ({} by {}).",
            item.decision.unwrap_or_default(),
            item.decided_by.unwrap_or_default()
        ));
    }
    tx.audit(now, NewAuditEvent {
        actor: &me.email,
        action: if keep { "review.kept" } else { "review.revoked" },
        request_id: None,
        grant_id: Some(&item.grant_id),
        detail: json!({"review": item.review_id, "item": item.id, "subject": item.subject_email}),
    })
    .await?;
    tx.enqueue(
        &Job::UpdateReviewCards {
            item_id: item.id.clone(),
        },
        now,
        app.config.jobs.max_attempts,
    )
    .await?;
    tx.commit().await?;
    if keep {
        return Ok(format!(
            "Kept: {} keeps {}.",
            escape(&item.subject_email),
            item.entitlement
        ));
    }
    let reason = format!("access review {}", item.review_id);
    super::lifecycle::revoke(app, &me.email, &item.grant_id, &reason).await
}

/// The campaign as rows for an auditor: JSON lines or CSV.
pub async fn export(app: &App, review_id: &str, csv: bool) -> Result<Option<String>, FlowError> {
    let Some(review) = app.store.review(review_id).await? else {
        return Ok(None);
    };
    let items = app.store.review_items(review_id).await?;
    let mut out = String::new();
    if csv {
        out.push_str("review,app,grant,subject,entitlement,decision,decided_by,decided_at\n");
        for i in &items {
            let field = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                field(&review.id),
                field(&review.app),
                field(&i.grant_id),
                field(&i.subject_email),
                field(&i.entitlement),
                field(i.decision.as_deref().unwrap_or("unanswered")),
                field(i.decided_by.as_deref().unwrap_or("")),
                i.decided_at
                    .map(crate::clock::format_utc)
                    .unwrap_or_default()
            ));
        }
    } else {
        for i in &items {
            out.push_str(&json!({"review": review.id, "app": review.app, "started_by": review.started_by,
                "grant": i.grant_id, "subject": i.subject_email, "entitlement": i.entitlement,
                "decision": i.decision.as_deref().unwrap_or("unanswered"), "decided_by": i.decided_by,
                "decided_at": i.decided_at}).to_string());
            out.push('\n');
        }
    }
    Ok(Some(out))
}

/// Campaigns past due with unanswered items: IT is told (once per campaign).
pub async fn escalate_overdue(app: &App) -> Result<(), FlowError> {
    let now = app.now_ms();
    for r in app.store.overdue_reviews(now).await? {
        let open: Vec<ReviewItem> = app
            .store
            .review_items(&r.id)
            .await?
            .into_iter()
            .filter(|i| i.decision.is_none())
            .collect();
        let mut tx = app.store.begin().await?;
        if !tx.mark_review_escalated(&r.id, now).await? || open.is_empty() {
            tx.commit().await?;
            continue;
        }
        tx.audit(
            now,
            NewAuditEvent {
                actor: "system:reviews",
                action: "review.escalated",
                request_id: None,
                grant_id: None,
                detail: json!({"review": r.id, "unanswered": open.len()}),
            },
        )
        .await?;
        if app.status_channel().is_some() {
            let text = format!(
                ":alarm_clock: Access review {} of {} is past due with {} unanswered grant(s): {}. Export it with `grantry review export {}`.",
                r.id,
                r.app,
                open.len(),
                open.iter().map(|i| format!("{} ({})", i.grant_id, escape(&i.subject_email))).collect::<Vec<_>>().join(", "),
                r.id
            );
            if let Some(job) = app.status_notice(text) {
                tx.enqueue(&job, now, app.config.jobs.max_attempts).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Compares the directory with what grantry saw last time: for each person whose department or
/// manager changed, their grants go to each app's owners as a review (Keep = re-approve, Revoke).
/// Then the snapshot is brought up to date. Runs at start (a new people file means a restart).
/// Returns the people whose role changed.
pub async fn detect_role_changes(
    app: &App,
    directory: &crate::directory::Directory,
) -> Result<Vec<String>, FlowError> {
    let before = app.store.snapshot().await?;
    let now = app.now_ms();
    let mut changed = Vec::new();
    for p in directory.people() {
        let Some((dept, manager)) = before.get(&p.email) else {
            continue;
        };
        if dept != &p.department || manager != &p.manager {
            changed.push(p.email.clone());
        }
    }
    for email in &changed {
        let grants = app.store.active_grants_of(email).await?;
        let mut apps: Vec<String> = grants.into_iter().map(|g| g.app).collect();
        apps.sort();
        apps.dedup();
        for a in apps {
            start_for(app, &a, "system:role-change", 7, Some(email))
                .await?
                .ok();
        }
    }
    let mut tx = app.store.begin().await?;
    for p in directory.people() {
        tx.upsert_snapshot(&p.email, p.department.as_deref(), p.manager.as_deref(), now)
            .await?;
    }
    for email in &changed {
        tx.audit(now, NewAuditEvent {
            actor: "system:directory",
            action: "person.role_changed",
            request_id: None,
            grant_id: None,
            detail: json!({"email": email, "before": before.get(email).map(|(d, m)| json!({"department": d, "manager": m}))}),
        })
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}
