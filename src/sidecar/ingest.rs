//! Ingest: the one way events get in, whatever carried them. Parses whc's JSON event (or takes
//! events a source already mapped), matches them against the rules being served, and stores
//! each with its deliveries in one commit. It knows nothing of HTTP: each way in turns
//! [`accept`]'s typed answer into its own.

use std::sync::Arc;

use crate::deliver::render;
use crate::engine::RuleSet;
use crate::event::decode::{self, BodyError};
use crate::event::strict::{self, Step, StrictJsonError};
use crate::event::{Event, EventError};
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
        let mut batch = Vec::with_capacity(events.len());
        // The answer, made now: what each event fired is known before it is stored (its id and
        // delivery ids are filled in from the store's answer).
        let mut answer = Vec::with_capacity(events.len());
        for event in events {
            let event = fan_out(&rules, event, self.default_attempts);
            answer.push(AcceptedEvent {
                id: String::new(),
                duplicate: false,
                webhooks: event.deliveries.iter().map(|d| d.webhook.clone()).collect(),
                deliveries: Vec::new(),
            });
            batch.push(event);
        }
        let count = batch.len() as u64;
        let stored = match self.outbox.accept(batch).await {
            Ok(stored) => stored,
            Err(err) => {
                Metrics::add(&self.metrics.events_unstored, count);
                return Err(IngestFailure::Unavailable(err));
            }
        };
        answer.truncate(stored.len());
        for (e, a) in answer.iter_mut().zip(stored) {
            let counter = if a.duplicate {
                e.webhooks = Vec::new();
                &self.metrics.events_duplicate
            } else {
                &self.metrics.events_accepted
            };
            Metrics::bump(counter);
            e.id = a.id;
            e.duplicate = a.duplicate;
            e.deliveries = a.deliveries;
        }
        Ok(Accepted {
            rules: rules.hash.clone(),
            events: answer,
        })
    }
}

/// The event and every delivery it produces under the given rules.
pub fn fan_out(rules: &RuleSet, mut event: Event, default_attempts: u32) -> NewEvent {
    // An id made here stays out of the JSON: a store may swap it for one of its own making,
    // and keeps it apart (see `NewEvent::assigned`).
    let assigned = event.id.is_none();
    let body = event.to_json_string();
    event.id.get_or_insert_with(new_delivery_id);
    let deliveries = rules
        .matching(&event)
        .map(|w| render(w, &event, default_attempts))
        .collect();
    // The event is done with: its texts move into the stored event, uncopied.
    NewEvent {
        id: event.id.unwrap_or_default(),
        assigned,
        kind: event.kind.wire_name(),
        body,
        occurred_at: event.occurred_at,
        deliveries,
    }
}

/// Parses a post's body: one event object, or a non-empty JSON array of them. All or nothing:
/// the first bad event rejects the whole post, named by its index.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, InvalidEvent> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidEvent::new("", None, "the body is empty"));
    }
    // Straight into events, no tree in between (measured with callgrind: reading the event was
    // a fifth of a post's cost through a `strict::Doc`).
    decode::events_from_slice(body).map_err(|e| match e {
        BodyError::Json(StrictJsonError::Syntax(e)) => {
            InvalidEvent::new("", None, format!("not valid JSON: {e}"))
        }
        // In an array of events, the first step is the event's index.
        BodyError::Json(StrictJsonError::DuplicateKey(path)) => {
            let error = |index, rest: &[Step]| {
                let e = EventError::duplicate_key(strict::dotted(rest));
                InvalidEvent::new(e.key, index, e.message)
            };
            match path.split_first() {
                Some((Step::Index(i), rest)) => error(Some(*i), rest),
                _ => error(None, &path),
            }
        }
        BodyError::NoEvents => {
            InvalidEvent::new("", None, "the array holds no events; post at least one")
        }
        BodyError::NotEvents(found) => InvalidEvent::new(
            "",
            None,
            format!("expected an event object or an array of events, found {found}"),
        ),
        BodyError::Event { index, error } => InvalidEvent::new(error.key, index, error.message),
    })
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

/// `parse_events` against the way it read bodies before `event::decode`: a `strict::Doc`, then
/// `Event::from_doc` for each event. Equal results (events, or the same refusal) on the inputs
/// of the tests here and in `event`, the fuzz corpora, mutations of them and generated bodies.
#[cfg(test)]
mod same_as_the_doc_path {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::event::describe_doc;
    use crate::event::strict::Doc;
    use crate::event::{ClickField, FlagField, IdField, NumberField, TextField};

