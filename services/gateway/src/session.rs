//! Sessions for token mode. A browser trades the token once (`POST /login`, from the login URL
//! `mainloop up` prints) for a cookie, so the page never keeps the token nor sends it again. The
//! cookie is `v1.<issued>.<nonce>.<mac>`, the mac being the HMAC-SHA256 of the rest under the
//! token: it is checked without any storage (it survives restarts and serves every replica) and
//! holds for 30 days. Logging out clears the cookie; changing the token ends every session.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE: &str = "mainloop_session";
/// How long a session holds.
pub const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A new secret: 32 random bytes, URL-safe base64 (43 characters).
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(token: &[u8], body: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).ok()?;
    mac.update(b"mainloop session ");
    mac.update(body.as_bytes());
    Some(mac)
}

/// A session for whoever presented `token`, issued at `at` (seconds since the epoch).
pub fn issue_at(token: &[u8], at: u64) -> Option<String> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).ok()?;
    let body = format!("v1.{at}.{}", URL_SAFE_NO_PAD.encode(nonce));
    let signed = mac(token, &body)?.finalize().into_bytes();
    Some(format!("{body}.{}", URL_SAFE_NO_PAD.encode(signed)))
}

/// A session issued now.
pub fn issue(token: &[u8]) -> Option<String> {
    issue_at(token, now())
}

/// Whether `session` was issued under `token` and has not expired at `at`.
pub fn valid_at(token: &[u8], session: &str, at: u64) -> bool {
    let Some((body, signature)) = session.rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let Some(issued) = body
        .strip_prefix("v1.")
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(issued, _)| issued.parse::<u64>().ok())
    else {
        return false;
    };
    let fresh = issued <= at.saturating_add(60) && at.saturating_sub(issued) < LIFETIME.as_secs();
    fresh && mac(token, body).is_some_and(|m| m.verify_slice(&signature).is_ok())
}

/// Whether `session` holds now.
pub fn valid(token: &[u8], session: &str) -> bool {
    valid_at(token, session, now())
}

/// The session cookie of a request's `Cookie` headers, if any.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value for `session` (`None`: clear it). HttpOnly and SameSite=Strict always;
/// Secure when the page was reached over HTTPS (a TLS proxy says so in `X-Forwarded-Proto`).
pub fn set_cookie(session: Option<&str>, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    match session {
        Some(value) => format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"the-token";

    #[test]
    fn a_session_holds_under_its_token_until_it_expires() {
        let at = 1_800_000_000;
        let session = issue_at(TOKEN, at).unwrap_or_default();
        assert!(valid_at(TOKEN, &session, at));
        assert!(valid_at(TOKEN, &session, at + LIFETIME.as_secs() - 1));
        assert!(!valid_at(TOKEN, &session, at + LIFETIME.as_secs()), "expired");
        assert!(!valid_at(b"another-token", &session, at), "the token changed");
        assert!(!valid_at(TOKEN, &session, at - 3600), "issued in the future");
        let (body, _) = session.rsplit_once('.').unwrap_or_default();
        let later = body.replacen(&format!("v1.{at}"), &format!("v1.{}", at + 100), 1);
        let forged = format!("{later}.{}", session.rsplit_once('.').unwrap_or_default().1);
        assert!(
            !valid_at(TOKEN, &forged, at + 100),
            "a changed date breaks the mac"
        );
        for junk in ["", "v1", "v1.x.y.z", "v2.1.a.b", "...."] {
            assert!(!valid_at(TOKEN, junk, at), "{junk}");
        }
        assert_ne!(issue_at(TOKEN, at), issue_at(TOKEN, at), "each session its own");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_strictly() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "cookie",
            axum::http::HeaderValue::from_static("theme=nord; mainloop_session=abc.def; x=1"),
        );
        assert_eq!(from_headers(&headers), Some("abc.def"));
        assert_eq!(
            set_cookie(Some("v"), true),
            "mainloop_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000; Secure"
        );
        assert_eq!(
            set_cookie(None, false),
            "mainloop_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        assert_eq!(new_secret().map(|s| s.len()).ok(), Some(43));
    }
}
