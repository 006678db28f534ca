//! Ingest: the one way events get in, whatever carried them. Parses whc's JSON event (or takes
//! events a source already mapped), matches them against the rules being served, and stores
//! each with its deliveries in one commit. It knows nothing of HTTP: each way in turns
//! [`accept`]'s typed answer into its own.

use std::sync::Arc;

use crate::deliver::render;
use crate::engine::RuleSet;
use crate::event::strict::{self, Doc, Step, StrictJsonError};
use crate::event::{Event, EventError, describe_doc};
use crate::outbox::{NewEvent, new_delivery_id};
use crate::store::{Store, StoreError};

use super::metrics::Metrics;
use super::rules::LiveRules;

/// What an event post's body held that is not a valid event, in the words the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", if key.is_empty() { "body" } else { key.as_str() },
    index.map(|i| format!(" (event {i})")).unwrap_or_default())]
pub struct InvalidEvent {
    /// The JSON key at fault, such as `revenue` or `firstClick.country`; empty for the body.
    pub key: String,
    /// In an array, the position of the event at fault, from 0.
    pub index: Option<usize>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl InvalidEvent {
    fn new(key: impl Into<String>, index: Option<usize>, message: impl Into<String>) -> Self {
        InvalidEvent {
            key: key.into(),
            index,
            message: message.into(),
        }
    }
}

/// Why nothing was accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestFailure {
    /// The input is not a valid event (or array of them): the client must fix it.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The store could not commit: nothing was stored, the same input may be sent again.
    #[error("the events could not be stored: {0}")]
    Unavailable(#[source] StoreError),
}

/// What [`accept`] takes: whc's own JSON, or events a source already mapped.
#[derive(Debug)]
pub enum Input<'a> {
    /// One event object or a non-empty array of them, in whc's wire format.
    Json(&'a [u8]),
    /// Events already decoded.
    Events(Vec<Event>),
}

/// What was accepted: the rules that matched, and per event what it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The hash of the rule set every event of the input was matched against.
    pub rules: String,
    /// One entry per event, in input order.
    pub events: Vec<AcceptedEvent>,
}

/// One accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedEvent {
    /// The event id (the tracker's, or one whc made).
    pub id: String,
    /// The id had been accepted before: nothing new was stored or fired.
    pub duplicate: bool,
    /// The webhooks it fired (none for a duplicate).
    pub webhooks: Vec<String>,
    /// Its delivery ids: new ones, or for a duplicate those stored the first time.
    pub deliveries: Vec<String>,
}

/// What ingest needs from the sidecar.
#[derive(Clone)]
pub struct Ingest {
    /// The rules being served.
    pub rules: Arc<LiveRules>,
    /// The durable store.
    pub outbox: Store,
    /// Counters: accepted, duplicate and unstored events.
    pub metrics: Arc<Metrics>,
    /// Attempts a delivery gets when its rule sets no `retries`.
    pub default_attempts: u32,
}

