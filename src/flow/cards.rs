//! What an approver's card shows, built from the store, the catalog and the directory.

use crate::chat::{ApprovalCard, CardStatus, PersonLabel, Verdict};
use crate::domain::AccessRequest;
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

/// The card for `req`, pending or showing its decision.
pub async fn card_for(app: &App, req: &AccessRequest) -> Result<ApprovalCard, StoreError> {
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
        None => CardStatus::Pending,
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
        ticket: req.ticket.clone(),
        risk: ent
            .map(|e| e.risk.to_string())
            .unwrap_or_else(|| "unknown".into()),
        policy_reasons,
        status,
    })
}
