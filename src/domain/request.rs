//! Access requests and their state machine.
//!
//! `submitted → denied | pending_approval → approved | rejected | cancelled | timed_out`,
//! `approved → provisioning → active | failed`, `active → expired | revoked`.
//! The store moves a request only along these edges, each move one compare-and-set.

use super::{AccessDuration, RequestId};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    Submitted,
    Denied,
    PendingApproval,
    Approved,
    Rejected,
    Cancelled,
    TimedOut,
    Provisioning,
    Active,
    Expired,
    Revoked,
    /// Provisioning gave up: a human in IT must act.
    Failed,
}

impl RequestState {
    /// Every state, for metrics and listings.
    pub const ALL: [RequestState; 12] = [
        Self::Submitted,
        Self::Denied,
        Self::PendingApproval,
        Self::Approved,
        Self::Rejected,
        Self::Cancelled,
        Self::TimedOut,
        Self::Provisioning,
        Self::Active,
        Self::Expired,
        Self::Revoked,
        Self::Failed,
    ];

    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Denied => "denied",
            Self::PendingApproval => "pending_approval",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether `self → next` is an edge of the state machine.
    pub fn can_move_to(self, next: RequestState) -> bool {
        use RequestState::*;
        matches!(
            (self, next),
            (Submitted, Denied | PendingApproval | Approved)
                | (
                    PendingApproval,
                    Approved | Rejected | Cancelled | TimedOut | Provisioning
                )
                | (Approved, Provisioning | Cancelled)
                | (Provisioning, Active | Failed)
                | (Failed, Provisioning)
                | (Active, Expired | Revoked)
        )
    }

    /// Whether the request is still under way: not yet settled (active, or ended), counting a
    /// failed provisioning IT must follow up.
    pub fn is_under_way(self) -> bool {
        matches!(
            self,
            Self::Submitted
                | Self::PendingApproval
                | Self::Approved
                | Self::Provisioning
                | Self::Failed
        )
    }

    /// Whether a human approver can still act on it.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Submitted | Self::PendingApproval)
    }

    /// A short phrase for people: "waiting for approval", "active".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Denied => "denied by policy",
            Self::PendingApproval => "waiting for approval",
            Self::Approved => "approved",
            Self::Rejected => "denied by an approver",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed out",
            Self::Provisioning => "being provisioned",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Failed => "failed: IT will follow up",
        }
    }
}

/// A typed access request, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    pub id: RequestId,
    /// Chat platform the request came from (`slack`, `teams`).
    pub platform: String,
    /// The requester's user id on that platform.
    pub requester_chat_id: String,
    pub requester_email: String,
    /// Who the access is for (the requester, a report, a service account).
    pub subject_email: String,
    pub app: String,
    pub entitlement: String,
    /// `None` is permanent access (only where the catalog allows it).
    pub duration: Option<AccessDuration>,
    pub reason: String,
    pub ticket: Option<String>,
    /// For an extension: the grant it lengthens.
    pub extends_grant: Option<String>,
    pub state: RequestState,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::RequestState::*;

    #[test]
    fn names_round_trip() {
        for s in super::RequestState::ALL {
            assert_eq!(super::RequestState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn only_documented_edges_are_allowed() {
        assert!(PendingApproval.can_move_to(Provisioning));
        assert!(Provisioning.can_move_to(Active));
        assert!(Active.can_move_to(Expired));
        assert!(!Rejected.can_move_to(Provisioning));
        assert!(!Active.can_move_to(PendingApproval));
        assert!(!Expired.can_move_to(Active));
        assert!(!Denied.can_move_to(Approved));
    }
}

/// Why a typed reason cannot be taken: it holds a control character (tabs and line breaks
/// aside), which no reason needs and which PostgreSQL cannot store when it is a NUL. `None` when
/// the reason is fine. The text is fit to show to the person who typed it.
pub fn reason_problem(reason: &str) -> Option<String> {
    let c = control_character(reason, &['\t', '\n', '\r'])?;
    Some(format!(
        "Your reason contains {c}: type it again without it."
    ))
}

/// Why a ticket reference (typed, or a service desk's key or link) cannot be taken: it holds a
/// control character, a line break included. `None` when it is fine.
pub fn ticket_problem(ticket: &str) -> Option<String> {
    let c = control_character(ticket, &[])?;
    Some(format!(
        "The ticket contains {c}: give it again without it."
    ))
}

/// The first control character in `text` other than `allowed`, named for the person who typed it.
fn control_character(text: &str, allowed: &[char]) -> Option<String> {
    let c = text
        .chars()
        .find(|c| c.is_control() && !allowed.contains(c))?;
    Some(format!(
        "an invisible control character (U+{:04X})",
        c as u32
    ))
}

#[cfg(test)]
mod reason_tests {
    use super::{reason_problem, ticket_problem};

    #[test]
    fn a_reason_with_a_control_character_is_refused_with_which_one() {
        assert_eq!(reason_problem("incident INC-42\n\tsecond line\r\n"), None);
        assert!(reason_problem("incident\0INC-42")
            .unwrap()
            .contains("U+0000"));
        assert!(reason_problem("bell \u{7}").unwrap().contains("U+0007"));
        assert!(reason_problem("esc \u{1b}[31m").unwrap().contains("U+001B"));
    }

    #[test]
    fn a_ticket_with_a_control_character_or_a_line_break_is_refused_with_which_one() {
        assert_eq!(ticket_problem("IT-42"), None);
        assert_eq!(
            ticket_problem("https://acme.atlassian.net/browse/IT-42"),
            None
        );
        assert!(ticket_problem("IT-42\0").unwrap().contains("U+0000"));
        assert!(ticket_problem("IT-42\nX-Injected: 1")
            .unwrap()
            .contains("U+000A"));
    }
}
