//! Routing: who approves a request.
//!
//! Invariants: the requester and the subject never approve their own request; a person who is
//! not active in the directory is skipped.

use crate::directory::Directory;
use crate::domain::App;

/// One approver chosen for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub email: String,
    pub name: String,
}

/// The app's owners, less the requester, the subject and anyone not active.
/// Owners missing from the directory are kept (their chat id is looked up when the card is sent).
pub fn approvers(
    app: &App,
    requester: &str,
    subject: &str,
    directory: &Directory,
) -> Vec<Approver> {
    app.owners
        .iter()
        .filter(|o| !o.eq_ignore_ascii_case(requester) && !o.eq_ignore_ascii_case(subject))
        .filter_map(|o| match directory.by_email(o) {
            Some(p) if !p.is_active() => None,
            Some(p) => Some(Approver {
                email: p.email.clone(),
                name: p.display_name().to_string(),
            }),
            None => Some(Approver {
                email: o.clone(),
                name: o.clone(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Catalog, Person, PersonStatus};

    #[test]
    fn the_requester_and_people_who_left_never_approve() {
        let cat = Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\nowners=['req@x.io','gone@x.io','ok@x.io','new@x.io']\n[[apps.entitlements]]\nid='e'\n",
            None,
        )
        .unwrap();
        let p = |e: &str, s| Person {
            email: e.into(),
            name: None,
            slack_id: None,
            teams_id: None,
            department: None,
            title: None,
            manager: None,
            status: s,
        };
        let dir = Directory::new(vec![
            p("req@x.io", PersonStatus::Active),
            p("gone@x.io", PersonStatus::Terminated),
            p("ok@x.io", PersonStatus::Active),
        ]);
        let got: Vec<_> = approvers(&cat.apps[0], "REQ@x.io", "req@x.io", &dir)
            .into_iter()
            .map(|a| a.email)
            .collect();
        assert_eq!(got, ["ok@x.io", "new@x.io"]);
    }
}
