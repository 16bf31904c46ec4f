//! `/access …` in Slack: the form opens a modal; every other command runs through
//! [`crate::http::commands`] and answers at once, ephemerally.

use std::sync::Arc;

use super::{modal, Reply};
use crate::chat::command::{self, AccessCommand};
use crate::chat::slack::payload::SlashCommand;
use crate::http::commands;
use crate::App;

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
    if let AccessCommand::OpenForm = parsed {
        return match &cmd.trigger_id {
            Some(trigger) if app.directory.by_chat_id("slack", user).is_some() => {
                modal::open(app, trigger, user);
                Reply::Empty
            }
            Some(_) => Reply::ephemeral(
                "I don't know who you are yet: your account is not in grantry's directory. Ask IT to add you to the people file.",
            ),
            None => Reply::ephemeral(command::HELP),
        };
    }
    let key = idempotency_key(&cmd, raw);
    Reply::ephemeral(commands::run(app, "slack", user, cmd.channel_id.clone(), key, parsed).await)
}
