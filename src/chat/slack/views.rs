//! Slack views: the request modal, the options its menus load as people type, and App Home.

use serde_json::{json, Value};

use crate::chat::{escape, time_left, HomeView};
use crate::domain::{AccessDuration, Catalog};

/// `callback_id` of the request modal.
pub const REQUEST_CALLBACK: &str = "grantry.request";
/// `callback_id` of the deny-reason modal (its `private_metadata` is the request id).
pub const DENY_CALLBACK: &str = "grantry.deny";

/// The small modal Deny opens: why, for the requester to read.
pub fn deny_modal(request_id: &str, required: bool) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_CALLBACK,
        "private_metadata": request_id,
        "title": plain("Deny request"),
        "submit": plain("Deny"),
        "close": plain("Back"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("Denying *{request_id}*. The requester will read your reason.")}},
            {"type": "input", "block_id": field::REASON, "optional": !required, "label": plain("Reason"),
             "element": {"type": "plain_text_input", "action_id": field::REASON, "multiline": true, "max_length": 1000,
                         "placeholder": plain("e.g. use the read-only role; admin needs a change ticket")}}
        ]
    })
}

/// `action_id` of the "Request access" button on App Home.
pub const OPEN_MODAL: &str = "grantry.open_modal";
/// Block (and action) ids of the modal's inputs.
pub mod field {
    pub const APP: &str = "app";
    pub const ENTITLEMENT: &str = "entitlement";
    pub const DURATION: &str = "duration";
    pub const REASON: &str = "reason";
    pub const TICKET: &str = "ticket";
    pub const SUBJECT: &str = "subject";
}

/// The value the duration menu uses for permanent access.
pub const PERMANENT: &str = "permanent";

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": true})
}

fn option(label: &str, value: &str) -> Value {
    // Slack caps option text at 75 characters.
    let label: String = label.chars().take(75).collect();
    json!({"text": plain(&label), "value": value})
}

/// The request modal. `subjects` are (value, label) pairs for "Request for", the requester first;
/// the menu is shown only when there is a choice.
pub fn request_modal(subjects: &[(String, String)], min_reason: usize) -> Value {
    let external = |id: &str, label: &str, placeholder: &str| {
        json!({"type": "input", "block_id": id, "label": plain(label),
               "element": {"type": "external_select", "action_id": id, "min_query_length": 0,
                           "placeholder": plain(placeholder)}})
    };
    let mut blocks = vec![
        external(field::APP, "App", "Type to search the catalog"),
        external(
            field::ENTITLEMENT,
            "Access",
            "Choose the app first, then its access",
        ),
        external(
            field::DURATION,
            "For how long",
            "Durations this access allows",
        ),
        json!({"type": "input", "block_id": field::REASON, "label": plain("Why do you need it?"),
               "element": {"type": "plain_text_input", "action_id": field::REASON, "multiline": true,
                           "min_length": min_reason.max(1), "max_length": 2000,
                           "placeholder": plain("e.g. incident INC-42: need to restart the deploy pipeline")}}),
        json!({"type": "input", "block_id": field::TICKET, "optional": true, "label": plain("Ticket"),
               "element": {"type": "plain_text_input", "action_id": field::TICKET, "max_length": 100,
                           "placeholder": plain("e.g. INC-42")}}),
    ];
    if subjects.len() > 1 {
        let opts: Vec<Value> = subjects
            .iter()
            .take(100)
            .map(|(v, l)| option(l, v))
            .collect();
        blocks.push(
            json!({"type": "input", "block_id": field::SUBJECT, "label": plain("Request for"),
            "element": {"type": "static_select", "action_id": field::SUBJECT, "options": opts,
                        "initial_option": opts[0]}}),
        );
    }
    json!({
        "type": "modal",
        "callback_id": REQUEST_CALLBACK,
        "title": plain("Request access"),
        "submit": plain("Request"),
        "close": plain("Cancel"),
        "blocks": blocks,
    })
}

fn matches(query: &str, hay: &[&str]) -> bool {
    let q = query.trim().to_ascii_lowercase();
    q.is_empty() || hay.iter().any(|h| h.to_ascii_lowercase().contains(&q))
}

/// Options for the app menu, filtered by what was typed.
pub fn app_options(catalog: &Catalog, query: &str) -> Value {
    let opts: Vec<Value> = catalog
        .apps
        .iter()
        .filter(|a| matches(query, &[&a.id, &a.name]))
        .take(100)
        .map(|a| option(&a.name, &a.id))
        .collect();
    json!({ "options": opts })
}

