//! Incoming Bot Framework activities, read tolerantly: the fields grantry uses, typed; the rest
//! ignored. A missing field that grantry needs is a clear error (400), never a panic.

use serde::Deserialize;
use serde_json::Value;

/// Why an activity could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivityError {
    #[error("the body is not a Bot Framework activity: {0}")]
    Malformed(String),
    #[error("the activity has no {0}")]
    Missing(&'static str),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Account {
    #[serde(default)]
    id: String,
    name: Option<String>,
    aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    #[serde(default)]
    id: String,
    conversation_type: Option<String>,
    tenant_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    service_url: Option<String>,
    channel_id: Option<String>,
    from: Option<Account>,
    conversation: Option<Conversation>,
    recipient: Option<Account>,
    text: Option<String>,
    name: Option<String>,
    value: Option<Value>,
    channel_data: Option<Value>,
    reply_to_id: Option<String>,
}

/// Who sent an activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The Teams user id (`29:…`).
    pub id: String,
    /// The Entra object id, when Teams sent it.
    pub aad_object_id: Option<String>,
    pub name: Option<String>,
}

impl Sender {
    /// The id grantry knows the person by: the Entra object id (the people file's `teams_id`),
    /// or the Teams user id where no object id came.
    pub fn key(&self) -> &str {
        self.aad_object_id.as_deref().unwrap_or(&self.id)
    }
}

/// What an activity asks of the bot.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A message; `value` is set when it comes from an `Action.Submit`.
    Message { text: String, value: Option<Value> },
    /// An `Action.Execute` click (`invoke` named `adaptiveCard/action`).
    CardAction { verb: String, data: Value },
    /// Members added or removed, the bot installed: a chance to remember the conversation.
    ConversationUpdate,
    /// Anything else (typing, reactions, other invokes): acknowledged, nothing done.
    Other(String),
}

/// An activity from the Bot Connector.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: Option<String>,
    pub kind: Kind,
    pub service_url: String,
    pub channel_id: String,
    pub from: Sender,
    pub conversation_id: String,
    /// `personal`, `groupChat` or `channel`.
    pub conversation_type: String,
    pub tenant_id: Option<String>,
    /// The bot's own id (`28:…`).
    pub recipient_id: String,
    /// The message a card action came from.
    pub reply_to_id: Option<String>,
}

/// Parses an activity's JSON body.
pub fn parse(body: &[u8]) -> Result<Activity, ActivityError> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| ActivityError::Malformed(e.to_string()))?;
    let kind_name = raw.kind.ok_or(ActivityError::Missing("type"))?;
    let service_url = raw
        .service_url
        .filter(|s| !s.is_empty())
        .ok_or(ActivityError::Missing("serviceUrl"))?;
    let from = raw
        .from
        .filter(|f| !f.id.is_empty())
        .ok_or(ActivityError::Missing("from.id"))?;
    let conversation = raw
        .conversation
        .filter(|c| !c.id.is_empty())
        .ok_or(ActivityError::Missing("conversation.id"))?;
    let tenant_id = conversation.tenant_id.clone().or_else(|| {
        raw.channel_data
            .as_ref()
            .and_then(|d| d["tenant"]["id"].as_str())
            .map(str::to_string)
    });
    let kind = match kind_name.as_str() {
        "message" => Kind::Message {
            text: raw.text.unwrap_or_default(),
            value: raw.value.filter(|v| !v.is_null()),
        },
        "invoke" if raw.name.as_deref() == Some("adaptiveCard/action") => {
            let action = raw
                .value
                .as_ref()
                .map(|v| &v["action"])
                .ok_or(ActivityError::Missing("value.action"))?;
            if action["type"].as_str() != Some("Action.Execute") {
                return Err(ActivityError::Malformed(
                    "adaptiveCard/action needs value.action.type Action.Execute".into(),
                ));
            }
            let verb = action["verb"]
                .as_str()
                .ok_or(ActivityError::Missing("value.action.verb"))?;
            Kind::CardAction {
                verb: verb.to_string(),
                data: action.get("data").cloned().unwrap_or(Value::Null),
            }
        }
        "conversationUpdate" | "installationUpdate" => Kind::ConversationUpdate,
        other => Kind::Other(other.to_string()),
    };
    Ok(Activity {
        id: raw.id,
        kind,
        service_url,
        channel_id: raw.channel_id.unwrap_or_default(),
        from: Sender {
            id: from.id,
            aad_object_id: from.aad_object_id.filter(|s| !s.is_empty()),
            name: from.name,
        },
        conversation_id: conversation.id,
        conversation_type: conversation
            .conversation_type
            .unwrap_or_else(|| "personal".into()),
        tenant_id,
        recipient_id: raw.recipient.map(|r| r.id).unwrap_or_default(),
        reply_to_id: raw.reply_to_id,
    })
}

/// The text a person typed, without the bot's @mention (`<at>grantry</at>`) and without a leading
/// `/access` or `access` (people type the Slack habit too).
pub fn command_text(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<at>") {
        s.push_str(&rest[..start]);
        match rest[start..].find("</at>") {
            Some(end) => rest = &rest[start + end + "</at>".len()..],
            None => {
                rest = "";
            }
        }
    }
    s.push_str(rest);
    let s = s.replace("&nbsp;", " ");
    let trimmed = s.trim();
    let lower = trimmed.to_ascii_lowercase();
    for prefix in ["/access", "access"] {
        if lower == prefix {
            return String::new();
        }
        if lower.starts_with(&format!("{prefix} ")) {
            return trimmed[prefix.len()..].trim().to_string();
        }
    }
    trimmed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../shared/oracles/teams/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reads_microsofts_documented_message() {
        let a = parse(&oracle("message-activity.msteams-docs.json")).unwrap();
        assert_eq!(a.service_url, "https://smba.trafficmanager.net/amer/");
        assert_eq!(a.channel_id, "msteams");
        assert_eq!(a.from.key(), "7faf8ab2-3d56-4244-b585-20c8a42ed2b8");
        assert_eq!(a.conversation_type, "personal");
        assert_eq!(
            a.tenant_id.as_deref(),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        assert_eq!(
            a.kind,
            Kind::Message {
                text: "Hello Teams TestBot".into(),
                value: None
            }
        );
    }

    #[test]
    fn reads_an_action_execute_invoke() {
        let a = parse(&oracle("invoke-adaptive-card-action.composed.json")).unwrap();
        assert_eq!(
            a.kind,
            Kind::CardAction {
                verb: "approve".into(),
                data: serde_json::json!({"request": "R-0001"})
            }
        );
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(
            parse(br#"{"type":"message","from":{"id":"29:x"},"conversation":{"id":"a:1"}}"#),
            Err(ActivityError::Missing("serviceUrl"))
        );
        assert!(matches!(parse(b"[1,2]"), Err(ActivityError::Malformed(_))));
    }

    #[test]
    fn mentions_and_the_command_word_are_stripped() {
        assert_eq!(
            command_text("<at>grantry</at> access github readers for 4h because x"),
            "github readers for 4h because x"
        );
        assert_eq!(command_text("/access list"), "list");
        assert_eq!(command_text("access"), "");
        assert_eq!(command_text("accessible things"), "accessible things");
    }
}
