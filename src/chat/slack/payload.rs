//! Slack's inbound payloads, read tolerantly: unknown fields and new block types never fail a parse.

use serde::Deserialize;
use serde_json::Value;

/// Why a payload could not be read (a 400 with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not a form: {0}")]
    NotAForm(String),
    #[error("missing field '{0}'")]
    Missing(&'static str),
    #[error("'payload' is not valid JSON: {0}")]
    BadJson(String),
    #[error("body is neither a slash command, an interaction nor an event")]
    Unknown,
}

/// A slash command as Slack POSTs it (form fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SlashCommand {
    pub team_id: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    pub command: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub enterprise_id: Option<String>,
}

/// One action of a `block_actions` interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub action_id: String,
    pub block_id: Option<String>,
    pub value: Option<String>,
}

/// A button click (or other block element) in a message or view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockActions {
    pub team_id: Option<String>,
    pub user_id: String,
    /// Where the clicked message is.
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    pub trigger_id: Option<String>,
    pub actions: Vec<Action>,
}

/// A modal submitted (`view_submission`).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSubmission {
    pub team_id: Option<String>,
    pub user_id: String,
    pub view_id: String,
    pub callback_id: String,
    /// What we put in the view when opening it (e.g. the request a deny reason is for).
    pub private_metadata: String,
    /// `view.state.values`: `{block_id: {action_id: {type, value | selected_option …}}}`.
    pub values: Value,
}

impl ViewSubmission {
    /// The text or selected value of `block_id`'s element (`action_id` = `block_id` in our views).
    pub fn value(&self, block_id: &str) -> Option<String> {
        input_value(&self.values, block_id)
    }
}

/// The value a person typed or chose in an input block of `values` (`view.state.values`).
pub fn input_value(values: &Value, block_id: &str) -> Option<String> {
    let el = values.get(block_id)?.get(block_id)?;
    el.get("value")
        .and_then(Value::as_str)
        .or_else(|| str_at(el, &["selected_option", "value"]))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A select menu asking for its options as the person types (`block_suggestion`).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSuggestion {
    pub user_id: String,
    pub action_id: String,
    /// What the person typed so far.
    pub query: String,
    /// The view's state so far (to filter entitlements by the chosen app).
    pub values: Value,
}

/// An Events API `event_callback`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCallback {
    pub event_id: Option<String>,
    /// `event.type`, e.g. `app_home_opened`.
    pub kind: String,
    pub user: Option<String>,
    /// `event.tab` for `app_home_opened` (`home` or `messages`).
    pub tab: Option<String>,
}

/// Every kind of inbound body on the Slack endpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Command(SlashCommand),
    BlockActions(BlockActions),
    ViewSubmission(ViewSubmission),
    BlockSuggestion(BlockSuggestion),
    EventCallback(EventCallback),
    /// Another interaction type (view_submission, shortcut…): its `type` and raw JSON.
    OtherInteraction {
        kind: String,
        payload: Value,
    },
    /// Events API `url_verification`.
    UrlVerification {
        challenge: String,
    },
    /// Another Events API body (e.g. `app_rate_limited`).
    Event(Value),
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Reads any body Slack sends to our endpoints, by its shape: JSON (Events API), a form with
/// `payload` (interactions), or a form with `command` (slash commands).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Inbound, PayloadError> {
    let is_json = content_type.is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| PayloadError::BadJson(e.to_string()))?;
        return parse_event(v);
    }
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| PayloadError::NotAForm(e.to_string()))?;
    if let Some((_, payload)) = fields.iter().find(|(k, _)| k == "payload") {
        let v: Value =
            serde_json::from_str(payload).map_err(|e| PayloadError::BadJson(e.to_string()))?;
        return parse_interaction(v);
    }
    if fields.iter().any(|(k, _)| k == "command") {
        let cmd: SlashCommand = serde_urlencoded::from_bytes(body).map_err(|e| {
            let msg = e.to_string();
            for f in ["team_id", "user_id", "command"] {
                if msg.contains(f) {
                    return PayloadError::Missing(f);
                }
            }
            PayloadError::NotAForm(msg)
        })?;
        return Ok(Inbound::Command(cmd));
    }
    Err(PayloadError::Unknown)
}

/// Reads an Events API body (`url_verification`, `event_callback`, others).
fn parse_event(v: Value) -> Result<Inbound, PayloadError> {
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("url_verification") => Inbound::UrlVerification {
            challenge: str_at(&v, &["challenge"])
                .ok_or(PayloadError::Missing("challenge"))?
                .to_string(),
        },
        Some("event_callback") => Inbound::EventCallback(EventCallback {
            event_id: str_at(&v, &["event_id"]).map(str::to_string),
            kind: str_at(&v, &["event", "type"])
                .ok_or(PayloadError::Missing("event.type"))?
                .to_string(),
            user: str_at(&v, &["event", "user"]).map(str::to_string),
            tab: str_at(&v, &["event", "tab"]).map(str::to_string),
        }),
        Some(_) => Inbound::Event(v),
        None => return Err(PayloadError::Missing("type")),
    })
}

/// Reads a Socket Mode envelope's payload by the envelope's `type`: `slash_commands` (the
/// command's fields as a JSON object), `interactive`, `events_api`.
pub fn parse_socket(kind: &str, payload: Value) -> Result<Inbound, PayloadError> {
    match kind {
        "slash_commands" => serde_json::from_value(payload)
            .map(Inbound::Command)
            .map_err(|e| PayloadError::BadJson(e.to_string())),
        "interactive" => parse_interaction(payload),
        "events_api" => parse_event(payload),
        _ => Err(PayloadError::Unknown),
    }
}

