//! Routing: who approves a request.
//!
//! Invariants: the requester and the subject never approve their own request; a person who is
//! not active in the directory is skipped.

use crate::directory::Directory;
use crate::domain::{App, Step};

/// One approver chosen for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub email: String,
    pub name: String,
}

/// The app's owners, less the requester, the subject and anyone not active (the default step).
/// Owners missing from the directory are kept (their chat id is looked up when the card is sent).
pub fn approvers(
    app: &App,
    requester: &str,
    subject: &str,
    directory: &Directory,
) -> Vec<Approver> {
    step_approvers(app, &Step::owners(), requester, subject, directory)
}

/// The approvers of one step: `owners` expands to the app's owners, `manager` to the subject's
/// manager (from the directory); the requester, the subject and anyone not active are left out,
/// and nobody appears twice. When fewer than the step needs remain, its backups are added (with
/// the same rules).
pub fn step_approvers(
    app: &App,
    step: &Step,
    requester: &str,
    subject: &str,
    directory: &Directory,
) -> Vec<Approver> {
    let mut emails: Vec<String> = Vec::new();
    for who in &step.approvers {
        match who.as_str() {
            "owners" => emails.extend(app.owners.iter().cloned()),
            "manager" => emails.extend(directory.by_email(subject).and_then(|p| p.manager.clone())),
            email => emails.push(email.to_string()),
        }
    }
    let mut out = eligible(emails, Vec::new(), requester, subject, directory);
    if out.len() < step.need as usize && !step.backup.is_empty() {
        out = eligible(step.backup.clone(), out, requester, subject, directory);
    }
    out
}

fn eligible(
    emails: Vec<String>,
    mut out: Vec<Approver>,
    requester: &str,
    subject: &str,
    directory: &Directory,
) -> Vec<Approver> {
    for e in emails {
        if e.eq_ignore_ascii_case(requester) || e.eq_ignore_ascii_case(subject) {
            continue;
        }
        if out.iter().any(|a| a.email.eq_ignore_ascii_case(&e)) {
            continue;
        }
        match directory.by_email(&e) {
            Some(p) if !p.is_active() => {}
            Some(p) => out.push(Approver {
                email: p.email.clone(),
                name: p.display_name().to_string(),
            }),
            None => out.push(Approver {
                email: e.to_ascii_lowercase(),
                name: e.clone(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Catalog, Person, PersonStatus};

    #[test]
    fn backups_step_in_only_when_the_step_cannot_be_met() {
        let cat = Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\nowners=['o@x.io']\n[[apps.entitlements]]\nid='e'\n[[apps.entitlements.steps]]\napprovers=['manager']\nbackup=['b@x.io']\n",
            None,
        )
        .unwrap();
        let step = &cat.apps[0].entitlements[0].steps[0];
        let p = |e: &str, m: Option<&str>, s| Person {
            email: e.into(),
            name: None,
            slack_id: None,
            teams_id: None,
            department: None,
            title: None,
            manager: m.map(str::to_string),
            status: s,
            accounts: Default::default(),
        };
        let with_manager = |status| {
            Directory::new(vec![
                p("s@x.io", Some("m@x.io"), PersonStatus::Active),
                p("m@x.io", None, status),
                p("b@x.io", None, PersonStatus::Active),
            ])
        };
        let emails = |d: &Directory| -> Vec<String> {
            step_approvers(&cat.apps[0], step, "s@x.io", "s@x.io", d)
                .into_iter()
                .map(|a| a.email)
                .collect()
        };
        assert_eq!(emails(&with_manager(PersonStatus::Active)), ["m@x.io"]);
        assert_eq!(emails(&with_manager(PersonStatus::Terminated)), ["b@x.io"]);
        // The manager asking for their report: the backup decides, never the requester.
        let d = with_manager(PersonStatus::Active);
        let got: Vec<_> = step_approvers(&cat.apps[0], step, "m@x.io", "s@x.io", &d)
            .into_iter()
            .map(|a| a.email)
            .collect();
        assert_eq!(got, ["b@x.io"]);
        assert!(Catalog::parse(
            "[[apps]]\nid='a'\nconnector='c'\n[[apps.entitlements]]\nid='e'\n[[apps.entitlements.steps]]\napprovers=['owners']\nbackup=['nobody']\n",
            None
        )
        .is_err());
    }

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
            accounts: Default::default(),
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