/// Options for the entitlement menu: only the chosen app's (none until an app is chosen).
pub fn entitlement_options(catalog: &Catalog, app: Option<&str>, query: &str) -> Value {
    let opts: Vec<Value> = app
        .and_then(|a| catalog.app(a))
        .map(|a| {
            a.entitlements
                .iter()
                .filter(|e| matches(query, &[&e.id, &e.name]))
                .take(100)
                .map(|e| option(&format!("{} ({} risk)", e.name, e.risk), &e.id))
                .collect()
        })
        .unwrap_or_default();
    json!({ "options": opts })
}

/// Options for the duration menu: only what the chosen entitlement allows.
pub fn duration_options(catalog: &Catalog, app: Option<&str>, entitlement: Option<&str>) -> Value {
    let ent = app
        .and_then(|a| catalog.app(a))
        .and_then(|a| entitlement.and_then(|e| a.entitlement(e)));
    let opts: Vec<Value> = ent
        .map(|e| {
            e.duration_choices()
                .into_iter()
                .map(|d| match d {
                    Some(d) => option(&describe(d), &d.to_string()),
                    None => option("Permanent", PERMANENT),
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "options": opts })
}

fn describe(d: AccessDuration) -> String {
    let s = d.to_string();
    let (n, unit) = s.split_at(s.len() - 1);
    let word = match unit {
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        _ => "week",
    };
    format!("{n} {word}{}", if n == "1" { "" } else { "s" })
}

/// App Home: the person's open requests, their access with time left, and what they may request.
pub fn home(view: &HomeView) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": plain("Your access")}),
        json!({"type": "actions", "elements": [{"type": "button", "action_id": OPEN_MODAL, "style": "primary",
               "text": plain("Request access")}]}),
    ];
    if view.grants.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": "You hold no access granted through grantry."}}));
    }
    for g in view.grants.iter().take(40) {
        let left = g
            .expires_at_ms
            .map(|t| time_left(view.now_ms, t))
            .unwrap_or_else(|| "permanent".into());
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*{}* — {left}\n`{}` · `{}` · extend with `/access extend {} 4h`", escape(&g.access), g.id, g.request_id, g.id)}}));
    }
    blocks.push(json!({"type": "header", "text": plain("Your open requests")}));
    if view.requests.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": "None."}}));
    }
    for r in view.requests.iter().take(20) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*{}* — {}\n`{}` · cancel with `/access cancel {}`", escape(&r.access), r.state, r.id, r.id)}}));
    }
    blocks.push(json!({"type": "header", "text": plain("You may request")}));
    let lines: Vec<String> = view
        .requestable
        .iter()
        .map(|(name, id, ents)| {
            format!(
                "*{}* (`{id}`): {}",
                escape(name),
                ents.iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    for chunk in lines.chunks(10).take(20) {
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk.join("\n")}}));
    }
    json!({"type": "home", "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalog.toml");
        Catalog::parse(&std::fs::read_to_string(path).unwrap(), None).unwrap()
    }

    fn values(v: &Value) -> Vec<String> {
        v["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["value"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn entitlements_follow_the_chosen_app_and_durations_the_entitlement() {
        let c = catalog();
        assert_eq!(values(&app_options(&c, "git")), ["github"]);
        assert!(values(&entitlement_options(&c, None, "")).is_empty());
        assert_eq!(
            values(&entitlement_options(&c, Some("github"), "")),
            ["platform-admins", "readers"]
        );
        assert_eq!(
            values(&duration_options(
                &c,
                Some("github"),
                Some("platform-admins")
            )),
            ["30m", "1h", "2h", "4h", "8h"]
        );
        let readers = values(&duration_options(&c, Some("github"), Some("readers")));
        assert_eq!(readers.last().map(String::as_str), Some(PERMANENT));
    }

    #[test]
    fn the_modal_offers_subjects_only_when_there_is_a_choice() {
        let me = vec![("me".to_string(), "Myself".to_string())];
        assert!(!request_modal(&me, 8).to_string().contains("Request for"));
        let more = vec![me[0].clone(), ("r@x.io".into(), "Report".into())];
        assert!(request_modal(&more, 8).to_string().contains("Request for"));
    }
}
