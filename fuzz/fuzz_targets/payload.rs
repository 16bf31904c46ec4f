//! Slack's inbound payloads (slash commands, interactions, events) as form or JSON bodies: parsed
//! or refused with a reason, never a panic.
#![no_main]

use grantry::chat::slack::payload::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(Some("application/x-www-form-urlencoded"), data);
    let _ = parse(Some("application/json"), data);
    let _ = parse(None, data);
});
