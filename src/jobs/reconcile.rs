//! Reconciliation: does the ledger match what the apps really grant? For every catalogued
//! entitlement, the connector lists who holds it; members without a grant are drift (access given
//! outside grantry), grants whose access is gone are missing. With `fix`, drift is removed and
//! missing access restored, each as an audited action.

use serde_json::json;

use crate::connectors::Account;
use crate::store::audit::NewAuditEvent;
use crate::store::StoreError;
use crate::App;

/// What reconciliation found for one entitlement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntitlementDrift {
    pub app: String,
    pub entitlement: String,
    /// Accounts holding it with no grant in the ledger.
    pub unexplained: Vec<String>,
    /// Grants (ids) whose account does not hold it.
    pub missing: Vec<String>,
    /// What `fix` did, in words.
    pub fixed: Vec<String>,
    /// The connector's error, when it could not be listed.
    pub error: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: usize,
    pub drift: Vec<EntitlementDrift>,
}

impl ReconcileReport {
    /// Whether the ledger and the apps agree everywhere that could be checked.
    pub fn clean(&self) -> bool {
        self.drift
            .iter()
            .all(|d| d.unexplained.is_empty() && d.missing.is_empty() && d.error.is_none())
    }

    /// The report in words.
    pub fn text(&self) -> String {
        if self.clean() {
            return format!(":white_check_mark: Reconciliation: {} entitlement(s) checked; the ledger matches the apps.", self.checked);
        }
        let mut lines = vec![format!(
            ":mag: Reconciliation: {} entitlement(s) checked; differences:",
            self.checked
        )];
        for d in &self.drift {
            let mut parts = Vec::new();
            if let Some(e) = &d.error {
                parts.push(format!("could not list: {}", crate::chat::escape(e)));
            }
            if !d.unexplained.is_empty() {
                parts.push(format!(
                    "held without a grant: {}",
                    d.unexplained.join(", ")
                ));
            }
            if !d.missing.is_empty() {
                parts.push(format!(
                    "granted but missing in the app: {}",
                    d.missing.join(", ")
                ));
            }
            if !d.fixed.is_empty() {
                parts.push(format!("fixed: {}", d.fixed.join("; ")));
            }
            lines.push(format!(
                "• {}/{}: {}",
                d.app,
                d.entitlement,
                parts.join(" · ")
            ));
        }
        lines.join("\n")
    }
}

/// Compares every catalogued entitlement with its app; with `fix`, makes the app match the ledger.
pub async fn reconcile(app: &App, fix: bool, actor: &str) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    for a in &app.catalog.apps {
        let Some(connector) = app.connectors.get(&a.connector) else {
            continue;
        };
        // An app whose changes are made by hand cannot be listed: access reviews cover it.
        if connector.manual_task().is_some() {
            continue;
        }
        for e in &a.entitlements {
            report.checked += 1;
            let mut d = EntitlementDrift {
                app: a.id.clone(),
                entitlement: e.id.clone(),
                ..Default::default()
            };
            let members = match connector.list_members(&e.target).await {
                Ok(m) => m,
                Err(err) => {
                    d.error = Some(err.to_string());
                    report.drift.push(d);
                    continue;
                }
            };
            let member_ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
            let grants = app.store.active_grants_for(&a.id, &e.id).await?;
            let granted: Vec<&str> = grants.iter().map(|g| g.account_id.as_str()).collect();
            d.unexplained = member_ids
                .iter()
                .filter(|m| !granted.contains(m))
                .map(|m| m.to_string())
                .collect();
            d.missing = grants
                .iter()
                .filter(|g| g.state == "active" && !member_ids.contains(&g.account_id.as_str()))
                .map(|g| g.id.clone())
                .collect();
            if fix {
                for account in d.unexplained.clone() {
                    let acc = Account {
                        id: account.clone(),
                        login: None,
                    };
                    match connector.revoke(&acc, &e.target).await {
                        Ok(_) => {
                            audit(
                                app,
                                actor,
                                "reconcile.removed",
                                None,
                                json!({"app": a.id, "entitlement": e.id, "account": account}),
                            )
                            .await?;
                            d.fixed.push(format!("removed {account}"));
                        }
                        Err(err) => d.fixed.push(format!("could not remove {account}: {err}")),
                    }
                }
                for g in grants.iter().filter(|g| d.missing.contains(&g.id)) {
                    let acc = Account {
                        id: g.account_id.clone(),
                        login: None,
                    };
                    match connector.grant(&acc, &e.target).await {
                        Ok(_) => {
                            audit(
                                app,
                                actor,
                                "reconcile.restored",
                                Some(&g.id),
                                json!({"app": a.id, "entitlement": e.id, "account": g.account_id}),
                            )
                            .await?;
                            d.fixed.push(format!("restored {}", g.id));
                        }
                        Err(err) => d.fixed.push(format!("could not restore {}: {err}", g.id)),
                    }
                }
            }
            if !d.unexplained.is_empty() || !d.missing.is_empty() {
                report.drift.push(d);
            }
        }
    }
    let mut tx = app.store.begin().await?;
    tx.audit(app.now_ms(), NewAuditEvent {
        actor,
        action: "reconcile.run",
        request_id: None,
        grant_id: None,
        detail: json!({"checked": report.checked, "differences": report.drift.len(), "fix": fix}),
    })
    .await?;
    tx.commit().await?;
    Ok(report)
}

async fn audit(
    app: &App,
    actor: &str,
    action: &str,
    grant_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    tx.audit(
        app.now_ms(),
        NewAuditEvent {
            actor,
            action,
            request_id: None,
            grant_id,
            detail,
        },
    )
    .await?;
    tx.commit().await
}

/// The scheduled run (`lifecycle.reconcile_every_minutes`): once per slot across replicas; the
/// report goes to IT's status channel when something differs.
pub async fn scheduled(app: &App) -> Result<(), StoreError> {
    let every = app.config.lifecycle.reconcile_every_minutes;
    if every == 0 {
        return Ok(());
    }
    let now = app.now_ms();
    let slot = now / (every as i64 * 60_000);
    let mut tx = app.store.begin().await?;
    if !tx.claim_slot("reconcile", slot, now).await? {
        return Ok(());
    }
    tx.commit().await?;
    let report = reconcile(app, false, "system:reconcile").await?;
    if let Some(job) = (!report.clean())
        .then(|| app.status_notice(report.text()))
        .flatten()
    {
        app.store
            .enqueue_now(&job, now, app.config.jobs.max_attempts)
            .await?;
    }
    Ok(())
}
