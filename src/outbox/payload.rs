//! Delivery bodies: bytes stored as they are, or the envelope a POST sends, rendered from the
//! stored event when the delivery is read, so an event is stored once however many webhooks
//! it fires.

use serde_json::json;

/// What a new delivery sends as its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// No body (a GET).
    Empty,
    /// These bytes, stored with the delivery.
    Bytes(Vec<u8>),
    /// The [`envelope`] around the delivery's event. Only the choice is stored; the body is
    /// rendered from the event's stored JSON each time the delivery is read, byte for byte the
    /// same on every attempt.
    Envelope,
}

/// The JSON body a POST webhook receives: the delivery, the webhook, the event's type and
/// time, and the whole event (`event_json`, in the wire format).
pub fn envelope(
    delivery_id: &str,
    webhook: &str,
    kind: &str,
    occurred_at: Option<&str>,
    event_json: &str,
) -> String {
    let head = json!({
        "delivery": delivery_id,
        "webhook": webhook,
        "type": kind,
        "occurredAt": occurred_at,
    })
    .to_string();
    // `head` is a JSON object: reopen it to add the pre-serialised event.
    let mut body = String::with_capacity(head.len() + event_json.len() + 10);
    body.push_str(&head[..head.len() - 1]);
    body.push_str(",\"event\":");
    body.push_str(event_json);
    body.push('}');
    body
}

#[cfg(test)]
mod tests {
    use super::envelope;

    #[test]
    fn the_envelope_is_one_json_object_around_the_event() {
        let event = r#"{"id":"e1","type":"refund","occurredAt":"2026-01-01T00:00:00Z"}"#;
        let body = envelope("d-1", "crm", "refund", Some("2026-01-01T00:00:00Z"), event);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["delivery"], "d-1");
        assert_eq!(v["webhook"], "crm");
        assert_eq!(v["type"], "refund");
        assert_eq!(v["occurredAt"], "2026-01-01T00:00:00Z");
        assert_eq!(
            v["event"],
            serde_json::from_str::<serde_json::Value>(event).unwrap()
        );
        let none = envelope("d-2", "crm", "conversion", None, "{}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&none).unwrap()["occurredAt"],
            serde_json::Value::Null
        );
    }
}
