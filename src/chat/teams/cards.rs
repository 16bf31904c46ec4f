//! Adaptive Cards (schema 1.5) for Teams: the approval card with Approve / Deny as
//! `Action.Execute` (Universal Actions), the request form, buttons under messages; and the
//! translation of grantry's message text into Teams markdown.
//!
//! Text a person typed (a reason, a ticket) goes into `TextRun`s, which Teams renders as plain
//! text: it cannot turn into a link or a mention.

use serde_json::{json, Value};

use crate::chat::{ActionMessage, ApprovalCard, Button, CardStatus, Verdict};
use crate::domain::Catalog;

/// `verb` of the Approve action; `data.request_id` names the request.
pub const APPROVE: &str = "grantry.approve";
/// `verb` of "Approve for less time"; `data.duration` says how long.
pub const APPROVE_FOR: &str = "grantry.approve_for";
/// `verb` of the Deny action; the card's `reason` input comes with it.
pub const DENY: &str = "grantry.deny";
/// `verb` of the request form's submit action.
pub const REQUEST: &str = "grantry.request";
/// `verb` that opens the request form (from a help message).
pub const OPEN_FORM: &str = "grantry.open_form";

/// The content type of an Adaptive Card attachment and of an invoke answer carrying a card.
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

const SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";

fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut c = json!({
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": "1.5",
        "body": body,
    });
    if !actions.is_empty() {
        c["actions"] = Value::Array(actions);
    }
    c
}

fn text(t: impl Into<String>) -> Value {
    json!({"type": "TextBlock", "text": t.into(), "wrap": true})
}

/// A block of text someone typed, shown verbatim (no markdown, no links).
fn verbatim(label: &str, t: &str) -> Value {
    json!({"type": "RichTextBlock", "inlines": [
        {"type": "TextRun", "text": format!("{label}: "), "weight": "Bolder"},
        {"type": "TextRun", "text": t},
    ]})
}

fn execute(title: &str, verb: &str, data: Value) -> Value {
    json!({"type": "Action.Execute", "title": title, "verb": verb, "data": data})
}

/// A card as a message activity's attachment.
pub fn attachment(card: &Value) -> Value {
    json!({"contentType": CARD_CONTENT_TYPE, "content": card})
}

