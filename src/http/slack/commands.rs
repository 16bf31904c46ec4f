//! `/access …`: every command answers at once, ephemerally, saying what happens next.

use std::sync::Arc;

use super::{modal, Reply};
use crate::chat::command::{self, AccessCommand};
use crate::chat::slack::payload::SlashCommand;
use crate::flow::intake::{self, IntakeReply, Submission};
use crate::flow::FlowError;
use crate::flow::{lifecycle, requests};
use crate::App;

const OOPS: &str =
    "Something went wrong on our side and nothing was saved. Please try again in a moment.";

fn or_oops(r: Result<String, FlowError>) -> Reply {
    match r {
        Ok(text) => Reply::ephemeral(text),
        Err(e) => {
            tracing::error!(error = %e, "slash command failed");
            Reply::ephemeral(OOPS)
        }
    }
}

/// Slack re-sends the same body (and trigger_id) when it retries.
fn idempotency_key(cmd: &SlashCommand, raw: &[u8]) -> String {
    match &cmd.trigger_id {
        Some(t) => format!("slack:{}:{t}", cmd.team_id),
        None => format!(
            "slack:{}:body:{}",
            cmd.team_id,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw))
        ),
    }
}

pub(super) async fn slash_command(app: &Arc<App>, cmd: SlashCommand, raw: &[u8]) -> Reply {
    let parsed = match command::parse(&cmd.text) {
        Ok(p) => p,
        Err(e) => return Reply::ephemeral(e.to_string()),
    };
    let user = cmd.user_id.as_str();
    match parsed {
        AccessCommand::Help => Reply::ephemeral(command::HELP),
        AccessCommand::OpenForm => match &cmd.trigger_id {
            Some(trigger) if app.directory.by_chat_id("slack", user).is_some() => {
                modal::open(app, trigger, user);
                Reply::Empty
            }
            Some(_) => Reply::ephemeral(
                "I don't know who you are yet: your account is not in grantry's directory. Ask IT to add you to the people file.",
            ),
            None => Reply::ephemeral(command::HELP),
        },
        AccessCommand::List => or_oops(requests::list(app, "slack", user).await),
        AccessCommand::Cancel(id) => or_oops(requests::cancel(app, "slack", user, &id).await),
        AccessCommand::Extend { id, duration } => or_oops(
            requests::extend(app, "slack", user, &id, duration, Some(idempotency_key(&cmd, raw)))
                .await
                .map(|r| r.message()),
        ),
        AccessCommand::Delegate { to, until } => {
            or_oops(requests::delegate(app, "slack", user, &to, until).await)
        }
        AccessCommand::DelegateOff => or_oops(requests::end_delegation(app, "slack", user).await),
        AccessCommand::Revoke { id, reason } => {
            let Some(me) = app.directory.by_chat_id("slack", user) else {
                return Reply::ephemeral("I don't know who you are yet: ask IT to add you to the people file.");
            };
            let grant = crate::domain::GrantId::parse(&id);
            let held = match &grant {
                Some(g) => app.store.grant(g).await.ok().flatten(),
                None => None,
            };
            match held {
                Some(g) if !lifecycle::may_revoke(app, &me.email, &g.subject_email, &g.app) => {
                    Reply::ephemeral(format!("Only the holder, an owner of {} or IT can revoke {}.", g.app, g.id))
                }
                _ => {
                    let reason = reason.unwrap_or_else(|| "revoked in Slack".into());
                    or_oops(lifecycle::revoke(app, &me.email, &id, &reason).await)
                }
            }
        }
        AccessCommand::Digest => digest(app, &cmd, raw).await,
        AccessCommand::Offboard(email) => match app.directory.by_chat_id("slack", user) {
            Some(me) if app.config.lifecycle.is_it_admin(&me.email) => or_oops(
                lifecycle::offboard(app, &email, &me.email).await.map(|r| r.text()),
            ),
            _ => Reply::ephemeral("Only IT admins (lifecycle.it_admins) can offboard people."),
        },
        AccessCommand::Request(text) => {
            let submission = Submission {
                platform: "slack",
                requester_chat_id: cmd.user_id.clone(),
                reply_channel: cmd.channel_id.clone(),
                idempotency_key: Some(idempotency_key(&cmd, raw)),
                text,
                ticket: None,
                subject_email: None,
                extends: None,
                confirm_by_dm: false,
            };
            or_oops(intake::submit(app, submission).await.map(|r: IntakeReply| r.message()))
        }
    }
}

/// `/access digest`: IT admins only; queues the digest for the status channel and acks at once.
async fn digest(app: &Arc<App>, cmd: &SlashCommand, raw: &[u8]) -> Reply {
    let is_admin = app
        .directory
        .by_chat_id("slack", &cmd.user_id)
        .is_some_and(|me| app.config.lifecycle.is_it_admin(&me.email));
    if !is_admin {
        return Reply::ephemeral(
            "Only IT admins (lifecycle.it_admins) can post the digest; it goes to IT's status channel.",
        );
    }
    let Some(channel) = app.config.slack.status_channel.as_deref() else {
        return Reply::ephemeral(
            "There is no status channel to post the digest to: set slack.status_channel in grantry's config.",
        );
    };
    let key = idempotency_key(cmd, raw);
    match crate::flow::digest::post_now(app, "slack", channel, Some(&key)).await {
        Ok(_) => Reply::ephemeral(format!(
            "Posting the digest of the last {} to <#{channel}> in a moment.",
            crate::chat::digest::human_duration(crate::flow::digest::period_ms(app))
        )),
        Err(e) => {
            tracing::error!(error = %e, "could not queue the digest");
            Reply::ephemeral(OOPS)
        }
    }
}
