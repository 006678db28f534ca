//! Who may use the listeners: bearer tokens, compared in constant time (ingest and admin).

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

/// Whether two tokens are equal, in time that depends on neither's content nor length: both
/// are hashed to fixed-size digests first, and every byte of those is compared.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The token of an `Authorization: Bearer <token>` header (the scheme's name in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Whether the request carries `Authorization: Bearer <expected>`; always true when no token
/// is required.
pub fn bearer_matches(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    bearer(headers).is_some_and(|given| tokens_match(given, expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        for other in [&b""[..], b"s3cre", b"s3cret0", b"S3cret", b"t3cret"] {
            assert!(!tokens_match(other, b"s3cret"), "{other:?}");
        }
    }

    #[test]
    fn bearer_reads_the_scheme_in_any_case() {
        assert_eq!(bearer(&with_auth("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&with_auth("BEARER abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&with_auth("Basic abc")), None);
        assert_eq!(bearer(&with_auth("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
        assert!(bearer_matches(&HeaderMap::new(), None));
        assert!(!bearer_matches(&HeaderMap::new(), Some("abc")));
        assert!(bearer_matches(&with_auth("Bearer abc"), Some("abc")));
    }
}
