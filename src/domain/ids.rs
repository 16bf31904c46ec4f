//! Identifiers people read aloud: `R-0WWTR7GC1S` for requests, `G-7KQ2M9XA` for grants.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

/// Crockford's base32 alphabet: no I, L, O, U, so ids survive being read over a call. In
/// ASCII order, so fixed-width ids sort as the numbers they encode.
const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `prefix-` followed by eight random base32 characters (40 bits).
pub fn random_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 9);
    s.push_str(prefix);
    s.push('-');
    for _ in 0..8 {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Seconds from the Unix epoch to 2025-01-01T00:00:00Z, where ordered ids start.
const ORDERED_EPOCH_SECS: u64 = 1_735_689_600;
/// Random bits below the time in an ordered id.
const ORDERED_RANDOM_BITS: u32 = 19;
/// The last ordered id's number handed out by this process.
static LAST_ORDERED: AtomicU64 = AtomicU64::new(0);

/// `prefix-` followed by ten base32 characters (50 bits) that grow with time: the seconds since
/// 2025 (31 bits, until 2093) then 19 random bits, strictly increasing within a process (ids of
/// one second are consecutive from a random start). New rows then land at the end of every index
/// keyed by the id instead of anywhere in it, which quarters what each commit writes on the ack
/// path (docs/benchmarks.md). Replicas minting ids in the same second collide only if their runs
/// overlap in the 2^19 space (odds ~ (ids in that second) / 524,288); that insert then fails and
/// the requester is told nothing was saved and to try again (which mints a new id). Whole seconds,
/// not milliseconds: with ms and 10 random bits two replicas' bursts overlapped (seen in
/// tests/replicas.rs).
pub fn ordered_id(prefix: &str) -> String {
    let since = (chrono::Utc::now().timestamp() as u64).saturating_sub(ORDERED_EPOCH_SECS);
    let fresh =
        (since << ORDERED_RANDOM_BITS) | rand::rng().random_range(0..1u64 << ORDERED_RANDOM_BITS);
    let mut n = fresh;
    let _ = LAST_ORDERED.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
        // Same second as the last id: go on from it (keeps the run consecutive).
        n = if last >> ORDERED_RANDOM_BITS >= since {
            last + 1
        } else {
            fresh
        };
        Some(n)
    });
    let mut s = String::with_capacity(prefix.len() + 11);
    s.push_str(prefix);
    s.push('-');
    for i in (0..10).rev() {
        s.push(ALPHABET[((n >> (5 * i)) & 31) as usize] as char);
    }
    s
}

/// Checks `prefix-XXXXXXXX` (random) or `prefix-XXXXXXXXXX` (ordered) and normalises case.
pub(crate) fn parse_id(prefix: &str, input: &str) -> Option<String> {
    let s = input.trim().to_ascii_uppercase();
    let rest = s.strip_prefix(prefix)?.strip_prefix('-')?;
    if matches!(rest.len(), 8 | 10) && rest.bytes().all(|b| ALPHABET.contains(&b)) {
        Some(s)
    } else {
        None
    }
}

/// The id of an access request, e.g. `R-0WWTR7GC1S` (ordered; `R-7KQ2M9XA`, random, before
/// 2026-12).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id, later than every one this process made before.
    pub fn generate() -> Self {
        Self(ordered_id("R"))
    }
    /// Parses a user-typed id (`r-7kq2m9xa` is fine).
    pub fn parse(input: &str) -> Option<Self> {
        parse_id("R", input).map(Self)
    }
    /// Wraps an id read from our own store.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = RequestId::generate();
        assert_eq!(RequestId::parse(&id.as_str().to_lowercase()), Some(id));
    }

    #[test]
    fn ordered_ids_grow_and_older_random_ids_still_parse() {
        let ids: Vec<String> = (0..5_000)
            .map(|_| RequestId::generate().as_str().to_string())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert!(ids.iter().all(|i| i.len() == 12));
        assert_eq!(
            RequestId::parse("r-7kq2m9xa").map(|r| r.as_str().to_string()),
            Some("R-7KQ2M9XA".to_string())
        );
        // The time is in the id: its top 31 bits are the seconds since 2025.
        let n = ids[0][2..].bytes().fold(0u64, |n, b| {
            n * 32 + ALPHABET.iter().position(|a| *a == b).unwrap() as u64
        });
        let at = (n >> ORDERED_RANDOM_BITS) + ORDERED_EPOCH_SECS;
        let now = chrono::Utc::now().timestamp() as u64;
        assert!(now.abs_diff(at) < 60, "{} is {at}, now {now}", ids[0]);
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "R-",
            "R-1234567",
            "X-12345678",
            "R-1234567I",
            "R-123456789",
            "R-12345678901",
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad}");
        }
    }
}
