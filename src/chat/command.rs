//! The `/access` command language, shared by every chat platform:
//! `/access <app> <entitlement> [for <duration>|permanent] [because <reason>]`, and `help`.

use crate::domain::duration::DurationError;
use crate::domain::AccessDuration;

/// How long a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationSpec {
    For(AccessDuration),
    Permanent,
}

/// A request as typed, before the catalog is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestText {
    pub app: String,
    pub entitlement: String,
    pub duration: Option<DurationSpec>,
    pub reason: Option<String>,
}

/// What the person asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessCommand {
    /// `/access` alone: the guided form.
    OpenForm,
    Help,
    /// My open requests and active grants.
    List,
    /// Withdraw a request waiting for approval.
    Cancel(String),
    /// More time on a grant I hold (a grant or request id).
    Extend {
        id: String,
        duration: AccessDuration,
    },
    /// While away: my approvals go to `to` (a mention or an email) until the end of `until` (UTC).
    Delegate {
        to: String,
        until: chrono::NaiveDate,
    },
    /// Back: end my delegation.
    DelegateOff,
    /// Remove a grant now (the holder gives it back; an owner or IT takes it away).
    Revoke {
        id: String,
        reason: Option<String>,
    },
    /// IT: everything of a person who left.
    Offboard(String),
    /// IT: post the digest to the status channel now.
    Digest,
    Request(RequestText),
    /// An owner of the app or IT grants to someone who did not ask (`to`: a mention or an
    /// email); still through policy and approvers, with the grantor recorded as requester.
    Grant {
        to: String,
        text: RequestText,
    },
    /// An emergency: granted at once for at most the catalog's break-glass time, reviewed after.
    BreakGlass(RequestText),
}

/// Why the text could not be understood; each message tells the person what to type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Tell me which entitlement of *{app}* you need: `/access {app} <entitlement> for 4h because <reason>`")]
    MissingEntitlement { app: String },
    #[error("Say how long after `for`, like `for 4h` (units: m, h, d, w).")]
    MissingDuration,
    #[error("{0}")]
    BadDuration(DurationError),
    #[error("I did not understand `{0}`. Write `for <duration>` and `because <reason>`, like `/access github readers for 4h because onboarding`.")]
    Unexpected(String),
    #[error("Say why after `because`.")]
    MissingReason,
    #[error("Usage: `{0}`")]
    Usage(&'static str),
}

