//! The `/access` commands every chat platform shares: run one typed command for a person and
//! return the answer in words (the platform shows it its own way). The guided form is the
//! platform's (a Slack modal, a Teams Adaptive Card) and is not run here.

use crate::chat::command::{self, AccessCommand};
use crate::flow::intake::{self, IntakeReply, Submission};
use crate::flow::FlowError;
use crate::flow::{lifecycle, requests};
use crate::App;

const OOPS: &str =
    "Something went wrong on our side and nothing was saved. Please try again in a moment.";

fn or_oops(r: Result<String, FlowError>) -> String {
    match r {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "command failed");
            OOPS.into()
        }
    }
}

/// Runs `parsed` for `user` (their id on `platform`). `key` makes a platform's redelivery of the
/// same command file once; `reply_channel` is where an ephemeral answer may go later.
pub async fn run(
    app: &App,
    platform: &'static str,
    user: &str,
    reply_channel: Option<String>,
    key: String,
    parsed: AccessCommand,
) -> String {
    match parsed {
        AccessCommand::Help | AccessCommand::OpenForm => command::HELP.to_string(),
        AccessCommand::List => or_oops(requests::list(app, platform, user).await),
        AccessCommand::Cancel(id) => or_oops(requests::cancel(app, platform, user, &id).await),
        AccessCommand::Extend { id, duration } => or_oops(
            requests::extend(app, platform, user, &id, duration, Some(key))
                .await
                .map(|r| r.message()),
        ),
        AccessCommand::Delegate { to, until } => {
            or_oops(requests::delegate(app, platform, user, &to, until).await)
        }
        AccessCommand::DelegateOff => or_oops(requests::end_delegation(app, platform, user).await),
        AccessCommand::Revoke { id, reason } => {
            if let Some(problem) = reason.as_deref().and_then(crate::domain::reason_problem) {
                return problem;
            }
            let Some(me) = app.directory.by_chat_id(platform, user) else {
                return "I don't know who you are yet: ask IT to add you to the people file."
                    .into();
            };
            let grant = crate::domain::GrantId::parse(&id);
            let held = match &grant {
                Some(g) => app.store.grant(g).await.ok().flatten(),
                None => None,
            };
            match held {
                Some(g) if !lifecycle::may_revoke(app, &me.email, &g.subject_email, &g.app) => {
                    format!(
                        "Only the holder, an owner of {} or IT can revoke {}.",
                        g.app, g.id
                    )
                }
                _ => {
                    let reason =
                        reason.unwrap_or_else(|| format!("revoked in {}", platform_name(platform)));
                    or_oops(lifecycle::revoke(app, &me.email, &id, &reason).await)
                }
            }
        }
        AccessCommand::Digest => digest(app, platform, user, &key).await,
        AccessCommand::Offboard(email) => match app.directory.by_chat_id(platform, user) {
            Some(me) if app.config.lifecycle.is_it_admin(&me.email) => or_oops(
                lifecycle::offboard(app, &email, &me.email)
                    .await
                    .map(|r| r.text()),
            ),
            _ => "Only IT admins (lifecycle.it_admins) can offboard people.".into(),
        },
        AccessCommand::Request(text) => {
            file(app, platform, user, reply_channel, key, text, None, false).await
        }
        AccessCommand::BreakGlass(text) => {
            file(app, platform, user, reply_channel, key, text, None, true).await
        }
        AccessCommand::Grant { to, text } => {
            let Some(subject) = crate::flow::requests::named(app, platform, &to) else {
                return format!(
                    "I don't know {}: name someone in grantry's directory (a mention or an email).",
                    crate::chat::escape(&to)
                );
            };
            let subject = Some(subject.email.clone());
            file(
                app,
                platform,
                user,
                reply_channel,
                key,
                text,
                subject,
                false,
            )
            .await
        }
    }
}

/// Files a typed request: for `subject` when given (grant on behalf), an emergency one with
/// `break_glass`.
#[allow(clippy::too_many_arguments)]
async fn file(
    app: &App,
    platform: &'static str,
    user: &str,
    reply_channel: Option<String>,
    key: String,
    text: crate::chat::command::RequestText,
    subject_email: Option<String>,
    break_glass: bool,
) -> String {
    let submission = Submission {
        platform,
        requester_chat_id: user.to_string(),
        reply_channel,
        idempotency_key: Some(key),
        text,
        ticket: None,
        subject_email,
        extends: None,
        confirm_by_dm: false,
        break_glass,
        inbound_ticket: None,
    };
    or_oops(
        intake::submit(app, submission)
            .await
            .map(|r: IntakeReply| r.message()),
    )
}

/// `/access digest`: IT admins only; queues the digest for IT's status channel and answers at once.
async fn digest(app: &App, platform: &str, user: &str, key: &str) -> String {
    let is_admin = app
        .directory
        .by_chat_id(platform, user)
        .is_some_and(|me| app.config.lifecycle.is_it_admin(&me.email));
    if !is_admin {
        return "Only IT admins (lifecycle.it_admins) can post the digest; it goes to IT's status channel."
            .into();
    }
    let Some((status_platform, channel)) = app.status_channel() else {
        return "There is no status channel to post the digest to: set slack.status_channel (or teams.status_conversation) in grantry's config.".into();
    };
    match crate::flow::digest::post_now(app, status_platform, channel, Some(key)).await {
        Ok(_) => format!(
            "Posting the digest of the last {} to {} in a moment.",
            crate::chat::digest::human_duration(crate::flow::digest::period_ms(app)),
            if status_platform == "slack" {
                format!("<#{channel}>")
            } else {
                "IT's status channel".to_string()
            }
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not queue the digest");
            OOPS.into()
        }
    }
}

/// `Slack`, `Teams`: how a platform is named in words.
pub fn platform_name(platform: &str) -> &str {
    match platform {
        "slack" => "Slack",
        "teams" => "Teams",
        other => other,
    }
}
