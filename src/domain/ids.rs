//! Identifiers people read aloud: `R-7KQ2M9XA` for requests, `G-…` for grants.

use std::fmt;

use rand::Rng;

/// Crockford's base32 alphabet: no I, L, O, U, so ids survive being read over a call.
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

/// Checks `prefix-XXXXXXXX` and normalises case.
pub(crate) fn parse_id(prefix: &str, input: &str) -> Option<String> {
    let s = input.trim().to_ascii_uppercase();
    let rest = s.strip_prefix(prefix)?.strip_prefix('-')?;
    if rest.len() == 8 && rest.bytes().all(|b| ALPHABET.contains(&b)) {
        Some(s)
    } else {
        None
    }
}

/// The id of an access request, e.g. `R-7KQ2M9XA`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(random_id("R"))
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
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "R-",
            "R-1234567",
            "X-12345678",
            "R-1234567I",
            "R-123456789",
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad}");
        }
    }
}
