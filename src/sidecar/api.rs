//! The events API on the tracker-facing listener: `POST /v1/events`, answered 202 once the
//! events and their deliveries are committed.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::event::write;

use super::State;
use super::body::{BodyError, read_limited};
use super::guard::bearer_matches;
use super::http::{Body, error, json, json_text};
use super::ingest::{Accepted, IngestFailure, Input, InvalidEvent};
use super::metrics::Metrics;

/// Handles one request on the events listener in direct mode.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/events") => post_events(&state, req).await,
        (_, "/v1/events") => error(StatusCode::METHOD_NOT_ALLOWED, "use POST /v1/events"),
        (_, path) if !path.starts_with("/v1/") => {
            // One rule set for the whole request: its sources and its webhooks.
            let rules = state.rules.current();
            match rules.sources().iter().position(|s| s.path == path) {
                Some(index) => super::postback::handle(&state, rules, index, req).await,
                None => error(
                    StatusCode::NOT_FOUND,
                    "not found; events go to POST /v1/events or a source's route",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not found; events go to POST /v1/events",
        ),
    }
}

async fn post_events(state: &State, req: Request<Incoming>) -> Response<Body> {
    if !bearer_matches(req.headers(), state.config.ingest_token.as_deref()) {
        Metrics::bump(&state.metrics.events_rejected);
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong `Authorization: Bearer` token",
        );
    }
    let body = match read_limited(
        req.into_body(),
        state.config.max_body,
        state.config.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(err) => {
            Metrics::bump(&state.metrics.events_rejected);
            return body_error(err);
        }
    };
    match state.ingest.accept(Input::Json(&body)).await {
        Ok(accepted) => json_text(StatusCode::ACCEPTED, accepted_body(&accepted)),
        Err(IngestFailure::Invalid(invalid)) => {
            Metrics::bump(&state.metrics.events_rejected);
            json(StatusCode::BAD_REQUEST, &invalid_json(&invalid))
        }
        Err(IngestFailure::Unavailable(err)) => {
            tracing::error!(%err, "cannot store events");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the events could not be stored; nothing was accepted, send them again",
            )
        }
    }
}

fn body_error(err: BodyError) -> Response<Body> {
    error(err.status(), err.to_string())
}

/// The 202 answer: the rules' hash and, per event, its id and what it fired. Written by hand,
/// byte for byte what serde_json wrote for the `Value` it once was (keys in that `Value`'s
/// sorted order), in a fraction of the instructions.
pub fn accepted_body(accepted: &Accepted) -> Vec<u8> {
    // Sized exactly for the answer without escapes (which ids and names seldom need): one
    // allocation, and a full one, which `Bytes` takes over without allocating again.
    let list = |items: &[String]| {
        2 + items.iter().map(|s| s.len() + 2).sum::<usize>() + items.len().saturating_sub(1)
    };
    let size = accepted
        .events
        .iter()
        .map(|e| {
            let duplicate = if e.duplicate { 4 } else { 5 };
            48 + duplicate + e.id.len() + list(&e.deliveries) + list(&e.webhooks)
        })
        .sum::<usize>();
    let commas = accepted.events.len().saturating_sub(1);
    let mut out = String::with_capacity(24 + accepted.rules.len() + size + commas);
    out.push_str("{\"events\":[");
    for (i, event) in accepted.events.iter().enumerate() {
        out.push_str(if i == 0 { "{" } else { ",{" });
        out.push_str("\"deliveries\":");
        string_list(&mut out, &event.deliveries);
        out.push_str(if event.duplicate {
            ",\"duplicate\":true,\"id\":"
        } else {
            ",\"duplicate\":false,\"id\":"
        });
        write::string(&mut out, &event.id);
        out.push_str(",\"webhooks\":");
        string_list(&mut out, &event.webhooks);
        out.push('}');
    }
    out.push_str("],\"rules\":");
    write::string(&mut out, &accepted.rules);
    out.push('}');
    out.into_bytes()
}

/// A JSON array of strings.
fn string_list(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write::string(out, item);
    }
    out.push(']');
}

/// The 400 answer: `{"error": "...", "key": "revenue", "index": 2}` (no `index` for a single
/// event).
pub fn invalid_json(invalid: &InvalidEvent) -> serde_json::Value {
    let mut body = json!({ "error": invalid.message, "key": invalid.key });
    if let Some(i) = invalid.index {
        body["index"] = json!(i);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::ingest::AcceptedEvent;
    use proptest::prelude::*;

    /// The answer as serde_json wrote it before `accepted_body` was written by hand.
    fn by_serde(accepted: &Accepted) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            events: Vec<Event<'a>>,
            rules: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Event<'a> {
            deliveries: &'a [String],
            duplicate: bool,
            id: &'a str,
            webhooks: &'a [String],
        }
        let answer = Answer {
            events: accepted
                .events
                .iter()
                .map(|e| Event {
                    deliveries: &e.deliveries,
                    duplicate: e.duplicate,
                    id: &e.id,
                    webhooks: &e.webhooks,
                })
                .collect(),
            rules: &accepted.rules,
        };
        serde_json::to_vec(&answer).unwrap()
    }

    #[test]
    fn the_accepted_answer_is_the_json_it_was() {
        let accepted = Accepted {
            rules: "abc".into(),
            events: vec![AcceptedEvent {
                id: "e\"1".into(),
                duplicate: false,
                webhooks: vec!["crm".into()],
                deliveries: vec!["d1".into()],
            }],
        };
        let old = json!({ "rules": "abc", "events": [{
            "id": "e\"1", "duplicate": false, "webhooks": ["crm"], "deliveries": ["d1"],
        }]});
        assert_eq!(accepted_body(&accepted), old.to_string().into_bytes());
        assert_eq!(accepted_body(&accepted), by_serde(&accepted));
    }

    fn awkward() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9-]{0,40}",
            r#"["\\\n\x00\x1f\x7f\u{2028}é😀a]{0,20}"#,
            any::<String>(),
        ]
    }

    prop_compose! {
        fn any_accepted_event()(
            id in awkward(),
            duplicate in any::<bool>(),
            webhooks in proptest::collection::vec(awkward(), 0..4),
            deliveries in proptest::collection::vec(awkward(), 0..4),
        ) -> AcceptedEvent {
            AcceptedEvent { id, duplicate, webhooks, deliveries }
        }
    }

    proptest! {
        #[test]
        fn any_accepted_answer_is_what_serde_wrote(
            rules in awkward(),
            events in proptest::collection::vec(any_accepted_event(), 0..4),
        ) {
            let accepted = Accepted { rules, events };
            let body = accepted_body(&accepted);
            prop_assert_eq!(&body, &by_serde(&accepted));
            // Without escapes, sized exactly: `Bytes` takes it over with no second allocation.
            if !body.contains(&b'\\') {
                prop_assert_eq!(body.len(), body.capacity());
            }
        }
    }

    #[test]
    fn an_invalid_event_names_its_key_and_index() {
        let invalid = InvalidEvent {
            key: "revenue".into(),
            index: Some(2),
            message: "expected a number".into(),
        };
        assert_eq!(
            invalid_json(&invalid),
            json!({"error": "expected a number", "key": "revenue", "index": 2})
        );
        let single = InvalidEvent {
            index: None,
            ..invalid
        };
        assert!(invalid_json(&single).get("index").is_none());
    }
}