    /// `parse_events` as it was before `event::decode`, unchanged.
    fn by_doc(body: &[u8]) -> Result<Vec<Event>, InvalidEvent> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(InvalidEvent::new("", None, "the body is empty"));
        }
        let value = strict::doc_from_slice(body).map_err(|e| match e {
            StrictJsonError::Syntax(e) => {
                InvalidEvent::new("", None, format!("not valid JSON: {e}"))
            }
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

    fn agree(body: &[u8]) -> Result<(), String> {
        let (new, old) = (parse_events(body), by_doc(body));
        if new == old {
            Ok(())
        } else {
            Err(format!(
                "{}\n  decode: {new:?}\n  doc:    {old:?}",
                String::from_utf8_lossy(body)
            ))
        }
    }

    /// Bodies whose result depends on the order faults are checked in.
    const BODIES: &[&str] = &[
        // Faults at several keys: the one `from_doc` checks first is named, wherever it is.
        r#"{"revenue":"lots","type":"sale"}"#,
        r#"{"revenue":"lots","type":"conversion","id":1.5}"#,
        r#"{"lastClick":{"country":1},"firstClick":{"referrer":2,"country":3}}"#,
        r#"{"type":"conversion","lastClick":{"country":1},"firstClick":[1]}"#,
        r#"{"type":"conversion","firstClick":{"referrer":2,"country":3},"currency":1}"#,
        r#"{"eventNumber":"x","type":"event"}"#,
        r#"{"eventNumber":"x","type":7}"#,
        r#"{"eventNumber":"x"}"#,
        r#"{"eventNumber":12,"type":"event","revenue":true}"#,
        r#"{"type":"event","eventNumber":3,"eventCount":-1,"conversionCount":1.5}"#,
        r#"{"isFromTikTokAds":2,"isFromGoogleAds":"yes","targetId":[],"linkId":{}}"#,
        r#"{"occurredAt":"now","visitor":true,"transaction":null,"type":"refund"}"#,
        // A repeated key or a syntax error later in the text wins over an event's fault.
        r#"{"revenue":"lots","type":"conversion","x":{"a":1,"a":2}}"#,
        r#"[{"revenue":"lots","type":"conversion"},{"type":"refund","type":"refund"}]"#,
        r#"[{"revenue":"lots","type":"conversion"},{"type":"refund"},"#,
        r#"[{"type":"sale"},{"type":"refund"}] x"#,
        r#"[1, {"type":"refund", "lastClick": {"a": [{"b":1,"b":1}]}}]"#,
        r#"[[{"a":1,"a":1}]]"#,
        r#"{"firstClick":{"country":"US","country":"DE"},"revenue":"lots"}"#,
        r#"{"type":"conversion","firstClick":null,"lastClick":{"country":"de"}}"#,
        r#"{"type":"conversion","firstClick":{},"lastClick":{"country":"de","x":1,"x":2}}"#,
        r#"{"type":"conversion","\u0074ype":"refund"}"#,
        r#"{"type":"conversion","firstClick":{"country":"US","\u0063ountry":"DE"}}"#,
        r#"{"type":"conversion","extra":1,"extra":2}"#,
        r#"{"type":"conversion","revenue":1e999}"#,
        r#"{"type":"conversion","revenue":-0,"qualityScore":1.0e2,"linkId":-7}"#,
        r#"{"type":"conversion","isFromGoogleAds":1.0,"isFromTikTokAds":-1}"#,
        r#"{"type":"conversion","transaction":"a\"b\\c\u00e9\ud83d\ude00"}"#,
        r#"[{"type":"refund"},5,{"type":"sale"}]"#,
        r#"[{"type":"refund"},[],{"type":"sale"}]"#,
        "[]",
        "[] ",
        "[],",
        "42",
        "\"conversion\"",
        "null",
        "true",
        "{}",
        "",
        "  \n",
        "{",
        "[",
        "{\"type\": \"conversion\",\n  \"revenue\": }",
        r#"{"type":"conversion",}"#,
        r#"{"a":1,}"#,
        r#"{1:2}"#,
    ];

    #[test]
    fn on_bodies_that_test_the_order_of_faults() {
        for body in BODIES {
            agree(body.as_bytes()).unwrap();
        }
        // Not UTF-8: in a string, outside one, after a repeated key.
        for body in [
            &b"{\"type\":\"conv\xffersion\"}"[..],
            b"{\"type\":\"refund\"}\xff",
            b"\xff",
            b"[{\"type\":\"refund\",\"a\":1,\"a\":\"\xff\"}]",
            b"[{\"type\":\"refund\",\"revenue\":\"\xc3\"}]",
            b"{\"type\":\"refund\",\"k\xe9y\":1}",
        ] {
            agree(body).unwrap();
        }
        // Past the keys a scan checks for repeats, a hash set does.
        let keys: Vec<String> = (0..100).map(|i| format!(r#""k{i}":{i}"#)).collect();
        for tail in [
            "",
            r#","k3":0"#,
            r#","k40":0"#,
            r#","k99":0"#,
            r#","type":1"#,
        ] {
            let body = format!(r#"{{"type":"refund",{}{tail}}}"#, keys.join(","));
            agree(body.as_bytes()).unwrap();
            let body = format!(
                r#"{{"type":"refund","firstClick":{{{}{tail}}}}}"#,
                keys.join(",")
            );
            agree(body.as_bytes()).unwrap();
        }
        // Too deep is a syntax error at the same place.
        for depth in [126, 127, 128, 129, 100_000] {
            let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            agree(body.as_bytes()).unwrap();
            let body = format!(
                r#"{{"type":"refund","x":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            agree(body.as_bytes()).unwrap();
        }
    }

    /// Every key an event reads, and every key a click reads.
    fn event_keys() -> Vec<&'static str> {
        let mut keys = vec!["type", "id", "transaction", "visitor", "occurredAt"];
        keys.extend(NumberField::ALL.map(NumberField::name));
        keys.extend(FlagField::ALL.map(FlagField::name));
        keys.extend(IdField::ALL.map(IdField::name));
        keys.extend(TextField::ALL.map(TextField::name));
        keys.extend(["firstClick", "lastClick"]);
        keys
    }

    #[test]
    fn on_every_pair_of_keys_at_fault_in_either_order() {
        let wrong = ["[1]", "{}", "true", "-1.5", "\"x\""];
        let clicks = ClickField::ALL.map(ClickField::name);
        for (keys, inside) in [(event_keys(), None), (clicks.to_vec(), Some("lastClick"))] {
            for (a, b) in keys.iter().flat_map(|a| keys.iter().map(move |b| (a, b))) {
                for (x, y) in wrong.iter().flat_map(|x| wrong.iter().map(move |y| (x, y))) {
                    let pair = if a == b {
                        format!(r#""{a}":{x}"#)
                    } else {
                        format!(r#""{a}":{x},"{b}":{y}"#)
                    };
                    let bodies = match inside {
                        None => [
                            format!("{{{pair}}}"),
                            format!(r#"{{{pair},"type":"event2"}}"#),
                        ],
                        Some(click) => [
                            format!(r#"{{"{click}":{{{pair}}},"type":"refund"}}"#),
                            format!(r#"[{{"type":"refund"}},{{"{click}":{{{pair}}}}}]"#),
                        ],
                    };
                    for body in bodies {
                        agree(body.as_bytes()).unwrap();
                    }
                }
            }
        }
    }

    fn files(dir: &Path) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// The body with one byte left out, then cut short there, at up to 24 places.
    fn mutations(body: &[u8]) -> Vec<Vec<u8>> {
        let step = (body.len() / 24).max(1);
        (0..body.len())
            .step_by(step)
            .flat_map(|i| {
                let mut without = body.to_vec();
                without.remove(i);
                [without, body[..i].to_vec()]
            })
            .collect()
    }

    #[test]
    fn on_the_fuzz_corpora_the_examples_and_their_mutations() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut bodies = Vec::new();
        for dir in [
            "fuzz/corpus/event_decode",
            "fuzz/regressions/event_decode",
            "fuzz/corpus/http_bodies",
            "examples/events",
        ] {
            let found = files(&root.join(dir));
            assert!(!found.is_empty(), "{dir} is empty or missing");
            bodies.extend(found);
        }
        let mut failures = Vec::new();
        let mut count = 0;
        for body in &bodies {
            for body in std::iter::once(body.clone()).chain(mutations(body)) {
                count += 1;
                if let Err(e) = agree(&body) {
                    failures.push(e);
                }
            }
        }
        assert!(count > 10_000, "{count} bodies");
        assert!(
            failures.is_empty(),
            "{} of {count} bodies read differently:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// A value for any key: right for some keys, wrong for others.
    fn scalar() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            Just("conversion"),
            Just("refund"),
            Just("event"),
            Just("event3"),
            Just("event10"),
            Just("event11"),
            Just("event0"),
            Just("sale"),
            Just("2026-11-27T10:15:00Z"),
            Just("2026-11-27 10:15:00"),
            Just("true"),
            Just("false"),
            Just("0"),
            Just("1"),
            Just(" 4 "),
            Just("-3"),
            Just("79.90"),
            Just("1.5"),
            Just("9007199254740993"),
            Just("US"),
            Just(""),
            Just("x\\ny"),
            Just("\\u0041\\u00e9"),
        ]
        .prop_map(|s| format!("\"{s}\""));
        prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            (-3i64..12).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("18446744073709551615".to_owned()),
            Just("9007199254740992".to_owned()),
            Just("2.0".to_owned()),
            Just("-0.5".to_owned()),
            Just("3e0".to_owned()),
            Just("1e400".to_owned()),
            text,
            "[a-z0-9]{0,3}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    /// Every key an event or a click reads, a few others, and `type` escaped.
    fn key() -> impl Strategy<Value = String> {
        let names: Vec<&'static str> = [
            "type",
            "eventNumber",
            "id",
            "transaction",
            "visitor",
            "occurredAt",
            "firstClick",
            "lastClick",
            "extra",
            "\\u0074ype",
        ]
        .into_iter()
        .chain(NumberField::ALL.map(NumberField::name))
        .chain(FlagField::ALL.map(FlagField::name))
        .chain(IdField::ALL.map(IdField::name))
        .chain(TextField::ALL.map(TextField::name))
        .chain(ClickField::ALL.map(ClickField::name))
        .collect();
        proptest::sample::select(names).prop_map(|k| format!("\"{k}\""))
    }

    /// Any value, objects and arrays included, with keys that may repeat.
    fn value() -> impl Strategy<Value = String> {
        scalar().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec((key(), inner), 0..6).prop_map(|fields| {
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    /// An event: mostly valid values for a random set of its keys, some wrong, some repeated.
    fn event() -> impl Strategy<Value = String> {
        let kind = prop_oneof![
            Just(r#""type":"conversion""#.to_owned()),
            Just(r#""type":"refund""#.to_owned()),
            Just(r#""type":"event7""#.to_owned()),
            Just(r#""type":"event","eventNumber":2"#.to_owned()),
            (key(), scalar()).prop_map(|(k, v)| format!("{k}:{v}")),
        ];
        let click = proptest::collection::vec((0..ClickField::ALL.len(), scalar()), 0..4).prop_map(
            |fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(f, v)| format!("\"{}\":{v}", ClickField::ALL[f].name()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            },
        );
        let field = prop_oneof![
            3 => (key(), scalar()).prop_map(|(k, v)| format!("{k}:{v}")),
            1 => (key(), value()).prop_map(|(k, v)| format!("{k}:{v}")),
            1 => (prop_oneof![Just("firstClick"), Just("lastClick")], click)
                .prop_map(|(k, v)| format!("\"{k}\":{v}")),
        ];
        (kind, proptest::collection::vec(field, 0..7), any::<usize>()).prop_map(
            |(kind, mut fields, at)| {
                fields.insert(at % (fields.len() + 1), kind);
                format!("{{{}}}", fields.join(","))
            },
        )
    }

    /// A body: one event, an array of them (now and then with another value), or any value;
    /// now and then with a byte left out, or one of `{}[],:"\ 1` or a byte that is not UTF-8 put in.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let shape = prop_oneof![
            3 => event(),
            2 => proptest::collection::vec(prop_oneof![6 => event(), 1 => value()], 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            1 => value(),
        ];
        let change = prop_oneof![
            4 => Just(None),
            1 => (any::<usize>(), Just(None)).prop_map(Some),
            1 => (any::<usize>(), proptest::sample::select(b"{}[],:\"\\ 1\xff\xc3".to_vec()).prop_map(Some))
                .prop_map(Some),
        ];
        (shape, change).prop_map(|(text, change)| {
            let mut bytes = text.into_bytes();
            match change {
                Some((at, None)) if !bytes.is_empty() => {
                    bytes.remove(at % bytes.len());
                }
                Some((at, Some(byte))) => bytes.insert(at % (bytes.len() + 1), byte),
                _ => {}
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn on_generated_bodies(body in body()) {
            prop_assert!(agree(&body).is_ok(), "{}", agree(&body).unwrap_err());
        }
    }
}
