//! RS256 JSON Web Tokens, for the connectors that authenticate with a private key: a GitHub App,
//! a Google service account, an Okta service app (private_key_jwt).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::Value;

/// An RSA private key read from PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
pub(crate) struct SigningKey(RsaKeyPair);

impl SigningKey {
    /// Parses a PEM key. The error never contains key material.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (label, der) = pem_body(pem)?;
        let pair = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            other => {
                return Err(format!(
                    "expected an RSA private key in PEM, found '{other}'"
                ))
            }
        }
        .map_err(|e| format!("the private key is not a usable RSA key ({e})"))?;
        Ok(Self(pair))
    }

    /// `header.claims.signature` with `{"alg":"RS256","typ":"JWT"}` (plus `kid` when given).
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(k) = kid {
            header["kid"] = Value::String(k.to_string());
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.0.public().modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the token failed".to_string())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

fn pem_body(pem: &str) -> Result<(String, Vec<u8>), String> {
    let pem = pem.replace("\\n", "\n");
    let begin = pem
        .find("-----BEGIN ")
        .ok_or("the private key is not PEM (no BEGIN line)")?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----").ok_or("malformed PEM BEGIN line")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = rest
        .find("-----END ")
        .ok_or("the private key is not PEM (no END line)")?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the private key's PEM body is not base64".to_string())?;
    Ok((label, der))
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}
