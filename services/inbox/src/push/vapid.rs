//! The server's VAPID identity (RFC 8292): one P-256 key, made at first use and kept in
//! Postgres so every replica signs as the same server; browsers subscribe with its public half.
//! Each push carries `Authorization: vapid t=<JWT>, k=<public key>`, the JWT (ES256) naming the
//! push service's origin (`aud`, its port included when not the default), an expiry within a
//! day (`exp`) and who to contact (`sub`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::json;
use sqlx::PgPool;

/// How long a signature is good for; push services refuse more than 24 hours.
const VALID_SECS: i64 = 12 * 60 * 60;

#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("the VAPID key could not be read or stored: {0}")]
    Store(#[from] sqlx::Error),
    #[error("the stored VAPID key is not a P-256 key")]
    Corrupt,
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// The server's key, made and stored the first time it is needed (replicas racing to make it
/// agree on the one stored first).
pub async fn key(db: &PgPool) -> Result<SigningKey, VapidError> {
    if let Some(stored) = stored(db).await? {
        return SigningKey::from_slice(&stored).map_err(|_| VapidError::Corrupt);
    }
    let made = new_key()?;
    sqlx::query("INSERT INTO push_key (private_key) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(made.to_bytes().to_vec())
        .execute(db)
        .await?;
    let stored = stored(db).await?.ok_or(VapidError::Corrupt)?;
    SigningKey::from_slice(&stored).map_err(|_| VapidError::Corrupt)
}

async fn stored(db: &PgPool) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT private_key FROM push_key")
        .fetch_optional(db)
        .await
}

fn new_key() -> Result<SigningKey, VapidError> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| VapidError::Random(e.to_string()))?;
        // A scalar of zero or beyond the curve's order is not a key (odds: about 2^-32).
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
}

/// The public key as browsers take it (`applicationServerKey`): the uncompressed point, base64url.
pub fn public_key(key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(key.verifying_key().to_encoded_point(false).as_bytes())
}

/// The `Authorization` header for a push to `origin` (`https://push.example:8443`).
pub fn authorization(key: &SigningKey, origin: &str, contact: &str, now_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": "ES256"}).to_string());
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"aud": origin, "exp": now_secs + VALID_SECS, "sub": contact}).to_string());
    let signed = format!("{header}.{claims}");
    let signature: Signature = key.sign(signed.as_bytes());
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    format!("vapid t={token}, k={}", public_key(key))
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::{Signature, VerifyingKey};

    use super::*;

    #[test]
    fn the_header_is_a_jwt_the_named_key_verifies_for_the_origin_with_its_port() {
        let key = new_key().unwrap_or_else(|e| panic!("{e}"));
        let header = authorization(&key, "http://127.0.0.1:9443", "mailto:me@example.com", 1_000);
        let (token, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap_or_else(|| panic!("{header}"));
        let public = URL_SAFE_NO_PAD.decode(k).unwrap_or_default();
        let verifier = VerifyingKey::from_sec1_bytes(&public).unwrap_or_else(|e| panic!("{e}"));
        let (signed, signature) = token.rsplit_once('.').unwrap_or_default();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(verifier.verify(signed.as_bytes(), &signature).is_ok());
        let claims = signed.split('.').nth(1).unwrap_or_default();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            claims,
            json!({"aud": "http://127.0.0.1:9443", "exp": 1_000 + VALID_SECS, "sub": "mailto:me@example.com"})
        );
        assert_eq!(public.len(), 65);
        assert_eq!(public_key(&key), k);
    }
}
