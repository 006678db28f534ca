//! Standard Webhooks signing: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
//!
//! See <https://www.standardwebhooks.com>; receivers verify with that project's libraries.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a Standard Webhooks secret: `whsec_` then the base64 key.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook's signing key.
///
/// Written `whsec_<base64>` as the spec gives it, the key is the decoded bytes. A string without
/// the prefix is used as is (its UTF-8 bytes), for receivers that were handed a plain password.
/// `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text after `whsec_` is not base64.
    #[error("the secret after `whsec_` is not valid base64")]
    NotBase64,
    /// The key is empty, which would sign with a key anyone knows.
    #[error("the secret is empty")]
    Empty,
}

impl Secret {
    /// Reads a secret as written in a rule: `whsec_<base64>` or a plain string.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let key = match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?,
            None => text.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// A secret from raw key bytes.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// The secret in its `whsec_<base64>` form, for handing to a receiver.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// A MAC over the signed content, ready to finalize or verify.
    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail; an empty key is refused earlier.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl FromStr for Secret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>` over
/// `"{msg_id}.{timestamp}.{body}"`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", BASE64.encode(tag))
}

/// Whether any of the space-separated signatures in a `webhook-signature` value is a valid
/// `v1` signature of the message. Compares in constant time; ignores other versions.
///
/// It does not check the timestamp's age: a receiver guarding against replays should also
/// refuse timestamps far from its clock (the spec suggests 5 minutes).
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signatures: &str,
) -> bool {
    signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .any(|tag| {
            secret
                .mac(msg_id, timestamp, body)
                .verify_slice(&tag)
                .is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_spec_example() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(&secret, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        assert_eq!(secret.to_whsec(), SPEC_SECRET);
    }

    #[test]
    fn verifies_any_of_several_signatures() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let other = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let header = format!("v2,xyz {other} {SPEC_SIGNATURE}");
        assert!(verify(&secret, SPEC_ID, SPEC_TS, SPEC_BODY, &header));
        assert!(!verify(&secret, SPEC_ID, SPEC_TS, SPEC_BODY, other));
        assert!(!verify(
            &secret,
            SPEC_ID,
            SPEC_TS + 1,
            SPEC_BODY,
            SPEC_SIGNATURE
        ));
        assert!(!verify(
            &secret,
            "msg_other",
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE
        ));
        assert!(!verify(&secret, SPEC_ID, SPEC_TS, b"{}", SPEC_SIGNATURE));
        assert!(!verify(&secret, SPEC_ID, SPEC_TS, SPEC_BODY, ""));
        assert!(!verify(
            &secret,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            "v1,not base64!"
        ));
    }

    #[test]
    fn plain_secrets_use_their_bytes() {
        let plain = Secret::parse("hunter2").unwrap();
        assert_eq!(plain, Secret::from_bytes(b"hunter2".to_vec()).unwrap());
        let signature = sign(&plain, "id", 1, b"x");
        assert!(verify(&plain, "id", 1, b"x", &signature));
    }

    #[test]
    fn refuses_bad_secrets_and_hides_keys() {
        assert_eq!(Secret::parse("whsec_%%%"), Err(SecretError::NotBase64));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        assert_eq!(Secret::parse(""), Err(SecretError::Empty));
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
