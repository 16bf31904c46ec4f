//! The audit chain: each event holds the hash of the one before it, so an edited, removed or
//! reordered row breaks the chain at a place [`verify`] names.

use sha2::{Digest, Sha256};

use crate::store::audit::AuditRecord;
use crate::store::{Store, StoreError};

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the previous hash and every field of the event, length-prefixed so that no two
/// different events hash alike.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    prev_hash: &str,
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    request_id: Option<&str>,
    grant_id: Option<&str>,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    let seq_s = seq.to_string();
    let at_s = at_ms.to_string();
    for part in [
        prev_hash,
        &seq_s,
        &at_s,
        actor,
        action,
        request_id.unwrap_or("\u{0}"),
        grant_id.unwrap_or("\u{0}"),
        detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every event is in place; `events` were checked, ending at `head`.
    Whole { events: i64, head: String },
    /// The first bad place.
    Broken { seq: i64, problem: String },
}

fn recompute(e: &AuditRecord) -> String {
    chain_hash(
        &e.prev_hash,
        e.seq,
        e.at,
        &e.actor,
        &e.action,
        e.request_id.as_deref(),
        e.grant_id.as_deref(),
        &e.detail,
    )
}

/// Walks the whole chain and checks every link, then the recorded head.
pub async fn verify(store: &Store) -> Result<Verdict, StoreError> {
    let mut prev = GENESIS.to_string();
    let mut expected = 1;
    loop {
        let batch = store.audit_events(expected - 1, 5_000).await?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            if e.seq != expected {
                return Ok(Verdict::Broken {
                    seq: expected,
                    problem: format!("event {expected} is missing (next is {})", e.seq),
                });
            }
            if e.prev_hash != prev {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    problem: "its prev_hash does not match the event before it".into(),
                });
            }
            if recompute(&e) != e.hash {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    problem: format!("its content was changed ({} by {})", e.action, e.actor),
                });
            }
            prev = e.hash;
            expected += 1;
        }
    }
    let (head_seq, head_hash) = store.audit_head().await?;
    if head_seq != expected - 1 || head_hash != prev {
        return Ok(Verdict::Broken {
            seq: expected,
            problem: format!(
                "the chain ends at event {} but the recorded head is event {head_seq}: events were removed from the end",
                expected - 1
            ),
        });
    }
    Ok(Verdict::Whole {
        events: expected - 1,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_separate_fields() {
        let a = chain_hash(GENESIS, 1, 5, "ab", "c", None, None, "{}");
        let b = chain_hash(GENESIS, 1, 5, "a", "bc", None, None, "{}");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }
}

/// Export formats for auditors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line; the first line describes the export and the chain check.
    Jsonl,
    /// A `#` line with the chain check, then a header row, then one row per event.
    Csv,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes every event at or after `since_ms`, stating first whether the whole chain verified
/// (so an export of a tampered store says so).
pub async fn export(
    store: &Store,
    since_ms: i64,
    format: ExportFormat,
    out: &mut impl std::io::Write,
) -> Result<usize, ExportError> {
    let verdict = verify(store).await?;
    let (verified, head, problem) = match &verdict {
        Verdict::Whole { head, .. } => (true, head.clone(), None),
        Verdict::Broken { seq, problem } => (
            false,
            String::new(),
            Some(format!("event {seq}: {problem}")),
        ),
    };
    match format {
        ExportFormat::Jsonl => writeln!(
            out,
            "{}",
            serde_json::json!({"export": "grantry-audit", "chain_verified": verified, "head": head,
                               "problem": problem, "since": since_ms})
        )?,
        ExportFormat::Csv => {
            writeln!(
                out,
                "# grantry audit export; chain_verified={verified}; head={head}{}",
                problem
                    .map(|p| format!("; problem={p}"))
                    .unwrap_or_default()
            )?;
            writeln!(
                out,
                "seq,at,actor,action,request_id,grant_id,detail,prev_hash,hash"
            )?;
        }
    }
    let mut written = 0;
    let mut after = 0;
    loop {
        let batch = store.audit_events(after, 5_000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for e in batch.into_iter().filter(|e| e.at >= since_ms) {
            let at = chrono::DateTime::from_timestamp_millis(e.at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
            match format {
                ExportFormat::Jsonl => {
                    let detail: serde_json::Value = serde_json::from_str(&e.detail)
                        .unwrap_or(serde_json::Value::String(e.detail.clone()));
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"seq": e.seq, "at": at, "actor": e.actor, "action": e.action,
                            "request_id": e.request_id, "grant_id": e.grant_id, "detail": detail,
                            "prev_hash": e.prev_hash, "hash": e.hash})
                    )?
                }
                ExportFormat::Csv => writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    e.seq,
                    at,
                    csv_field(&e.actor),
                    csv_field(&e.action),
                    csv_field(e.request_id.as_deref().unwrap_or("")),
                    csv_field(e.grant_id.as_deref().unwrap_or("")),
                    csv_field(&e.detail),
                    e.prev_hash,
                    e.hash
                )?,
            }
            written += 1;
        }
    }
    Ok(written)
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// For each of `events` (one request's, say), what is wrong with it in the chain: its content
/// no longer matches its hash, or it no longer follows the event before it. `None`: intact.
pub async fn check_events(
    store: &Store,
    events: &[AuditRecord],
) -> Result<Vec<Option<String>>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        if recompute(e) != e.hash {
            out.push(Some("its content was changed after it was written".into()));
            continue;
        }
        let prev = if e.seq <= 1 {
            Some(GENESIS.to_string())
        } else {
            store.audit_event_before(e.seq).await?.map(|p| p.hash)
        };
        out.push(match prev {
            Some(p) if p == e.prev_hash => None,
            Some(_) => Some("it does not follow the event before it".into()),
            None => Some(format!("the event before it ({}) is missing", e.seq - 1)),
        });
    }
    Ok(out)
}
