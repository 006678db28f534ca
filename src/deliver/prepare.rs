//! Turning a stored delivery into the request of one attempt: environment values resolved,
//! standard headers added, signed.

use std::time::Duration;

use bytes::Bytes;

use crate::lang::Env;
use crate::outbox::{Delivery, NewDelivery, StoredHeader};

use super::client::OutgoingRequest;
use super::headers::{AttemptHeaders, unix_now};
use super::sign::Secret;

/// What is needed to build one attempt, borrowed from a stored or freshly rendered delivery.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    /// The delivery id (idempotency key, `webhook-id`).
    pub id: &'a str,
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The rendered URL.
    pub url: &'a str,
    /// The rule's headers, environment values by reference.
    pub headers: &'a [StoredHeader],
    /// The body, for a POST.
    pub body: Option<&'a [u8]>,
    /// The variable holding the signing secret.
    pub secret_env: Option<&'a str>,
    /// The attempt's deadline.
    pub timeout_ms: u64,
    /// A real delivery, or a test send marked `Whc-Test: true`.
    pub purpose: Purpose,
}

/// Why a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An attempt at a stored delivery.
    Delivery,
    /// A test send (`whc test`, the admin Test button), marked `Whc-Test: true`.
    Test,
}

impl<'a> Draft<'a> {
    /// The next attempt at a stored delivery, sending `body` (see
    /// [`stored_body`](super::stored_body)).
    pub fn stored(delivery: &'a Delivery, body: Option<&'a [u8]>) -> Draft<'a> {
        Draft {
            id: &delivery.id,
            method: &delivery.method,
            url: &delivery.url,
            headers: &delivery.headers,
            body,
            secret_env: delivery.secret_env.as_deref(),
            timeout_ms: delivery.timeout_ms,
            purpose: Purpose::Delivery,
        }
    }

    /// A test send of a freshly rendered delivery, sending `body` (see
    /// [`new_body`](super::new_body)).
    pub fn test(delivery: &'a NewDelivery, body: Option<&'a [u8]>) -> Draft<'a> {
        Draft {
            id: &delivery.id,
            method: &delivery.method,
            url: &delivery.url,
            headers: &delivery.headers,
            body,
            secret_env: delivery.secret_env.as_deref(),
            timeout_ms: delivery.timeout_ms,
            purpose: Purpose::Test,
        }
    }
}

/// A request ready to send, and its headers as they may be shown to a person.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The request.
    pub request: OutgoingRequest,
    /// The same headers, values from the environment masked.
    pub shown_headers: Vec<(String, String)>,
}

/// Why a delivery cannot be sent at all (retrying cannot help until the set-up changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// The signing secret's variable is not set: whc never sends unsigned instead.
    #[error("signing secret `{0}` is not set; not sending unsigned")]
    SecretUnset(String),
    /// The stored method is not an HTTP method (a damaged or hand-edited store).
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    /// The signing secret is not usable.
    #[error("signing secret in `{var}` is not usable: {reason}")]
    SecretInvalid {
        /// The variable.
        var: String,
        /// Why.
        reason: String,
    },
}

/// Shown instead of a value that came from the environment.
pub const MASK: &str = "••••••";

/// Builds one attempt's request.
pub fn prepare(draft: &Draft<'_>, env: &dyn Env) -> Result<Prepared, PrepareError> {
    let method = hyper::Method::from_bytes(draft.method.as_bytes())
        .map_err(|_| PrepareError::Method(draft.method.to_owned()))?;
    let mut rule_headers = Vec::with_capacity(draft.headers.len());
    let mut masked = Vec::new();
    for h in draft.headers {
        match h {
            StoredHeader::Literal { name, value } => {
                rule_headers.push((name.clone(), value.clone()))
            }
            StoredHeader::Env { name, env: var } => match env.var(var) {
                Some(value) => {
                    masked.push(name.clone());
                    rule_headers.push((name.clone(), value));
                }
                None => {
                    tracing::warn!(header = %name, %var, "environment variable not set; header left out")
                }
            },
        }
    }
    let secret = match draft.secret_env {
        None => None,
        Some(var) => match env.var(var) {
            None => return Err(PrepareError::SecretUnset(var.to_owned())),
            Some(text) => Some(
                Secret::parse(&text).map_err(|e| PrepareError::SecretInvalid {
                    var: var.to_owned(),
                    reason: e.to_string(),
                })?,
            ),
        },
    };
    let headers = AttemptHeaders {
        delivery_id: draft.id,
        rule_headers: &rule_headers,
        secret: secret.as_ref(),
        timestamp: unix_now(),
        body: draft.body,
        test: draft.purpose == Purpose::Test,
    }
    .build();
    let shown_headers = headers
        .iter()
        .map(|(n, v)| {
            let secret = masked.iter().any(|m| m.eq_ignore_ascii_case(n));
            (n.clone(), if secret { MASK.to_owned() } else { v.clone() })
        })
        .collect();
    Ok(Prepared {
        request: OutgoingRequest {
            method,
            url: draft.url.to_owned(),
            headers,
            body: draft.body.map(Bytes::copy_from_slice),
            timeout: Duration::from_millis(draft.timeout_ms),
        },
        shown_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::ProcessEnv;

    fn draft(method: &str) -> Draft<'_> {
        Draft {
            id: "d-1",
            method,
            url: "http://127.0.0.1:9/",
            headers: &[],
            body: None,
            secret_env: None,
            timeout_ms: 1000,
            purpose: Purpose::Delivery,
        }
    }

    #[test]
    fn a_stored_method_that_does_not_parse_is_refused_not_sent_as_post() {
        let err = prepare(&draft("PO ST"), &ProcessEnv).expect_err("not a method");
        assert_eq!(err, PrepareError::Method("PO ST".into()));
        let ok = prepare(&draft("GET"), &ProcessEnv).expect("a method");
        assert_eq!(ok.request.method, hyper::Method::GET);
    }

    #[test]
    fn only_a_test_send_is_marked() {
        let marked = |purpose| {
            let draft = Draft {
                purpose,
                ..draft("POST")
            };
            let prepared = prepare(&draft, &ProcessEnv).expect("prepared");
            prepared
                .request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(crate::deliver::TEST_HEADER))
        };
        assert!(marked(Purpose::Test));
        assert!(!marked(Purpose::Delivery));
    }
}
