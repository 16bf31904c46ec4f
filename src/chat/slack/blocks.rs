//! Block Kit rendering of grantry's messages.

use serde_json::{json, Value};

use crate::chat::{escape, ApprovalCard, CardStatus, PersonLabel, Verdict};

/// `action_id` of the Approve button.
pub const APPROVE: &str = "grantry.approve";
/// `action_id` of the Deny button.
pub const DENY: &str = "grantry.deny";
/// `action_id` of the "Approve for less time" menu; option values are `<request id>|<duration>`.
pub const APPROVE_FOR: &str = "grantry.approve_for";

fn who(p: &PersonLabel) -> String {
    match &p.chat_id {
        Some(id) => format!("<@{id}>"),
        None => escape(&p.name),
    }
}

/// Plain-text fallback (notifications, screen readers).
pub fn card_text(card: &ApprovalCard) -> String {
    let head = format!(
        "{} asks for {} / {} for {} ({})",
        card.requester.name, card.app, card.entitlement, card.duration, card.request_id
    );
    match &card.status {
        CardStatus::Pending => format!("Approval needed: {head}"),
        CardStatus::Decided { verdict, by, .. } => format!(
            "{} by {}: {head}",
            if *verdict == Verdict::Approved {
                "Approved"
            } else {
                "Denied"
            },
            by.name
        ),
        CardStatus::Closed { why, .. } => format!("{why}: {head}"),
    }
}

/// The approval card: who, what, how long, why, the policy's reasons; Approve/Deny while pending,
/// who decided and when afterwards (no live buttons).
pub fn approval_card(card: &ApprovalCard) -> Vec<Value> {
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Requester*\n{}", who(&card.requester))}),
        json!({"type": "mrkdwn", "text": format!("*For*\n{}", who(&card.subject))}),
        json!({"type": "mrkdwn", "text": format!("*Access*\n{} / {}", escape(&card.app), escape(&card.entitlement))}),
        json!({"type": "mrkdwn", "text": format!("*Duration*\n{}", escape(&card.duration))}),
        json!({"type": "mrkdwn", "text": format!("*Risk*\n{}", escape(&card.risk))}),
    ];
    if let Some(t) = &card.ticket {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Ticket*\n{}", escape(t))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("Access request {}", card.request_id)}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Reason*\n{}", quote(&escape(&card.reason)))}}),
    ];
    if !card.policy_reasons.is_empty() {
        let reasons: Vec<String> = card.policy_reasons.iter().map(|r| escape(r)).collect();
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Policy: {}", reasons.join("; "))}]}));
    }
    if !card.context.is_empty() {
        let facts: Vec<String> = card.context.iter().map(|c| escape(c)).collect();
        blocks.push(
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": facts.join(" · ")}]}),
        );
    }
    if let Some(b) = &card.on_behalf_of {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(":busts_in_silhouette: {}", escape(b))}]}));
    }
    match &card.status {
        CardStatus::Pending => {
            let mut elements = vec![
                json!({"type": "button", "action_id": APPROVE, "style": "primary", "value": card.request_id,
                       "text": {"type": "plain_text", "text": "Approve"}}),
                json!({"type": "button", "action_id": DENY, "style": "danger", "value": card.request_id,
                       "text": {"type": "plain_text", "text": "Deny"}}),
            ];
            if !card.shorter.is_empty() {
                let options: Vec<Value> = card
                    .shorter
                    .iter()
                    .map(|d| {
                        json!({"text": {"type": "plain_text", "text": format!("Approve for {d}")},
                                    "value": format!("{}|{d}", card.request_id)})
                    })
                    .collect();
                elements.push(json!({"type": "static_select", "action_id": APPROVE_FOR,
                    "placeholder": {"type": "plain_text", "text": "Approve for less time"}, "options": options}));
            }
            blocks.push(
                json!({"type": "actions", "block_id": "grantry.decision", "elements": elements}),
            );
        }
        CardStatus::Decided { verdict, by, at_ms } => {
            let (mark, word) = match verdict {
                Verdict::Approved => (":white_check_mark:", "Approved"),
                Verdict::Denied => (":no_entry:", "Denied"),
            };
            let secs = at_ms / 1000;
            let fallback = crate::clock::format_utc(*at_ms);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                "text": format!("{mark} *{word}* by {} at <!date^{secs}^{{date_short_pretty}} {{time}}|{fallback}>", who(by))}}));
        }
        CardStatus::Closed { why, at_ms } => {
            let secs = at_ms / 1000;
            let fallback = crate::clock::format_utc(*at_ms);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                "text": format!(":heavy_minus_sign: *{}* at <!date^{secs}^{{date_short_pretty}} {{time}}|{fallback}>", escape(why))}}));
        }
    }
    blocks
}

/// A text section with its buttons (none once decided).
pub fn action_message(msg: &crate::chat::ActionMessage) -> Vec<Value> {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": msg.text}})];
    if !msg.buttons.is_empty() {
        let elements: Vec<Value> = msg
            .buttons
            .iter()
            .map(|b| {
                json!({"type": "button", "action_id": b.action_id, "value": b.value,
                            "text": {"type": "plain_text", "text": b.label}})
            })
            .collect();
        blocks.push(json!({"type": "actions", "elements": elements}));
    }
    blocks
}

/// Quotes every line of (already escaped) text.
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!(">{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Longest text Slack takes in a section block.
const SECTION_MAX: usize = 3000;

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

/// IT's digest: a header, one section per part, and when it covers.
pub fn digest(d: &crate::chat::digest::Digest) -> Vec<Value> {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&d.title(), 150)}}),
    ];
    for sec in d.sections() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&format!("*{}*\n{}", sec.title, sec.body), SECTION_MAX)}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": "`/access digest` posts this again for the last period; the chart follows."}]}));
    blocks
}

/// The digest's plain-text fallback (notifications, screen readers), within Slack's limit.
pub fn digest_text(d: &crate::chat::digest::Digest) -> String {
    clip(&d.text(), 3900)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(status: CardStatus) -> ApprovalCard {
        ApprovalCard {
            request_id: "R-ABCDEFGH".into(),
            requester: PersonLabel {
                name: "Alice".into(),
                chat_id: Some("U1".into()),
            },
            subject: PersonLabel {
                name: "Alice".into(),
                chat_id: Some("U1".into()),
            },
            app: "GitHub".into(),
            entitlement: "platform-admins".into(),
            duration: "4h".into(),
            reason: "incident <!channel>".into(),
            ticket: None,
            risk: "high".into(),
            policy_reasons: vec!["owners approve".into()],
            context: vec!["first time".into()],
            shorter: vec!["1h".into()],
            on_behalf_of: None,
            status,
        }
    }

    #[test]
    fn pending_cards_have_buttons_and_decided_ones_none() {
        let pending = serde_json::to_string(&approval_card(&card(CardStatus::Pending))).unwrap();
        assert!(pending.contains(APPROVE) && pending.contains(DENY));
        assert!(!pending.contains("<!channel>"), "reason must be escaped");
        let decided = serde_json::to_string(&approval_card(&card(CardStatus::Decided {
            verdict: Verdict::Approved,
            by: PersonLabel {
                name: "Bob".into(),
                chat_id: Some("U2".into()),
            },
            at_ms: 1_700_000_000_000,
        })))
        .unwrap();
        assert!(!decided.contains("\"button\""));
        assert!(decided.contains("Approved") && decided.contains("<@U2>"));
    }
}