/// Parses the text after `/access`.
pub fn parse(text: &str) -> Result<AccessCommand, CommandError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let first = words.first().map(|w| w.to_ascii_lowercase());
    match (first.as_deref(), words.as_slice()) {
        (None, _) => return Ok(AccessCommand::OpenForm),
        (Some("help" | "-h" | "--help" | "?"), [_]) => return Ok(AccessCommand::Help),
        (Some("list" | "ls" | "status"), [_]) => return Ok(AccessCommand::List),
        (Some("cancel"), [_, id]) => return Ok(AccessCommand::Cancel((*id).to_string())),
        (Some("cancel"), _) => return Err(CommandError::Usage("/access cancel <request id>")),
        (Some("extend"), [_, id, d]) => {
            return Ok(AccessCommand::Extend {
                id: (*id).to_string(),
                duration: AccessDuration::parse(d).map_err(CommandError::BadDuration)?,
            })
        }
        (Some("revoke"), [_, id, rest @ ..]) => {
            let reason = match rest {
                [] => None,
                [because, ..] if because.eq_ignore_ascii_case("because") => {
                    Some(text_after_word(text, 3)).filter(|r| !r.is_empty())
                }
                _ => {
                    return Err(CommandError::Usage(
                        "/access revoke <grant id> [because <reason>]",
                    ))
                }
            };
            return Ok(AccessCommand::Revoke {
                id: (*id).to_string(),
                reason,
            });
        }
        (Some("revoke"), _) => {
            return Err(CommandError::Usage(
                "/access revoke <grant id> [because <reason>]",
            ))
        }
        (Some("digest"), [_]) => return Ok(AccessCommand::Digest),
        (Some("grant"), [_, to, _, ..]) => {
            return match parse(&text_after_word(text, 2)) {
                Ok(AccessCommand::Request(t)) => Ok(AccessCommand::Grant {
                    to: (*to).to_string(),
                    text: t,
                }),
                Err(e) => Err(e),
                Ok(_) => Err(CommandError::Usage(GRANT_USAGE)),
            }
        }
        (Some("grant"), _) => return Err(CommandError::Usage(GRANT_USAGE)),
        (Some("breakglass" | "break-glass"), [_, _, ..]) => {
            return match parse(&text_after_word(text, 1)) {
                Ok(AccessCommand::Request(t)) => Ok(AccessCommand::BreakGlass(t)),
                Err(e) => Err(e),
                Ok(_) => Err(CommandError::Usage(BREAK_GLASS_USAGE)),
            }
        }
        (Some("breakglass" | "break-glass"), _) => {
            return Err(CommandError::Usage(BREAK_GLASS_USAGE))
        }
        (Some("offboard"), [_, who]) => return Ok(AccessCommand::Offboard((*who).to_string())),
        (Some("offboard"), _) => {
            return Err(CommandError::Usage("/access offboard <email>   (IT only)"))
        }
        (Some("delegate"), [_, off]) if off.eq_ignore_ascii_case("off") => {
            return Ok(AccessCommand::DelegateOff)
        }
        (Some("delegate"), [_, to, until_word, date])
            if until_word.eq_ignore_ascii_case("until") =>
        {
            let until = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| CommandError::Usage("/access delegate @person until YYYY-MM-DD"))?;
            return Ok(AccessCommand::Delegate {
                to: (*to).to_string(),
                until,
            });
        }
        (Some("delegate"), _) => {
            return Err(CommandError::Usage(
                "/access delegate @person until YYYY-MM-DD   (or /access delegate off)",
            ))
        }
        (Some("extend"), _) => {
            return Err(CommandError::Usage(
                "/access extend <grant or request id> <duration>",
            ))
        }
        _ => {}
    }
    if let [app] = words.as_slice() {
        return Err(CommandError::MissingEntitlement {
            app: (*app).to_string(),
        });
    }
    let app = words[0].to_string();
    let entitlement = words[1].to_string();
    let mut duration = None;
    let mut reason = None;
    let mut i = 2;
    while i < words.len() {
        match words[i].to_ascii_lowercase().as_str() {
            "for" => {
                let next = words.get(i + 1).ok_or(CommandError::MissingDuration)?;
                duration = Some(
                    if next.eq_ignore_ascii_case("permanent") || next.eq_ignore_ascii_case("ever") {
                        DurationSpec::Permanent
                    } else {
                        DurationSpec::For(
                            AccessDuration::parse(next).map_err(CommandError::BadDuration)?,
                        )
                    },
                );
                i += 2;
            }
            "permanent" | "permanently" => {
                duration = Some(DurationSpec::Permanent);
                i += 1;
            }
            "because" | "reason" | "why" => {
                // The reason is the rest of the original text, spacing kept.
                let rest = text_after_word(text, i + 1);
                if rest.is_empty() {
                    return Err(CommandError::MissingReason);
                }
                reason = Some(rest);
                break;
            }
            other => return Err(CommandError::Unexpected(other.to_string())),
        }
    }
    Ok(AccessCommand::Request(RequestText {
        app,
        entitlement,
        duration,
        reason,
    }))
}

const GRANT_USAGE: &str =
    "/access grant @person <app> <entitlement> for <duration> because <reason>   (app owners and IT)";

const BREAK_GLASS_USAGE: &str =
    "/access breakglass <app> <entitlement> [for <duration>] because <reason>";

/// The original text from the `n`th whitespace-separated word on, trimmed.
fn text_after_word(text: &str, n: usize) -> String {
    let mut rest = text.trim_start();
    for _ in 0..n {
        match rest.find(char::is_whitespace) {
            Some(i) => rest = rest[i..].trim_start(),
            None => return String::new(),
        }
    }
    rest.trim().to_string()
}