impl Ingest {
    /// Parses (for JSON), matches and durably stores the input's events; answers only after the
    /// commit. All or nothing: an invalid event refuses the whole input, a store failure stores
    /// none of it. Counts accepted and duplicate events, and events the store failed to take;
    /// refusals of bad input are counted by the way in, which knows what it refused.
    pub async fn accept(&self, input: Input<'_>) -> Result<Accepted, IngestFailure> {
        let events = match input {
            Input::Json(body) => parse_events(body)?,
            Input::Events(events) => events,
        };
        // One rule set for the whole input: a reload in between cannot split it.
        let rules = self.rules.current();
        let batch: Vec<NewEvent> = events
            .into_iter()
            .map(|e| fan_out(&rules, e, self.default_attempts))
            .collect();
        let count = batch.len() as u64;
        let fired: Vec<Vec<String>> = batch
            .iter()
            .map(|e| e.deliveries.iter().map(|d| d.webhook.clone()).collect())
            .collect();
        let stored = match self.outbox.accept(batch).await {
            Ok(stored) => stored,
            Err(err) => {
                Metrics::add(&self.metrics.events_unstored, count);
                return Err(IngestFailure::Unavailable(err));
            }
        };
        let events = stored
            .into_iter()
            .zip(fired)
            .map(|(a, webhooks)| {
                let counter = if a.duplicate {
                    &self.metrics.events_duplicate
                } else {
                    &self.metrics.events_accepted
                };
                Metrics::bump(counter);
                AcceptedEvent {
                    webhooks: if a.duplicate { Vec::new() } else { webhooks },
                    id: a.id,
                    duplicate: a.duplicate,
                    deliveries: a.deliveries,
                }
            })
            .collect();
        Ok(Accepted {
            rules: rules.hash.clone(),
            events,
        })
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

/// Parses a post's body: one event object, or a non-empty JSON array of them. All or nothing:
/// the first bad event rejects the whole post, named by its index.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, InvalidEvent> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidEvent::new("", None, "the body is empty"));
    }
    // A `Doc`, not a `serde_json::Value`: keys and strings borrowed from the body, objects as
    // vectors (measured with callgrind: reading the event was a quarter of a post's cost).
    let value = strict::doc_from_slice(body).map_err(|e| match e {
        StrictJsonError::Syntax(e) => InvalidEvent::new("", None, format!("not valid JSON: {e}")),
        // In an array of events, the first step is the event's index.
        StrictJsonError::DuplicateKey(path) => {
            let error = |index, rest: &[Step]| {
                let e = EventError::duplicate_key(strict::dotted(rest));
                InvalidEvent::new(e.key, index, e.message)
            };
            match path.split_first() {
                Some((Step::Index(i), rest)) => error(Some(*i), rest),
                _ => error(None, &path),
            }
        }
    })?;
    match value {
        Doc::Array(items) if items.is_empty() => Err(InvalidEvent::new(
            "",
            None,
            "the array holds no events; post at least one",
        )),
        Doc::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Event::from_doc(item).map_err(|e| InvalidEvent::new(e.key, Some(i), e.message))
            })
            .collect(),
        Doc::Object(_) => Event::from_doc(&value)
            .map(|event| vec![event])
            .map_err(|e| InvalidEvent::new(e.key, None, e.message)),
        other => Err(InvalidEvent::new(
            "",
            None,
            format!(
                "expected an event object or an array of events, found {}",
                describe_doc(&other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn err(body: &str) -> InvalidEvent {
        parse_events(body.as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn one_event_object() {
        let events =
            parse_events(br#"{"type": "conversion", "id": "e1", "revenue": 12.5}"#).expect("valid");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Conversion);
        assert_eq!(events[0].id.as_deref(), Some("e1"));
    }

    #[test]
    fn array_of_events_in_order() {
        let events = parse_events(
            br#"[{"type": "refund", "id": 1}, {"type": "event", "eventNumber": 3, "id": 2}]"#,
        )
        .expect("valid");
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Refund, EventKind::Custom(3)]);
    }

    #[test]
    fn bad_json_says_where() {
        let e = err("{\"type\": \"conversion\",\n  \"revenue\": }");
        assert_eq!((e.key.as_str(), e.index), ("", None));
        assert!(e.message.contains("line 2 column"), "{}", e.message);
    }

    #[test]
    fn wrong_type_names_key_and_index() {
        let e = err(r#"[{"type": "conversion"}, {"type": "refund"},
                        {"type": "conversion", "revenue": true}]"#);
        assert_eq!((e.key.as_str(), e.index), ("revenue", Some(2)));
        assert!(e.message.contains("expected a number"), "{}", e.message);
    }

    #[test]
    fn a_repeated_key_names_the_key_and_the_index() {
        let e = err(r#"{"type": "conversion", "revenue": 1, "revenue": 900}"#);
        assert_eq!((e.key.as_str(), e.index), ("revenue", None));
        let e = err(r#"[{"type": "refund"},
                        {"type": "conversion", "firstClick": {"country": "US", "country": "DE"}}]"#);
        assert_eq!((e.key.as_str(), e.index), ("firstClick.country", Some(1)));
        assert!(e.message.contains("twice"), "{}", e.message);
    }

    #[test]
    fn wrong_type_in_single_event_has_no_index() {
        let e = err(r#"{"type": "conversion", "firstClick": {"country": 7}}"#);
        assert_eq!((e.key.as_str(), e.index), ("firstClick.country", None));
    }

    #[test]
    fn unknown_event_type() {
        let e = err(r#"{"type": "purchase"}"#);
        assert_eq!(e.key, "type");
    }

    #[test]
    fn empty_array_empty_body_and_scalars_are_refused() {
        for body in ["[]", "", "  \n", "42", "\"conversion\"", "null"] {
            let e = err(body);
            assert_eq!(e.key, "", "{body:?}: {e}");
        }
        let e = err(r#"[{"type": "refund"}, 5]"#);
        assert_eq!(e.index, Some(1));
    }
}
