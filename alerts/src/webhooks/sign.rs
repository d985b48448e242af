//! The signatures of a delivery, two of them so that a receiver verifies with whichever it has:
//!
//! - geotrack's: `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, sent in
//!   `X-Geotrack-Signature` with the Unix time in `X-Geotrack-Timestamp`;
//! - Standard Webhooks' (<https://www.standardwebhooks.com>, verified by the stock libraries):
//!   `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` in `webhook-signature`, with
//!   `webhook-id` and `webhook-timestamp`. The key is the secret's bytes after `whsec_`,
//!   base64-decoded, when the secret has that form; otherwise the secret's own bytes (give the
//!   receiver's library `whsec_` + base64 of the secret).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The Standard Webhooks key of a configured secret.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` value for message `id` with `body`, sent at Unix time `timestamp`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The signature header value for a body sent at Unix time `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut header = String::with_capacity(3 + 2 * digest.len());
    header.push_str("v1=");
    for byte in digest {
        let _ = write!(header, "{byte:02x}");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signatures_match_the_specifications_example() {
        // The example of the Standard Webhooks specification.
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            standard_signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(standard_key("hook-secret"), b"hook-secret");
        assert_eq!(standard_key("whsec_not base64!"), b"whsec_not base64!");
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // Reference value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(
            signature(b"secret", 1_700_000_001, br#"{"a":1}"#),
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#)
        );
    }
}
