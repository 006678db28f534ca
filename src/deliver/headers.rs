//! The header set every attempt carries: content type, user agent, idempotency key, the rule's
//! headers and the Standard Webhooks signature.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::lang::headers::{Owner, reserved};

use super::sign::{Secret, sign};

/// The `User-Agent` of every attempt: `whc/<version>`.
pub const USER_AGENT: &str = concat!("whc/", env!("CARGO_PKG_VERSION"));

/// The header that marks a test send (`whc test`, the admin Test button): `Whc-Test: true`.
pub const TEST_HEADER: &str = "Whc-Test";

/// Whether [`AttemptHeaders::build`] drops a rule's header of this name (ignoring case): the
/// delivery's identity, signature and test marker ([`Owner::Delivery`] in the one table of
/// reserved headers, [`crate::lang::headers::RESERVED_HEADERS`], which the checker refuses whole).
pub fn is_reserved(name: &str) -> bool {
    reserved(name).is_some_and(|h| h.owner == Owner::Delivery)
}

/// Everything the headers of one attempt depend on.
#[derive(Debug, Clone, Copy)]
pub struct AttemptHeaders<'a> {
    /// The delivery's id: `Idempotency-Key` and `webhook-id`, the same on every retry.
    pub delivery_id: &'a str,
    /// The rule's own headers, in order.
    pub rule_headers: &'a [(String, String)],
    /// The rule's signing secret, if it has one.
    pub secret: Option<&'a Secret>,
    /// Unix seconds for `webhook-timestamp`; the time of this attempt, see [`unix_now`].
    pub timestamp: i64,
    /// The body that will be sent (POST), or `None` (GET).
    pub body: Option<&'a [u8]>,
    /// Mark the request as a test with `Whc-Test: true`.
    pub test: bool,
}

impl AttemptHeaders<'_> {
    /// The headers in sending order.
    ///
    /// `Content-Type: application/json` (with a body), `User-Agent`, `Idempotency-Key`, then the
    /// rule's headers: one named like `Content-Type` or `User-Agent` replaces the default, one
    /// that [`is_reserved`] is dropped (the checker refuses all of these in rules). With a secret, `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` follow (a GET signs the empty body); `Whc-Test` comes last.
    pub fn build(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::with_capacity(8 + self.rule_headers.len());
        if self.body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        headers.push(("User-Agent".into(), USER_AGENT.into()));
        headers.push(("Idempotency-Key".into(), self.delivery_id.into()));
        for (name, value) in self.rule_headers {
            if is_reserved(name) {
                continue;
            }
            headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        if let Some(secret) = self.secret {
            let body = self.body.unwrap_or_default();
            let signature = sign(secret, self.delivery_id, self.timestamp, body);
            headers.push(("webhook-id".into(), self.delivery_id.into()));
            headers.push(("webhook-timestamp".into(), self.timestamp.to_string()));
            headers.push(("webhook-signature".into(), signature));
        }
        if self.test {
            headers.push((TEST_HEADER.into(), "true".into()));
        }
        headers
    }
}

/// Headers ready to show a person (`whc test`, logs): values of credential-like headers
/// (`Authorization`, `Cookie`, names with `token`, `secret`, `password`, `api-key`/`apikey`) are
/// replaced by `***`, keeping an `Authorization` scheme such as `Bearer`.
pub fn masked(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if !is_sensitive(name) {
                value.clone()
            } else if let Some((scheme, _)) = value.split_once(' ') {
                format!("{scheme} ***")
            } else {
                "***".into()
            };
            (name.clone(), value)
        })
        .collect()
}

/// Whether a header name looks like it carries a credential.
fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || [
        "token", "secret", "password", "api-key", "apikey", "api_key",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The current time in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::sign::verify;

    fn names(headers: &[(String, String)]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn post_with_secret_is_signed() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let rule = vec![("X-Team".to_string(), "growth".to_string())];
        let headers = AttemptHeaders {
            delivery_id: "dlv_1",
            rule_headers: &rule,
            secret: Some(&secret),
            timestamp: 1_700_000_000,
            body: Some(b"{}"),
            test: false,
        }
        .build();
        assert_eq!(
            names(&headers),
            [
                "Content-Type",
                "User-Agent",
                "Idempotency-Key",
                "X-Team",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature"
            ]
        );
        assert_eq!(headers[1].1, USER_AGENT);
        assert!(USER_AGENT.starts_with("whc/"));
        assert_eq!(headers[2].1, "dlv_1");
        assert_eq!(headers[5].1, "1700000000");
        assert!(verify(
            &secret,
            "dlv_1",
            1_700_000_000,
            b"{}",
            &headers[6].1
        ));
    }

    #[test]
    fn get_without_secret_has_no_content_type_and_test_marker_last() {
        let headers = AttemptHeaders {
            delivery_id: "dlv_2",
            rule_headers: &[],
            secret: None,
            timestamp: 0,
            body: None,
            test: true,
        }
        .build();
        assert_eq!(
            names(&headers),
            ["User-Agent", "Idempotency-Key", "Whc-Test"]
        );
        assert_eq!(headers[2].1, "true");
    }

    #[test]
    fn rule_headers_replace_defaults_but_not_reserved_ones() {
        let rule = vec![
            ("content-type".to_string(), "text/plain".to_string()),
            ("Idempotency-Key".to_string(), "forged".to_string()),
            ("Webhook-Signature".to_string(), "forged".to_string()),
        ];
        let headers = AttemptHeaders {
            delivery_id: "dlv_3",
            rule_headers: &rule,
            secret: None,
            timestamp: 0,
            body: Some(b"x"),
            test: false,
        }
        .build();
        assert_eq!(
            headers,
            [
                ("User-Agent".to_string(), USER_AGENT.to_string()),
                ("Idempotency-Key".to_string(), "dlv_3".to_string()),
                ("content-type".to_string(), "text/plain".to_string()),
            ]
        );
    }

    #[test]
    fn the_test_marker_is_reserved() {
        assert!(is_reserved(TEST_HEADER));
        assert!(is_reserved("IDEMPOTENCY-KEY"));
        assert!(!is_reserved("User-Agent"), "a default, not dropped");
    }

    #[test]
    fn masks_credentials_but_not_the_rest() {
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        let shown = masked(&[
            pair("Authorization", "Bearer abc123"),
            pair("X-Api-Key", "k"),
            pair("X-Auth-Token", "t"),
            pair("Idempotency-Key", "dlv_1"),
            pair("webhook-signature", "v1,abc"),
        ]);
        assert_eq!(
            shown,
            [
                pair("Authorization", "Bearer ***"),
                pair("X-Api-Key", "***"),
                pair("X-Auth-Token", "***"),
                pair("Idempotency-Key", "dlv_1"),
                pair("webhook-signature", "v1,abc"),
            ]
        );
    }

    #[test]
    fn clock_is_after_1970() {
        assert!(unix_now() > 1_600_000_000);
    }
}