/// The approval card: who, what, how long, why, the policy's reasons; Approve / Deny with a
/// reason box while pending, who decided and when afterwards (no live action).
pub fn approval_card(c: &ApprovalCard) -> Value {
    let mut facts = vec![
        json!({"title": "Requester", "value": plain(&c.requester.name)}),
        json!({"title": "For", "value": plain(&c.subject.name)}),
        json!({"title": "Access", "value": plain(&format!("{} / {}", c.app, c.entitlement))}),
        json!({"title": "Duration", "value": plain(&c.duration)}),
        json!({"title": "Risk", "value": plain(&c.risk)}),
    ];
    let mut body = vec![
        json!({"type": "TextBlock", "text": format!("Access request {}", c.request_id), "size": "Large", "weight": "Bolder", "wrap": true}),
    ];
    if let Some(t) = &c.ticket {
        facts.push(json!({"title": "Ticket", "value": plain(t)}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    body.push(verbatim("Reason", &c.reason));
    if !c.policy_reasons.is_empty() {
        body.push(json!({"type": "TextBlock", "text": plain(&format!("Policy: {}", c.policy_reasons.join("; "))), "wrap": true, "isSubtle": true, "size": "Small"}));
    }
    if !c.context.is_empty() {
        body.push(json!({"type": "TextBlock", "text": plain(&c.context.join(" · ")), "wrap": true, "isSubtle": true, "size": "Small"}));
    }
    if let Some(b) = &c.on_behalf_of {
        body.push(json!({"type": "TextBlock", "text": plain(b), "wrap": true, "isSubtle": true, "size": "Small"}));
    }
    let data = |extra: Option<&str>| match extra {
        Some(d) => json!({"request_id": c.request_id, "duration": d}),
        None => json!({"request_id": c.request_id}),
    };
    let mut actions = Vec::new();
    match &c.status {
        CardStatus::Pending => {
            body.push(json!({"type": "Input.Text", "id": "reason", "isMultiline": true, "maxLength": 500,
                "label": "Reason, if you deny (the requester reads it)", "placeholder": "Why not?"}));
            let mut approve = execute("Approve", APPROVE, data(None));
            approve["style"] = json!("positive");
            actions.push(approve);
            for d in &c.shorter {
                actions.push(execute(
                    &format!("Approve for {d}"),
                    APPROVE_FOR,
                    data(Some(d)),
                ));
            }
            let mut deny = execute("Deny", DENY, data(None));
            deny["style"] = json!("destructive");
            deny["associatedInputs"] = json!("auto");
            actions.push(deny);
        }
        CardStatus::Decided { verdict, by, at_ms } => {
            let (mark, word) = match verdict {
                Verdict::Approved => ("✅", "Approved"),
                Verdict::Denied => ("⛔", "Denied"),
            };
            body.push(
                json!({"type": "TextBlock", "weight": "Bolder", "wrap": true,
                "color": if *verdict == Verdict::Approved { "Good" } else { "Attention" },
                "text": format!("{mark} {word} by {} at {}", plain(&by.name), utc(*at_ms))}),
            );
        }
        CardStatus::Closed { why, at_ms } => {
            body.push(
                json!({"type": "TextBlock", "weight": "Bolder", "wrap": true,
                "text": format!("{} at {}", plain(why), utc(*at_ms))}),
            );
        }
    }
    card(body, actions)
}

/// The request form: which access (app and entitlement), how long, why. `error` is shown on top
/// (the same words Slack shows inline); `values` refills what the person typed.
pub fn request_form(catalog: &Catalog, error: Option<&str>, values: &Value) -> Value {
    let mut choices = Vec::new();
    for app in &catalog.apps {
        for e in &app.entitlements {
            choices.push(json!({
                "title": format!("{} — {}", app.name, e.name),
                "value": format!("{}/{}", app.id, e.id),
            }));
        }
    }
    let mut body = vec![
        json!({"type": "TextBlock", "text": "Request access", "size": "Large", "weight": "Bolder", "wrap": true}),
    ];
    if let Some(e) = error {
        body.push(json!({"type": "TextBlock", "text": to_markdown(e), "color": "Attention", "wrap": true}));
    }
    let val = |k: &str| values[k].as_str().unwrap_or("").to_string();
    let mut access = json!({"type": "Input.ChoiceSet", "id": "access", "label": "App and entitlement",
        "style": "compact", "isRequired": true, "errorMessage": "Pick what you need",
        "choices": choices});
    if !val("access").is_empty() {
        access["value"] = json!(val("access"));
    }
    body.push(access);
    body.push(json!({"type": "Input.Text", "id": "duration", "label": "For how long",
        "placeholder": "4h (30m, 4h, 2d, 1w; empty: the entitlement's default)", "value": val("duration")}));
    body.push(json!({"type": "Input.Text", "id": "reason", "label": "Why", "isMultiline": true,
        "isRequired": true, "errorMessage": "Say why you need it", "maxLength": 500, "value": val("reason")}));
    body.push(json!({"type": "Input.Text", "id": "ticket", "label": "Ticket (optional)", "value": val("ticket")}));
    card(body, vec![execute("Request", REQUEST, json!({}))])
}

/// A short card replacing a form or answering a click: one line of text.
pub fn notice(t: &str) -> Value {
    card(vec![text(to_markdown(t))], Vec::new())
}

/// A message with buttons (`Action.Execute`, verb = the button's action id, `data.value`).
pub fn action_card(msg: &ActionMessage) -> Value {
    let actions = msg.buttons.iter().map(button).collect();
    card(vec![text(to_markdown(&msg.text))], actions)
}

/// One button as an action.
pub fn button(b: &Button) -> Value {
    execute(&b.label, &b.action_id, json!({"value": b.value}))
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Text from the catalog or directory, made inert for Teams markdown (no links, no emphasis).
fn plain(t: &str) -> String {
    let mut s = String::with_capacity(t.len());
    for c in t.chars() {
        if matches!(c, '*' | '_' | '[' | ']' | '`' | '<' | '>' | '#') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// grantry's message text (Slack-style `*bold*`, `:emoji:`, user input escaped as `&lt;`) in
/// Teams markdown: `**bold**`, the emoji itself, and no `[text](url)` link that user input could
/// have smuggled in.
pub fn to_markdown(t: &str) -> String {
    const EMOJI: &[(&str, &str)] = &[
        (":white_check_mark:", "✅"),
        (":no_entry:", "⛔"),
        (":warning:", "⚠️"),
        (":rotating_light:", "🚨"),
        (":hourglass:", "⌛"),
        (":hourglass_flowing_sand:", "⏳"),
        (":lock:", "🔒"),
        (":unlock:", "🔓"),
        (":busts_in_silhouette:", "👥"),
        (":wave:", "👋"),
        (":bell:", "🔔"),
        (":x:", "❌"),
        (":information_source:", "ℹ️"),
    ];
    let mut s = t.to_string();
    for (code, e) in EMOJI {
        s = s.replace(code, e);
    }
    // `*x*` → `**x**` (Slack bold to markdown bold), pairwise.
    let mut out = String::with_capacity(s.len() + 8);
    let mut open = false;
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '*' {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let opens = !open && next.is_some_and(|n| !n.is_whitespace());
            let closes = open && prev.is_some_and(|p| !p.is_whitespace());
            if opens || closes {
                open = !open;
                out.push_str("**");
                continue;
            }
        }
        out.push(c);
    }
    // Break markdown links: `](` never reaches Teams intact.
    out.replace("](", "]\u{200B}(")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::PersonLabel;

    fn sample(status: CardStatus) -> ApprovalCard {
        ApprovalCard {
            request_id: "R-ABCD1234".into(),
            requester: PersonLabel {
                name: "Alice".into(),
                chat_id: None,
            },
            subject: PersonLabel {
                name: "Alice".into(),
                chat_id: None,
            },
            app: "github".into(),
            entitlement: "readers".into(),
            duration: "4h".into(),
            reason: "[click me](https://evil.example) @channel".into(),
            ticket: None,
            risk: "low".into(),
            policy_reasons: vec![],
            context: vec![],
            shorter: vec!["1h".into()],
            on_behalf_of: None,
            status,
        }
    }

    #[test]
    fn pending_cards_have_approve_deny_and_the_reason_verbatim() {
        let c = approval_card(&sample(CardStatus::Pending));
        let s = c.to_string();
        assert!(s.contains(APPROVE) && s.contains(DENY) && s.contains(APPROVE_FOR));
        assert!(
            s.contains(r#""type":"TextRun","text":"[click me](https://evil.example) @channel""#),
            "{s}"
        );
    }

    #[test]
    fn decided_cards_have_no_actions() {
        let c = approval_card(&sample(CardStatus::Decided {
            verdict: Verdict::Approved,
            by: PersonLabel {
                name: "Bob".into(),
                chat_id: None,
            },
            at_ms: 0,
        }));
        assert!(c.get("actions").is_none());
        assert!(c.to_string().contains("Approved by Bob"));
    }

    #[test]
    fn slack_text_becomes_teams_markdown() {
        assert_eq!(
            to_markdown(":white_check_mark: Request *R-1* is active. [x](http://e)"),
            "✅ Request **R-1** is active. [x]\u{200B}(http://e)"
        );
        assert_eq!(to_markdown("2 * 3 = 6"), "2 * 3 = 6");
    }
}
