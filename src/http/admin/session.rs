//! Signed cookies: the admin session (who signed in, until when) and the short-lived sign-in
//! state of the OIDC flow. A value is `base64url(JSON).base64url(HMAC-SHA256)`; each kind signs
//! under its own label, so one cannot be passed off as the other. HttpOnly, SameSite=Lax, path
//! `/admin`, `Secure` unless configured off.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Secret;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "grantry_admin";
/// The sign-in state cookie's name (OIDC `state`, `nonce`, PKCE verifier).
pub const LOGIN_COOKIE: &str = "grantry_admin_login";

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Their verified email.
    pub email: String,
    /// Until when the session holds (Unix seconds).
    pub exp: i64,
}

/// What the browser keeps between the redirect to the identity provider and the way back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The admin page to return to.
    pub next: String,
    /// Until when (Unix seconds).
    pub exp: i64,
}

/// Signs and checks cookie values with the session secret.
#[derive(Clone)]
pub struct CookieSigner {
    key: Secret,
    secure: bool,
}

type HmacSha256 = Hmac<Sha256>;

impl CookieSigner {
    /// A signer with this key; `secure` adds the `Secure` attribute to every cookie.
    pub fn new(key: Secret, secure: bool) -> Self {
        Self { key, secure }
    }

    fn mac(&self, label: &str, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    /// `value` signed under `label`.
    pub fn seal<T: Serialize>(&self, label: &str, value: &T) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default());
        let sig = self.mac(label, &payload).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The value, if `sealed` was signed under `label` with this key (constant-time check).
    pub fn open<T: DeserializeOwned>(&self, label: &str, sealed: &str) -> Option<T> {
        let (payload, sig) = sealed.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.mac(label, payload).verify_slice(&sig).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/admin`, expiring in `max_age` seconds
    /// (0 deletes it).
    pub fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> CookieSigner {
        CookieSigner::new(Secret::new(key), true)
    }

    #[test]
    fn sealed_values_open_only_with_the_key_and_label() {
        let s = Session {
            email: "carol@example.com".into(),
            exp: 99,
        };
        let sealed = signer("k1").seal("session", &s);
        assert_eq!(signer("k1").open::<Session>("session", &sealed), Some(s));
        assert_eq!(signer("k2").open::<Session>("session", &sealed), None);
        assert_eq!(signer("k1").open::<Session>("login", &sealed), None);
        let (payload, sig) = sealed.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"email":"mallory@example.com","exp":99}"#);
        assert_eq!(
            signer("k1").open::<Session>("session", &format!("{forged}.{sig}")),
            None
        );
        assert!(signer("k1")
            .open::<Session>("session", &format!("{payload}."))
            .is_none());
    }

    #[test]
    fn cookies_are_found_by_name_and_set_safely() {
        assert_eq!(
            cookie("a=1; grantry_admin=x.y; b=2", SESSION_COOKIE),
            Some("x.y")
        );
        assert_eq!(cookie("grantry_admin_login=z", SESSION_COOKIE), None);
        let c = signer("k").set_cookie(SESSION_COOKIE, "v", 60);
        assert_eq!(
            c,
            "grantry_admin=v; Path=/admin; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
