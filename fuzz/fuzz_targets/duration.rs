//! Durations (`30m`, `4h`, `2d`, `1w`): parsed or refused, never a panic; what parses prints back
//! to text that parses to the same duration.
#![no_main]

use grantry::domain::AccessDuration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = AccessDuration::parse(text) {
            let again = AccessDuration::parse(&d.to_string()).expect("a printed duration parses");
            assert_eq!(again.millis(), d.millis());
        }
    }
});
