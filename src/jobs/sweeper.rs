//! The expiry sweeper: every interval, claims the grants whose time is up and enqueues their
//! revocation in the same transaction. Driven by the stored `expires_at`, so a grant that expired
//! while the process was down is revoked at the first sweep after start.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::store::audit::NewAuditEvent;
use crate::store::{Job, StoreError};
use crate::App;

/// Grants claimed per transaction.
const BATCH: i64 = 500;

/// Sweeps until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(app.config.jobs.sweep_interval_ms.max(10));
    while !*stop.borrow() {
        if let Err(e) = sweep(&app).await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One sweep: claims every due grant (active → revoking) with its revoke job. Returns how many.
pub async fn sweep(app: &App) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let now = app.now_ms();
        let mut tx = app.store.begin().await?;
        let due = tx.claim_due_grants(now, BATCH).await?;
        for g in &due {
            tx.audit(now, NewAuditEvent {
                actor: "system:expiry",
                action: "grant.expiring",
                request_id: Some(&g.request_id),
                grant_id: Some(&g.id),
                detail: json!({"expires_at": g.expires_at, "app": g.app, "entitlement": g.entitlement}),
            })
            .await?;
            tx.enqueue(
                &Job::Revoke {
                    grant_id: g.id.clone(),
                },
                now,
                app.config.jobs.max_attempts,
            )
            .await?;
        }
        tx.commit().await?;
        total += due.len();
        if (due.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}
