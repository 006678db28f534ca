//! Rendering: one webhook's request for one event (URL tokens, headers by reference, body
//! choice), and the bytes a delivery's body sends (the envelope around the event).

use serde_json::json;

use crate::event::Event;
use crate::lang::url::RenderContext;
use crate::lang::webhook::Secretish;
use crate::lang::{Webhook, ast::Method};
use crate::outbox::{
    Delivery, NewDelivery, Payload, StoredBody, StoredEvent, StoredHeader, new_delivery_id,
};

/// Renders one webhook's request for one event. `default_attempts` applies when the rule sets
/// no `retries` (it is the retry schedule's length plus the first attempt).
pub fn render(webhook: &Webhook, event: &Event, default_attempts: u32) -> NewDelivery {
    let id = new_delivery_id();
    let request = &webhook.request;
    let url = request.url.render(&RenderContext {
        event,
        webhook: &webhook.name,
        delivery: &id,
    });
    let body = match request.method {
        Method::Post => Payload::Envelope,
        Method::Get => Payload::Empty,
    };
    let headers = request
        .headers
        .iter()
        .map(|h| match &h.value {
            Secretish::Literal(value) => StoredHeader::Literal {
                name: h.name.clone(),
                value: value.clone(),
            },
            // Values from the environment stay there: the store keeps the variable's name.
            Secretish::Env { var, .. } => StoredHeader::Env {
                name: h.name.clone(),
                env: var.clone(),
            },
        })
        .collect();
    let secret_env = request.secret.as_ref().and_then(|s| match s {
        Secretish::Env { var, .. } => Some(var.clone()),
        Secretish::Literal(_) => None,
    });
    NewDelivery {
        id,
        webhook: webhook.name.clone(),
        method: request.method.as_http().to_owned(),
        url,
        headers,
        body,
        secret_env,
        timeout_ms: request.timeout.as_millis() as u64,
        max_attempts: request.retries.map_or(default_attempts, |r| r + 1),
    }
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

/// The bytes a stored delivery sends, `None` for no body.
pub fn stored_body(delivery: &Delivery) -> Option<Vec<u8>> {
    match &delivery.body {
        StoredBody::Empty => None,
        StoredBody::Bytes(bytes) => Some(bytes.clone()),
        StoredBody::Envelope(StoredEvent {
            kind,
            occurred_at,
            json,
        }) => Some(
            envelope(
                &delivery.id,
                &delivery.webhook,
                kind,
                occurred_at.as_deref(),
                json,
            )
            .into_bytes(),
        ),
    }
}

/// The bytes a freshly rendered delivery sends for `event`: the same as [`stored_body`] gives
/// once the delivery is stored.
pub fn new_body(delivery: &NewDelivery, event: &Event) -> Option<Vec<u8>> {
    match &delivery.body {
        Payload::Empty => None,
        Payload::Bytes(bytes) => Some(bytes.clone()),
        Payload::Envelope => Some(
            envelope(
                &delivery.id,
                &delivery.webhook,
                &event.kind.wire_name(),
                event.occurred_at.as_deref(),
                &event.to_json_string(),
            )
            .into_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_keeps_integers_integers() {
        let event = Event::from_json_str(
            r#"{"type":"conversion","qualityScore":82,"revenue":79.90,"conversionCount":1}"#,
        )
        .unwrap();
        let body = envelope("d-1", "crm", "conversion", None, &event.to_json_string());
        for part in [
            r#""qualityScore":82,"#,
            r#""revenue":79.9,"#,
            r#""conversionCount":1,"#,
        ] {
            assert!(body.contains(part), "{part} in {body}");
        }
    }

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

    #[test]
    fn a_new_envelope_body_wraps_the_event() {
        let event = Event::from_json_str(
            r#"{"id":"e1","type":"refund","occurredAt":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let mut delivery = NewDelivery {
            id: "d-1".into(),
            webhook: "crm".into(),
            method: "POST".into(),
            url: "https://x.test/".into(),
            headers: Vec::new(),
            body: Payload::Envelope,
            secret_env: None,
            timeout_ms: 5000,
            max_attempts: 1,
        };
        let body = new_body(&delivery, &event).expect("a body");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["delivery"], "d-1");
        assert_eq!(v["webhook"], "crm");
        assert_eq!(v["type"], "refund");
        assert_eq!(v["occurredAt"], "2026-01-01T00:00:00Z");
        assert_eq!(v["event"], event.to_json());
        delivery.body = Payload::Empty;
        assert_eq!(new_body(&delivery, &event), None);
    }
}
