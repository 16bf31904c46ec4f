//! Slack request signing: `v0=` + hex(HMAC-SHA256(secret, "v0:{timestamp}:{raw body}")),
//! compared in constant time, with a replay window on the timestamp.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a request's signature was refused. Every variant is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    Missing,
    #[error("malformed signature headers")]
    Malformed,
    #[error("request timestamp is outside the allowed window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
    #[error("no signing secret is configured (Socket Mode): Slack's HTTP endpoints are closed")]
    NotConfigured,
}

/// Checks a request. `now_secs` is the current Unix time; `max_skew_secs` the window (300).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
    max_skew_secs: i64,
) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NotConfigured);
    }
    let (ts, sig) = match (timestamp, signature) {
        (Some(t), Some(s)) => (t.trim(), s.trim()),
        _ => return Err(SignatureError::Missing),
    };
    let ts_num: i64 = ts.parse().map_err(|_| SignatureError::Malformed)?;
    if (now_secs - ts_num).abs() > max_skew_secs {
        return Err(SignatureError::Stale);
    }
    let hex_sig = sig.strip_prefix("v0=").ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs a body as Slack would (for tests, benchmarks and the CLI's `sign` helper).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own worked example, from ../shared/oracles/slack/signing-vector.json.
    fn vector() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/oracles/slack/signing-vector.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("oracle present")).unwrap()
    }

    #[test]
    fn slacks_signing_vector_verifies() {
        let v = vector();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let ts: i64 = s("timestamp").parse().unwrap();
        assert_eq!(
            sign(s("secret").as_bytes(), ts, s("body").as_bytes()),
            s("signature")
        );
        assert_eq!(
            verify(
                s("secret").as_bytes(),
                Some(&s("timestamp")),
                Some(&s("signature")),
                s("body").as_bytes(),
                ts,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn tampering_staleness_and_garbage_are_refused() {
        let v = vector();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let ts: i64 = s("timestamp").parse().unwrap();
        let (secret, body, sig, t) = (s("secret"), s("body"), s("signature"), s("timestamp"));
        let mut tampered = body.clone().into_bytes();
        tampered[0] ^= 1;
        assert_eq!(
            verify(secret.as_bytes(), Some(&t), Some(&sig), &tampered, ts, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&t), Some(&sig), body.as_bytes(), ts, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                secret.as_bytes(),
                Some(&t),
                Some(&sig),
                body.as_bytes(),
                ts + 301,
                300
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(
                secret.as_bytes(),
                Some(&t),
                Some(&sig),
                body.as_bytes(),
                ts - 301,
                300
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(
                secret.as_bytes(),
                None,
                Some(&sig),
                body.as_bytes(),
                ts,
                300
            ),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(
                secret.as_bytes(),
                Some("x"),
                Some(&sig),
                body.as_bytes(),
                ts,
                300
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(
                secret.as_bytes(),
                Some(&t),
                Some("v1=00"),
                body.as_bytes(),
                ts,
                300
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(
                secret.as_bytes(),
                Some(&t),
                Some("v0=zz"),
                body.as_bytes(),
                ts,
                300
            ),
            Err(SignatureError::Malformed)
        );
    }
}