fn parse_interaction(v: Value) -> Result<Inbound, PayloadError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or(PayloadError::Missing("type"))?
        .to_string();
    let user_id = str_at(&v, &["user", "id"]).ok_or(PayloadError::Missing("user.id"))?;
    match kind.as_str() {
        "block_actions" => {}
        "view_submission" => {
            return Ok(Inbound::ViewSubmission(ViewSubmission {
                team_id: str_at(&v, &["team", "id"]).map(str::to_string),
                user_id: user_id.to_string(),
                view_id: str_at(&v, &["view", "id"])
                    .ok_or(PayloadError::Missing("view.id"))?
                    .to_string(),
                callback_id: str_at(&v, &["view", "callback_id"])
                    .unwrap_or_default()
                    .to_string(),
                private_metadata: str_at(&v, &["view", "private_metadata"])
                    .unwrap_or_default()
                    .to_string(),
                values: v
                    .pointer("/view/state/values")
                    .cloned()
                    .unwrap_or(Value::Null),
            }))
        }
        "block_suggestion" => {
            return Ok(Inbound::BlockSuggestion(BlockSuggestion {
                user_id: user_id.to_string(),
                action_id: str_at(&v, &["action_id"])
                    .ok_or(PayloadError::Missing("action_id"))?
                    .to_string(),
                query: str_at(&v, &["value"]).unwrap_or_default().to_string(),
                values: v
                    .pointer("/view/state/values")
                    .cloned()
                    .unwrap_or(Value::Null),
            }))
        }
        _ => return Ok(Inbound::OtherInteraction { kind, payload: v }),
    }
    let actions = v
        .get("actions")
        .and_then(Value::as_array)
        .ok_or(PayloadError::Missing("actions"))?
        .iter()
        .filter_map(|a| {
            Some(Action {
                action_id: a.get("action_id")?.as_str()?.to_string(),
                block_id: a
                    .get("block_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                value: a
                    .get("value")
                    .and_then(Value::as_str)
                    .or_else(|| str_at(a, &["selected_option", "value"]))
                    .map(str::to_string),
            })
        })
        .collect();
    Ok(Inbound::BlockActions(BlockActions {
        team_id: str_at(&v, &["team", "id"])
            .or_else(|| str_at(&v, &["user", "team_id"]))
            .map(str::to_string),
        user_id: user_id.to_string(),
        channel_id: str_at(&v, &["container", "channel_id"])
            .or_else(|| str_at(&v, &["channel", "id"]))
            .map(str::to_string),
        message_ts: str_at(&v, &["container", "message_ts"])
            .or_else(|| str_at(&v, &["message", "ts"]))
            .map(str::to_string),
        trigger_id: str_at(&v, &["trigger_id"]).map(str::to_string),
        actions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../shared/oracles/slack/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).expect("oracle present")
    }

    #[test]
    fn slacks_slash_command_parses() {
        let Inbound::Command(c) = parse(
            Some("application/x-www-form-urlencoded"),
            &oracle("slash_command.form"),
        )
        .unwrap() else {
            panic!("not a command")
        };
        assert_eq!(
            (c.user_id.as_str(), c.team_id.as_str(), c.text.as_str()),
            ("W111", "T111", "Hi")
        );
        assert_eq!(c.trigger_id.as_deref(), Some("111.111.xxx"));
    }

    #[test]
    fn slacks_block_actions_parse() {
        let Inbound::BlockActions(b) = parse(None, &oracle("block_actions.form")).unwrap() else {
            panic!("not block_actions")
        };
        assert_eq!(b.user_id, "W111");
        assert_eq!(b.channel_id.as_deref(), Some("C111"));
        assert_eq!(b.message_ts.as_deref(), Some("111.222"));
        assert_eq!(b.actions[0].action_id, "a");
        assert_eq!(b.actions[0].value.as_deref(), Some("click_me_123"));
    }

    #[test]
    fn slacks_view_submission_parses() {
        let Inbound::ViewSubmission(v) = parse(None, &oracle("view_submission.form")).unwrap()
        else {
            panic!("not a view_submission")
        };
        assert_eq!(
            (
                v.user_id.as_str(),
                v.view_id.as_str(),
                v.callback_id.as_str()
            ),
            ("W111", "V111", "view-id")
        );
        // The oracle's input block is `hspI` with action `maBWU`; our views use block = action.
        assert_eq!(v.values["hspI"]["maBWU"]["value"], "test");
        assert_eq!(v.value("hspI"), None);
    }

    #[test]
    fn malformed_bodies_say_why() {
        assert_eq!(
            parse(None, b"payload=%7Bnot-json")
                .unwrap_err()
                .to_string()
                .split(':')
                .next(),
            Some("'payload' is not valid JSON")
        );
        assert_eq!(
            parse(None, b"command=%2Faccess&text=x").unwrap_err(),
            PayloadError::Missing("team_id")
        );
        assert_eq!(
            parse(None, b"hello=world").unwrap_err(),
            PayloadError::Unknown
        );
        assert!(parse(Some("application/json"), b"{").is_err());
        let Inbound::UrlVerification { challenge } = parse(
            Some("application/json"),
            br#"{"type":"url_verification","challenge":"abc"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(challenge, "abc");
    }
}
