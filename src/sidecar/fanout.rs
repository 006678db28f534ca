//! Fan-out: the deliveries one event produces, rendered and ready for the outbox.

use serde_json::json;

use crate::engine::RuleSet;
use crate::event::Event;
use crate::lang::url::RenderContext;
use crate::lang::webhook::Secretish;
use crate::lang::{Webhook, ast::Method};
use crate::outbox::{NewDelivery, NewEvent, StoredHeader, new_delivery_id};

/// The JSON body a POST webhook receives: the delivery, the webhook and the whole event.
/// `event_json` is the event in the wire format, serialised once for all its deliveries.
pub fn envelope(delivery_id: &str, webhook: &str, event: &Event, event_json: &str) -> String {
    let head = json!({
        "delivery": delivery_id,
        "webhook": webhook,
        "type": event.kind.wire_name(),
        "occurredAt": event.occurred_at,
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

/// Renders one webhook's request for one event. `default_attempts` applies when the rule sets
/// no `retries` (it is the retry schedule's length plus the first attempt).
pub fn render(
    webhook: &Webhook,
    event: &Event,
    event_json: &str,
    default_attempts: u32,
) -> NewDelivery {
    let id = new_delivery_id();
    let request = &webhook.request;
    let url = request.url.render(&RenderContext {
        event,
        webhook: &webhook.name,
        delivery: &id,
    });
    let body = match request.method {
        Method::Post => Some(envelope(&id, &webhook.name, event, event_json).into_bytes()),
        Method::Get => None,
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
    let body = event.to_json_string();
    let deliveries = rules
        .matching(&event)
        .map(|w| render(w, &event, &body, default_attempts))
        .collect();
    NewEvent {
        id,
        kind: event.kind.wire_name(),
        body,
        deliveries,
    }
}

#[cfg(test)]
mod tests {
    use super::envelope;
    use crate::event::Event;

    #[test]
    fn the_envelope_is_one_json_object_around_the_event() {
        let event = Event::from_json_str(
            r#"{"id":"e1","type":"refund","occurredAt":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let body = envelope("d-1", "crm", &event, &event.to_json_string());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["delivery"], "d-1");
        assert_eq!(v["webhook"], "crm");
        assert_eq!(v["type"], "refund");
        assert_eq!(v["occurredAt"], "2026-01-01T00:00:00Z");
        assert_eq!(v["event"], event.to_json());
    }
}
