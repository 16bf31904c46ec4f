//! Replays every input kept in fuzz/corpus/<target>/ (what `cargo fuzz` found while fuzzing; see
//! docs/reliability.md) through the same entry points the fuzz targets call, so that the normal
//! test suite keeps them from regressing.

use std::path::PathBuf;

use grantry::chat::slack::signature::{sign, verify};
use grantry::domain::AccessDuration;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        out.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!out.is_empty(), "{} is empty", dir.display());
    out
}

#[test]
fn signature_corpus() {
    for data in corpus("signature") {
        let (head, body) = data.split_at(data.len().min(96));
        let head = String::from_utf8_lossy(head);
        let (ts, sig) = head.split_once('|').unwrap_or((&head, ""));
        let _ = verify(
            b"fuzz-secret",
            Some(ts),
            Some(sig),
            body,
            1_700_000_000,
            300,
        );
        let good = sign(b"fuzz-secret", 1_700_000_000, body);
        assert!(verify(
            b"fuzz-secret",
            Some("1700000000"),
            Some(&good),
            body,
            1_700_000_000,
            300
        )
        .is_ok());
    }
}

#[test]
fn command_corpus() {
    for data in corpus("command") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = grantry::chat::command::parse(text);
        }
    }
}

#[test]
fn payload_corpus() {
    for data in corpus("payload") {
        let _ =
            grantry::chat::slack::payload::parse(Some("application/x-www-form-urlencoded"), &data);
        let _ = grantry::chat::slack::payload::parse(Some("application/json"), &data);
        let _ = grantry::chat::slack::payload::parse(None, &data);
    }
}

#[test]
fn duration_corpus() {
    for data in corpus("duration") {
        if let Ok(text) = std::str::from_utf8(&data) {
            if let Ok(d) = AccessDuration::parse(text) {
                let again =
                    AccessDuration::parse(&d.to_string()).expect("a printed duration parses");
                assert_eq!(again.millis(), d.millis());
            }
        }
    }
}
