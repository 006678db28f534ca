//! The admin API's query strings: the filter of `GET /v1/deliveries?status=..&webhook=..&limit=..`.
//! Apart from the handler so that it can be tested (and fuzzed) without a listener.

use percent_encoding::percent_decode_str;

use crate::outbox::{DeliveryFilter, Status};

/// Why a query string was refused, in the words the client gets (with a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// Reads the delivery log's filter from a query string (without the `?`). Values are
/// percent-decoded, `+` standing for a space; unknown keys and empty `status`/`webhook` values
/// are ignored; `limit` is clamped to 1..=1000; a later key wins over an earlier one.
pub fn delivery_filter(query: &str) -> Result<DeliveryFilter, BadQuery> {
    let mut filter = DeliveryFilter::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match key {
            "status" if !value.is_empty() => match value.parse::<Status>() {
                Ok(s) => filter.status = Some(s),
                Err(err) => return Err(BadQuery(err.to_string())),
            },
            "webhook" if !value.is_empty() => filter.webhook = Some(value),
            "limit" => match value.parse::<u32>() {
                Ok(n) => filter.limit = n.clamp(1, 1000),
                Err(_) => return Err(BadQuery("limit: expected a whole number".to_owned())),
            },
            _ => {}
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_decoded() {
        let f = delivery_filter("status=dead&webhook=big%20sales+eu&limit=5&other=1").unwrap();
        assert_eq!(f.status, Some(Status::Dead));
        assert_eq!(f.webhook.as_deref(), Some("big sales eu"));
        assert_eq!(f.limit, 5);
    }

    #[test]
    fn defaults_clamps_and_ignores() {
        let f = delivery_filter("").unwrap();
        assert_eq!((f.status, f.webhook, f.limit), (None, None, 100));
        let f = delivery_filter("&&status=&webhook=&limit=0").unwrap();
        assert_eq!((f.status, f.webhook, f.limit), (None, None, 1));
        assert_eq!(delivery_filter("limit=99999").unwrap().limit, 1000);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(
            delivery_filter("status=lost")
                .unwrap_err()
                .0
                .contains("lost")
        );
        assert_eq!(
            delivery_filter("limit=-1").unwrap_err().0,
            "limit: expected a whole number"
        );
        assert!(
            delivery_filter("limit").is_err(),
            "a bare `limit` has no number"
        );
    }
}
