//! Fan-out: the deliveries one event produces, rendered and ready for the outbox.

use crate::engine::RuleSet;
use crate::event::Event;
use crate::lang::url::RenderContext;
use crate::lang::webhook::Secretish;
use crate::lang::{Webhook, ast::Method};
use crate::outbox::payload::envelope;
use crate::outbox::{NewDelivery, NewEvent, Payload, StoredHeader, new_delivery_id};

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

/// The event and every delivery it produces under the given rules.
pub fn fan_out(rules: &RuleSet, mut event: Event, default_attempts: u32) -> NewEvent {
    let id = event.id.get_or_insert_with(new_delivery_id).clone();
    let deliveries = rules
        .matching(&event)
        .map(|w| render(w, &event, default_attempts))
        .collect();
    NewEvent {
        id,
        kind: event.kind.wire_name(),
        body: event.to_json_string(),
        occurred_at: event.occurred_at.clone(),
        deliveries,
    }
}

/// The bytes a rendered delivery sends: for an envelope, rendered from the event as the outbox
/// renders it when it reads the delivery back.
pub fn body_of(delivery: &NewDelivery, event: &Event) -> Option<Vec<u8>> {
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
    use super::body_of;
    use crate::event::Event;
    use crate::outbox::{NewDelivery, Payload};

    #[test]
    fn an_envelope_body_wraps_the_event() {
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
        let body = body_of(&delivery, &event).expect("a body");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["delivery"], "d-1");
        assert_eq!(v["webhook"], "crm");
        assert_eq!(v["type"], "refund");
        assert_eq!(v["occurredAt"], "2026-01-01T00:00:00Z");
        assert_eq!(v["event"], event.to_json());
        delivery.body = Payload::Empty;
        assert_eq!(body_of(&delivery, &event), None);
    }
}