/// The help text.
pub const HELP: &str = "*grantry* keeps the grants: ask for access, owners approve, access ends on time.\n\
• `/access`: a form that lists the apps, their access and the durations allowed.\n\
• `/access <app> <entitlement> for <duration> because <reason>`: ask directly, e.g. `/access github platform-admins for 4h because incident INC-42`\n\
• `/access bundle <id> for <duration> because <reason>`: a bundle of access across apps (see the form), approved once, granted and ended together.\n\
• Durations: `30m`, `4h`, `2d`, `1w` (the catalog sets the longest allowed; `permanent` where it allows).\n\
• `/access list`: your open requests and the access you hold, with time left.\n\
• `/access cancel <request id>`: withdraw a request still waiting for approval.\n\
• `/access extend <grant id> <duration>`: ask for more time on access you hold (approved like a request).\n\
• `/access delegate @person until YYYY-MM-DD`: while you are away, approval requests for you go to them (`/access delegate off` when back).\n\
• `/access revoke <grant id> [because <reason>]`: give access back now (owners and IT may revoke others' too).\n\
• `/access grant @person <app> <entitlement> for <duration> because <reason>`: owners of the app and IT give access to someone who did not ask (policy and the other approvers still decide).\n\
• `/access breakglass <app> <entitlement> because <reason>`: an emergency, where the catalog allows it: granted at once for a short time, IT alerted, the owners review it afterwards.\n\
• `/access help`: this message.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_names_the_person_then_the_request() {
        assert_eq!(
            parse("grant <@U111|alice> github readers for 2h because onboarding").unwrap(),
            AccessCommand::Grant {
                to: "<@U111|alice>".into(),
                text: RequestText {
                    app: "github".into(),
                    entitlement: "readers".into(),
                    duration: Some(DurationSpec::For(AccessDuration::parse("2h").unwrap())),
                    reason: Some("onboarding".into()),
                }
            }
        );
        assert_eq!(parse("grant bob"), Err(CommandError::Usage(GRANT_USAGE)));
    }

    #[test]
    fn break_glass_takes_a_request() {
        assert_eq!(
            parse("breakglass github platform-admins because prod is down").unwrap(),
            AccessCommand::BreakGlass(RequestText {
                app: "github".into(),
                entitlement: "platform-admins".into(),
                duration: None,
                reason: Some("prod is down".into()),
            })
        );
        assert_eq!(
            parse("break-glass list"),
            Err(CommandError::Usage(BREAK_GLASS_USAGE))
        );
        assert_eq!(
            parse("breakglass"),
            Err(CommandError::Usage(BREAK_GLASS_USAGE))
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse("github platform-admins for 4h because incident INC-42").unwrap();
        assert_eq!(
            c,
            AccessCommand::Request(RequestText {
                app: "github".into(),
                entitlement: "platform-admins".into(),
                duration: Some(DurationSpec::For(AccessDuration::parse("4h").unwrap())),
                reason: Some("incident INC-42".into()),
            })
        );
    }

    #[test]
    fn reasons_keep_their_words_and_order_is_free() {
        let c = parse("okta  admins because  the  for 4h thing").unwrap();
        let AccessCommand::Request(r) = c else {
            panic!()
        };
        assert_eq!(r.reason.as_deref(), Some("the  for 4h thing"));
        assert_eq!(r.duration, None);
    }

    #[test]
    fn helpful_errors() {
        assert_eq!(parse("").unwrap(), AccessCommand::OpenForm);
        assert_eq!(parse("help").unwrap(), AccessCommand::Help);
        assert_eq!(parse("LIST").unwrap(), AccessCommand::List);
        assert_eq!(parse("digest").unwrap(), AccessCommand::Digest);
        // An app named "digest" can still be requested.
        assert!(matches!(
            parse("digest readers").unwrap(),
            AccessCommand::Request(_)
        ));
        assert_eq!(
            parse("cancel R-1").unwrap(),
            AccessCommand::Cancel("R-1".into())
        );
        assert!(matches!(parse("cancel"), Err(CommandError::Usage(_))));
        assert!(matches!(
            parse("extend G-1 2h").unwrap(),
            AccessCommand::Extend { .. }
        ));
        assert!(matches!(
            parse("extend G-1 2x"),
            Err(CommandError::BadDuration(_))
        ));
        assert!(matches!(
            parse("github"),
            Err(CommandError::MissingEntitlement { .. })
        ));
        assert!(matches!(
            parse("github x for"),
            Err(CommandError::MissingDuration)
        ));
        assert!(matches!(
            parse("github x for 4q"),
            Err(CommandError::BadDuration(_))
        ));
        assert!(matches!(
            parse("github x please"),
            Err(CommandError::Unexpected(_))
        ));
        assert!(matches!(
            parse("github x because"),
            Err(CommandError::MissingReason)
        ));
        assert!(matches!(
            parse("github x for permanent because y").unwrap(),
            AccessCommand::Request(RequestText {
                duration: Some(DurationSpec::Permanent),
                ..
            })
        ));
    }
}
