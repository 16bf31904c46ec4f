//! Slack request signatures: any timestamp, signature header and body must give Ok or an error,
//! never a panic; a body we signed ourselves always verifies.
#![no_main]

use grantry::chat::slack::signature::{sign, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(96));
    let head = String::from_utf8_lossy(head);
    let (ts, sig) = head.split_once('|').unwrap_or((&head, ""));
    let _ = verify(b"fuzz-secret", Some(ts), Some(sig), body, 1_700_000_000, 300);
    let _ = verify(b"fuzz-secret", None, Some(sig), body, 1_700_000_000, 300);
    let good = sign(b"fuzz-secret", 1_700_000_000, body);
    assert!(verify(b"fuzz-secret", Some("1700000000"), Some(&good), body, 1_700_000_000, 300).is_ok());
});
