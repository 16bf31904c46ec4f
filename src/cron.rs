//! Five-field cron expressions (`minute hour day-of-month month day-of-week`) read in a time zone,
//! for scheduled work such as the digest.
//!
//! Standard cron meaning, not Quartz's: days of the week are `0`–`7` (`0` and `7` are Sunday) or
//! `SUN`–`SAT`, months `1`–`12` or `JAN`–`DEC`; fields take `*`, lists, ranges and steps
//! (`1-5`, `*/15`, `MON,WED,FRI`); when both day fields are restricted a day matching either runs.
//! `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` are accepted too. A local time that a
//! daylight-saving change skips does not run that day; one that occurs twice runs twice.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Why an expression could not be read; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A parsed schedule in its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
    tz: Tz,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name (`jan` is 1, `sun` is 0).
    names_from: u32,
}

fn value(spec: &FieldSpec, s: &str) -> Result<u32, CronError> {
    let bad = |message: String| CronError::Field {
        field: spec.name,
        message,
    };
    let lower = s.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + spec.names_from);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| bad(format!("{s:?} is not a number or a name")))?;
    if v < spec.min || v > spec.max {
        return Err(bad(format!(
            "{v} is out of range {}-{}",
            spec.min, spec.max
        )));
    }
    Ok(v)
}

/// Parses one field into a bit set; returns it and whether it was restricted (not `*`).
fn field(spec: &FieldSpec, text: &str) -> Result<(u64, bool), CronError> {
    let bad = |message: String| CronError::Field {
        field: spec.name,
        message,
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("step {s:?} is not a positive number")))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(spec, a)?, value(spec, b)?)
        } else {
            let v = value(spec, range)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if item.contains('/') { spec.max } else { v })
        };
        if lo > hi {
            return Err(bad(format!("range {range:?} runs backwards")));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, !text.starts_with('*')))
}

