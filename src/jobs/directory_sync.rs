//! Slack ids for people the people file lists without one: looked up by email through Slack's
//! profile (`users.lookupByEmail`) in the background, paced, so that a person whose Slack id IT
//! never typed is still recognised on the ack path (which never calls Slack).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::chat::ChatError;
use crate::App;

/// Pause between lookups (Slack's `users.lookupByEmail` is a Tier 3 method: ~50 calls a minute).
const PACE: Duration = Duration::from_millis(1_200);

/// Looks up everyone without a Slack id now, then every `directory.slack_lookup_interval_secs`.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Some(slack) = app.chat("slack").cloned() else {
        return;
    };
    if !app.config.directory.slack_lookup {
        return;
    }
    let every = Duration::from_secs(app.config.directory.slack_lookup_interval_secs.max(60));
    while !*stop.borrow() {
        let people: Vec<String> = app
            .directory
            .without_slack_id()
            .into_iter()
            .map(|p| p.email.clone())
            .collect();
        let mut found = 0;
        for email in &people {
            if *stop.borrow() {
                return;
            }
            let wait = match slack.find_user_by_email(email).await {
                Ok(Some(id)) => {
                    if app.directory.learn_slack_id(&id, email) {
                        found += 1;
                    }
                    PACE
                }
                Ok(None) => PACE,
                Err(ChatError::Transient { retry_after, .. }) => {
                    PACE.max(retry_after.unwrap_or(Duration::from_secs(5)))
                }
                Err(ChatError::Permanent { message }) => {
                    tracing::warn!(error = %message, "Slack lookup by email refused; the people file's slack_id is needed");
                    break;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        if !people.is_empty() {
            tracing::info!(
                looked_up = people.len(),
                found,
                "Slack ids found by email for people listed without one"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}
