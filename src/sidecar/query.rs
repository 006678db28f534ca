//! The admin API's query strings: the filter of
//! `GET /v1/deliveries?status=..&webhook=..&type=..&since=..&until=..&q=..&after=..&limit=..`.
//! Apart from the handler so that it can be tested (and fuzzed) without a listener.

use percent_encoding::percent_decode_str;

use crate::outbox::{DeliveryFilter, Status};

/// Why a query string was refused, in the words the client gets (with a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// Reads the delivery log's filter from a query string (without the `?`). Values are
/// percent-decoded, `+` standing for a space; unknown keys and empty values are ignored; `since`
/// and `until` are unix ms; `after` is a page's `next` (its last delivery id); `limit` is clamped to 1..=1000; a later key wins over an earlier one.
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
            "type" if !value.is_empty() => filter.event_type = Some(value),
            "q" if !value.is_empty() => filter.text = Some(value),
            "since" if !value.is_empty() => filter.since = Some(unix_ms(key, &value)?),
            "until" if !value.is_empty() => filter.until = Some(unix_ms(key, &value)?),
            "after" if !value.is_empty() => filter.after = Some(value),
            "limit" => match value.parse::<u32>() {
                Ok(n) => filter.limit = n.clamp(1, 1000),
                Err(_) => return Err(BadQuery("limit: expected a whole number".to_owned())),
            },
            _ => {}
        }
    }
    Ok(filter)
}

fn unix_ms(key: &str, value: &str) -> Result<i64, BadQuery> {
    value
        .parse::<i64>()
        .map_err(|_| BadQuery(format!("{key}: expected a time in unix milliseconds")))
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
    fn reads_the_consoles_keys() {
        let f = delivery_filter("type=refund&since=10&until=20&q=ORD-7%26x&after=abc%3Ad").unwrap();
        assert_eq!(f.event_type.as_deref(), Some("refund"));
        assert_eq!((f.since, f.until), (Some(10), Some(20)));
        assert_eq!(f.text.as_deref(), Some("ORD-7&x"));
        assert_eq!(f.after.as_deref(), Some("abc:d"));
        let f = delivery_filter("type=&q=&since=&until=&after=").unwrap();
        assert_eq!(f, DeliveryFilter::default());
        assert_eq!(
            delivery_filter("since=yesterday").unwrap_err().0,
            "since: expected a time in unix milliseconds"
        );
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
