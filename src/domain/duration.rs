//! `AccessDuration`: how long access lasts, parsed once from `30m`, `4h`, `2d`, `1w`.

use std::fmt;
use std::str::FromStr;

/// A positive duration in whole minutes, as a user or the catalog writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessDuration {
    minutes: u64,
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("'{0}' is not a duration: use a number and a unit, like 30m, 4h, 2d or 1w")]
    Invalid(String),
    #[error("a duration must be longer than zero")]
    Zero,
    #[error("'{0}' is too long: the longest duration is 3650d")]
    TooLong(String),
}

const MAX_MINUTES: u64 = 3650 * 24 * 60;

impl AccessDuration {
    /// A duration of `minutes` minutes (must be positive).
    pub fn from_minutes(minutes: u64) -> Result<Self, DurationError> {
        if minutes == 0 {
            return Err(DurationError::Zero);
        }
        if minutes > MAX_MINUTES {
            return Err(DurationError::TooLong(format!("{minutes}m")));
        }
        Ok(Self { minutes })
    }

    /// Parses `30m`, `4h`, `2d`, `1w` (also `90min`, `4 hours`, `2 days`; case-insensitive).
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let s = input.trim().to_ascii_lowercase();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if digits_end == 0 || digits_end > 9 {
            return Err(DurationError::Invalid(input.trim().to_string()));
        }
        let n: u64 = s[..digits_end]
            .parse()
            .map_err(|_| DurationError::Invalid(input.trim().to_string()))?;
        let per_unit = match s[digits_end..].trim() {
            "m" | "min" | "mins" | "minute" | "minutes" => 1,
            "h" | "hr" | "hrs" | "hour" | "hours" => 60,
            "d" | "day" | "days" => 24 * 60,
            "w" | "wk" | "week" | "weeks" => 7 * 24 * 60,
            _ => return Err(DurationError::Invalid(input.trim().to_string())),
        };
        let minutes = n
            .checked_mul(per_unit)
            .ok_or_else(|| DurationError::TooLong(input.trim().to_string()))?;
        if minutes > MAX_MINUTES {
            return Err(DurationError::TooLong(input.trim().to_string()));
        }
        Self::from_minutes(minutes)
    }

    /// Whole minutes.
    pub fn minutes(self) -> u64 {
        self.minutes
    }

    /// Whole seconds.
    pub fn seconds(self) -> u64 {
        self.minutes * 60
    }

    /// Milliseconds, for timestamps.
    pub fn millis(self) -> i64 {
        (self.minutes as i64) * 60_000
    }
}

impl FromStr for AccessDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for AccessDuration {
    /// The largest unit that divides evenly: `90m`, `4h`, `2d`, `1w`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.minutes;
        let week = 7 * 24 * 60;
        if m.is_multiple_of(week) {
            write!(f, "{}w", m / week)
        } else if m.is_multiple_of(24 * 60) {
            write!(f, "{}d", m / (24 * 60))
        } else if m.is_multiple_of(60) {
            write!(f, "{}h", m / 60)
        } else {
            write!(f, "{m}m")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_unit() {
        assert_eq!(AccessDuration::parse("30m").unwrap().minutes(), 30);
        assert_eq!(AccessDuration::parse("4h").unwrap().minutes(), 240);
        assert_eq!(AccessDuration::parse("2d").unwrap().minutes(), 2880);
        assert_eq!(AccessDuration::parse("1w").unwrap().minutes(), 10080);
        assert_eq!(AccessDuration::parse(" 4 Hours ").unwrap().minutes(), 240);
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "h",
            "4",
            "4x",
            "-1h",
            "0h",
            "99999999999h",
            "1.5h",
            "4h30m",
        ] {
            assert!(AccessDuration::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn displays_in_the_largest_even_unit() {
        for (s, shown) in [("90m", "90m"), ("120m", "2h"), ("48h", "2d"), ("14d", "2w")] {
            assert_eq!(AccessDuration::parse(s).unwrap().to_string(), shown);
        }
    }
}
