//! What an approver's card shows, built from the store, the catalog and the directory.

use crate::chat::{ApprovalCard, CardStatus, PersonLabel, Verdict};
use crate::domain::AccessRequest;
use crate::store::approvals::ApprovalRecord;
use crate::store::StoreError;
use crate::App;

fn label(app: &App, platform: &str, email: &str, chat_id: Option<&str>) -> PersonLabel {
    let person = app.directory.by_email(email);
    PersonLabel {
        name: person
            .map(|p| p.display_name().to_string())
            .unwrap_or_else(|| email.to_string()),
        chat_id: chat_id.map(str::to_string).or_else(|| {
            person
                .and_then(|p| app.directory.chat_id(platform, p))
                .map(str::to_string)
        }),
    }
}

/// Facts that help an approver: has the subject held this before, how many in their team hold
/// it, how many other requests of theirs are open.
async fn context(app: &App, req: &AccessRequest) -> Result<Vec<String>, StoreError> {
    let mut facts = Vec::new();
    let before = app
        .store
        .grant_count_of(&req.subject_email, &req.app, &req.entitlement)
        .await?;
    facts.push(match before {
        0 => "never held this before".to_string(),
        1 => "held this once before".to_string(),
        n => format!("held this {n} times before"),
    });
    if let Some(dept) = app
        .directory
        .by_email(&req.subject_email)
        .and_then(|p| p.department.clone())
    {
        let team: Vec<String> = app
            .directory
            .department(&dept)
            .iter()
            .map(|p| p.email.clone())
            .collect();
        let holders = app.store.holders(&req.app, &req.entitlement).await?;
        let n = holders.iter().filter(|h| team.contains(h)).count();
        facts.push(format!("{n} of {} in {dept} hold it", team.len()));
    }
    let open = app.store.open_request_count_for(&req.subject_email).await?
        - i64::from(req.state.is_open());
    facts.push(match open {
        0 => "no other open requests".to_string(),
        n => format!("{n} other open request(s)"),
    });
    Ok(facts)
}

/// The card for `req`, pending or showing its decision; `approval` is the approver it is for
/// (it says when they stand in for someone).
pub async fn card_for(
    app: &App,
    req: &AccessRequest,
    approval: Option<&ApprovalRecord>,
) -> Result<ApprovalCard, StoreError> {
    let decisions = app.store.decisions(&req.id).await?;
    let policy_reasons: Vec<String> = decisions
        .iter()
        .filter(|d| d.kind == "policy")
        .flat_map(|d| serde_json::from_str::<Vec<String>>(&d.reasons).unwrap_or_default())
        .collect();
    let status = match decisions.iter().rev().find(|d| d.kind == "approver") {
        None if req.state == crate::domain::RequestState::Cancelled => CardStatus::Closed {
            why: "Cancelled by the requester".into(),
            at_ms: req.updated_at_ms,
        },
        None if req.state == crate::domain::RequestState::TimedOut => CardStatus::Closed {
            why: "Timed out with no decision".into(),
            at_ms: req.updated_at_ms,
        },
        None => match approval {
            // This approver's part is done (their step is complete, or they gave their
            // approval and others must still give theirs): no button stays live for them.
            Some(a) if a.state != "pending" => CardStatus::Closed {
                why: if a.state == "approved" {
                    format!(
                        "You approved step {}; it now waits for the other approvers",
                        a.step + 1
                    )
                } else {
                    format!("Step {} was approved by others; it moved on", a.step + 1)
                },
                at_ms: a.decided_at.unwrap_or(req.updated_at_ms),
            },
            _ => CardStatus::Pending,
        },
        Some(d) => {
            let chat_id = app
                .store
                .approvals(&req.id)
                .await?
                .into_iter()
                .find(|a| a.approver_email == d.actor)
                .and_then(|a| a.chat_user_id);
            CardStatus::Decided {
                verdict: if d.outcome == "approved" {
                    Verdict::Approved
                } else {
                    Verdict::Denied
                },
                by: label(app, &req.platform, &d.actor, chat_id.as_deref()),
                at_ms: d.at,
            }
        }
    };
    let catalog_app = app.catalog.app(&req.app);
    let ent = catalog_app.and_then(|a| a.entitlement(&req.entitlement));
    Ok(ApprovalCard {
        request_id: req.id.to_string(),
        requester: label(
            app,
            &req.platform,
            &req.requester_email,
            Some(&req.requester_chat_id),
        ),
        subject: if req.subject_email == req.requester_email {
            label(
                app,
                &req.platform,
                &req.subject_email,
                Some(&req.requester_chat_id),
            )
        } else {
            label(app, &req.platform, &req.subject_email, None)
        },
        app: catalog_app
            .map(|a| a.name.clone())
            .unwrap_or_else(|| req.app.clone()),
        entitlement: ent
            .map(|e| e.name.clone())
            .unwrap_or_else(|| req.entitlement.clone()),
        duration: req
            .duration
            .map(|d| d.to_string())
            .unwrap_or_else(|| "permanent".into()),
        reason: req.reason.clone(),
        // The requester's ticket, else the one grantry keeps in the app's service desk.
        ticket: match &req.ticket {
            Some(t) => Some(t.clone()),
            None => app
                .store
                .ticket(req.id.as_str())
                .await?
                .and_then(|t| t.url.or(t.ticket_key)),
        },
        risk: ent
            .map(|e| e.risk.to_string())
            .unwrap_or_else(|| "unknown".into()),
        policy_reasons,
        context: {
            let mut facts = context(app, req).await?;
            if let Some(e) = ent.filter(|e| e.is_bundle()) {
                facts.insert(
                    0,
                    format!(
                        "bundle: grants {} (one grant each, ending together)",
                        e.members.join(", ")
                    ),
                );
            }
            let steps = ent.map(|e| e.steps.clone()).unwrap_or_default();
            let k = approval.map(|a| a.step as usize).unwrap_or(0);
            if steps.len() > 1 || steps.first().is_some_and(|s| s.need > 1) {
                let need = steps.get(k).map(|s| s.need).unwrap_or(1);
                let done: Vec<String> = decisions
                    .iter()
                    .filter(|d| d.kind == "step")
                    .map(|d| label(app, &req.platform, &d.actor, None).name)
                    .collect();
                facts.insert(
                    0,
                    format!(
                        "step {} of {} (needs {need} approval{}){}",
                        k + 1,
                        steps.len(),
                        if need == 1 { "" } else { "s" },
                        if done.is_empty() {
                            String::new()
                        } else {
                            format!("; approved so far by {}", done.join(", "))
                        }
                    ),
                );
            }
            facts
        },
        shorter: match (ent, req.duration) {
            (Some(e), Some(asked)) if e.allow_shorter_approval => e
                .duration_choices()
                .into_iter()
                .flatten()
                .filter(|d| *d < asked)
                .map(|d| d.to_string())
                .collect(),
            _ => Vec::new(),
        },
        on_behalf_of: approval.and_then(|a| a.on_behalf_of.clone()),
        status,
    })
}
