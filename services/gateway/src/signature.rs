//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw
//! body under the webhook secret. Checked before anything reads the body, in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Whether `header` is the signature of `body` under `secret`. A missing prefix, bad hex or
/// wrong length is simply not a match.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(given) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::verify;

    /// GitHub's published test vector.
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_test_vector_verifies_and_any_change_does_not() {
        assert!(verify(SECRET, BODY, SIGNATURE));
        assert!(!verify(SECRET, b"Hello, World?", SIGNATURE), "another body");
        assert!(!verify(b"another secret", BODY, SIGNATURE), "another secret");
        assert!(!verify(SECRET, BODY, &SIGNATURE.replace("sha256=", "sha1=")));
        assert!(
            !verify(SECRET, BODY, &SIGNATURE[..SIGNATURE.len() - 2]),
            "cut short"
        );
        assert!(!verify(SECRET, BODY, &SIGNATURE.replace('7', "g")), "not hex");
        assert!(!verify(SECRET, BODY, ""));
    }
}