impl Schedule {
    /// Parses `expr` (five fields, or `@daily` and the like), to be read in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, CronError> {
        let expr = match expr.trim().to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            _ => expr.trim().to_string(),
        };
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [mi, h, dom, mon, dow] = parts.as_slice() else {
            return Err(CronError::FieldCount(parts.len()));
        };
        let spec = |name, min, max, names, names_from| FieldSpec {
            name,
            min,
            max,
            names,
            names_from,
        };
        let (minutes, _) = field(&spec("minute", 0, 59, &[], 0), mi)?;
        let (hours, _) = field(&spec("hour", 0, 23, &[], 0), h)?;
        let (days_of_month, dom_restricted) = field(&spec("day-of-month", 1, 31, &[], 0), dom)?;
        let (months, _) = field(&spec("month", 1, 12, &MONTHS, 1), mon)?;
        let (dow_bits, dow_restricted) = field(&spec("day-of-week", 0, 7, &DAYS, 0), dow)?;
        // 7 is Sunday too.
        let days_of_week = ((dow_bits | (dow_bits >> 7)) & 0x7f) as u8;
        Ok(Self {
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            months: months as u16,
            days_of_week,
            dom_restricted,
            dow_restricted,
            tz,
        })
    }

    /// The time zone the schedule is read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// Every run on local day `d`, as UTC milliseconds, in order.
    fn runs_on(&self, d: NaiveDate) -> Vec<i64> {
        let mut out = Vec::new();
        if !self.day_matches(d) {
            return out;
        }
        for h in (0..24).filter(|h| self.hours & (1 << h) != 0) {
            for m in (0..60).filter(|m| self.minutes & (1u64 << m) != 0) {
                let Some(naive) = d.and_hms_opt(h, m, 0) else {
                    continue;
                };
                // A skipped local time gives nothing; a repeated one gives both instants.
                match self.tz.from_local_datetime(&naive) {
                    LocalResult::Single(t) => out.push(t.timestamp_millis()),
                    LocalResult::Ambiguous(a, b) => {
                        out.push(a.timestamp_millis());
                        out.push(b.timestamp_millis());
                    }
                    LocalResult::None => {}
                }
            }
        }
        out.sort_unstable();
        out
    }

    fn local_date(&self, ms: i64) -> Option<NaiveDate> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&self.tz).date_naive())
    }

    /// The latest run at or before `now_ms` and not older than `window_ms`, if any.
    pub fn last_run(&self, now_ms: i64, window_ms: i64) -> Option<i64> {
        let first = self.local_date(now_ms - window_ms)?;
        let last = self.local_date(now_ms)?;
        let mut best = None;
        let mut d = first;
        while d <= last {
            for t in self.runs_on(d) {
                if t <= now_ms && t >= now_ms - window_ms {
                    best = Some(best.map_or(t, |b: i64| b.max(t)));
                }
            }
            d = d.succ_opt()?;
        }
        best
    }

    /// The first run after `now_ms`, looking at most about a year ahead.
    pub fn next_run(&self, now_ms: i64) -> Option<i64> {
        let mut d = self.local_date(now_ms)?;
        for _ in 0..(366 * 4 + 1) {
            if let Some(t) = self.runs_on(d).into_iter().find(|t| *t > now_ms) {
                return Some(t);
            }
            d = d.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn monday_nine_in_berlin() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse("0 9 * * MON", tz).unwrap();
        // Wednesday 2026-11-25 12:00 Berlin: the next run is Monday 2026-11-30 09:00 Berlin.
        let now = at(tz, 2026, 11, 25, 12, 0);
        assert_eq!(s.next_run(now), Some(at(tz, 2026, 11, 30, 9, 0)));
        // Monday 09:00 Berlin is 08:00 UTC in winter.
        assert_eq!(
            at(tz, 2026, 11, 30, 9, 0),
            at(chrono_tz::UTC, 2026, 11, 30, 8, 0)
        );
        let run = at(tz, 2026, 11, 30, 9, 0);
        assert_eq!(s.last_run(run + 60_000, 3_600_000), Some(run));
        assert_eq!(s.last_run(run - 1, 3_600_000), None);
        assert_eq!(s.last_run(run + 2 * 3_600_000, 3_600_000), None);
        // Numbers mean what cron means: 1 is Monday, 0 and 7 are Sunday.
        assert_eq!(Schedule::parse("0 9 * * 1", tz).unwrap(), s);
        assert_eq!(
            Schedule::parse("0 0 * * 7", tz).unwrap(),
            Schedule::parse("0 0 * * SUN", tz).unwrap()
        );
    }

    #[test]
    fn lists_ranges_steps_and_day_rules() {
        let s = Schedule::parse("*/15 8-10 * * MON-FRI", chrono_tz::UTC).unwrap();
        let sat = at(chrono_tz::UTC, 2026, 11, 28, 12, 0);
        assert_eq!(
            s.next_run(sat),
            Some(at(chrono_tz::UTC, 2026, 11, 30, 8, 0))
        );
        let mon = at(chrono_tz::UTC, 2026, 11, 30, 8, 1);
        assert_eq!(
            s.next_run(mon),
            Some(at(chrono_tz::UTC, 2026, 11, 30, 8, 15))
        );
        // Both day fields restricted: either matches (the 1st, or any Friday).
        let s = Schedule::parse("0 0 1 * FRI", chrono_tz::UTC).unwrap();
        let t = at(chrono_tz::UTC, 2026, 11, 24, 0, 0);
        assert_eq!(s.next_run(t), Some(at(chrono_tz::UTC, 2026, 11, 27, 0, 0)));
        assert_eq!(
            s.next_run(at(chrono_tz::UTC, 2026, 11, 27, 0, 0)),
            Some(at(chrono_tz::UTC, 2026, 12, 1, 0, 0))
        );
        assert!(Schedule::parse("@weekly", chrono_tz::UTC).is_ok());
    }

    #[test]
    fn clear_errors() {
        let e = |s: &str| Schedule::parse(s, chrono_tz::UTC).unwrap_err().to_string();
        assert_eq!(
            e("0 9 * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        assert_eq!(e("0 25 * * MON"), "hour: 25 is out of range 0-23");
        assert_eq!(
            e("0 9 * * MONDAY"),
            "day-of-week: \"MONDAY\" is not a number or a name"
        );
        assert_eq!(
            e("*/0 9 * * *"),
            "minute: step \"0\" is not a positive number"
        );
        assert_eq!(
            e("0 9 5-1 * *"),
            "day-of-month: range \"5-1\" runs backwards"
        );
    }

    #[test]
    fn daylight_saving_gap_is_skipped() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: 02:00-03:00 does not exist in Berlin.
        let s = Schedule::parse("30 2 * * *", tz).unwrap();
        let before = at(tz, 2026, 3, 28, 12, 0);
        assert_eq!(s.next_run(before), Some(at(tz, 2026, 3, 30, 2, 30)));
    }
}
