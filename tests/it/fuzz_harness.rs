//! The fuzz harnesses: one plain function per target, taking the fuzzer's bytes and panicking
//! when a property fails.
//!
//! Two callers share this file, so that what the fuzzer checks and what CI replays cannot drift:
//! the `cargo fuzz` targets under `fuzz/fuzz_targets/` include it with `#[path]` (nightly,
//! libFuzzer), and `fuzz_replay.rs` runs every file of `fuzz/corpus/<target>/` through it in
//! `cargo test` (stable, no libFuzzer). It may use only `whc`, `http` and `std`: the fuzz crate
//! depends on nothing else.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use whc::event::decode::readers;
use whc::event::{Event, EventKind, FieldRef};
use whc::lang::format::format_source;
use whc::lang::predicate::{Check, Predicate, TextSet};
use whc::lang::url::{RenderContext, Segment, Token, UrlTemplate};
use whc::lang::{self, SourceFile};
use whc::sidecar::parse_events;
use whc::sidecar::query::delivery_filter;

/// A harness: the fuzzer's bytes in, a panic when a property fails.
pub type Harness = fn(&[u8]);

/// Every target: its name (the folder under `fuzz/corpus/`) and its harness.
pub const TARGETS: [(&str, Harness); 4] = [
    ("rules_roundtrip", rules_roundtrip),
    ("event_decode", event_decode),
    ("url_render", url_render),
    ("http_bodies", http_bodies),
];

// === rules_roundtrip ===

/// Arbitrary text through the parser, checker and formatter. The hand-written parser, where it
/// reads a text, gives the grammar's tree; the formatter never panics; what it formats it
/// formats to a fixed point; and a file that checks without errors means the same once
/// formatted.
pub fn rules_roundtrip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = whc::lang::parse::quick_parse_agrees(text) {
        panic!("{e}\n---\n{text}");
    }
    let compiled = compile(text);
    let formatted = format_source(text);
    let Ok(once) = formatted else {
        assert!(
            compiled.has_errors(),
            "the formatter refused a file that compiles:\n{text}"
        );
        return;
    };
    let twice = format_source(&once)
        .unwrap_or_else(|e| panic!("the formatted file does not parse: {e:?}\n---\n{once}"));
    assert_eq!(twice, once, "fmt is not idempotent; input:\n{text}");
    if compiled.has_errors() {
        return;
    }
    let again = compile(&once);
    assert_eq!(
        meaning(&again),
        meaning(&compiled),
        "formatting changed the meaning:\n{text}\n---\n{once}"
    );
}

fn compile(text: &str) -> lang::Compiled {
    let source = Arc::new(SourceFile::new("fuzz.whc", text));
    lang::compile(&[source], &HashMap::<String, String>::new())
}

fn check(check: &Check) -> String {
    match check {
        Check::Contains(finder) => format!("Contains({:?})", finder.needle()),
        Check::Matches(re) => format!("Matches({:?})", re.as_str()),
        Check::TextIn(TextSet::Many(set)) => {
            let mut values: Vec<_> = set.iter().collect();
            values.sort();
            format!("TextIn({values:?})")
        }
        other => format!("{other:?}"),
    }
}

/// A compiled condition without spans and source text.
fn predicate(p: &Predicate) -> String {
    let list = |ps: &[Predicate]| ps.iter().map(predicate).collect::<Vec<_>>().join(", ");
    match p {
        Predicate::All(ps) => format!("all[{}]", list(ps)),
        Predicate::Any(ps) => format!("any[{}]", list(ps)),
        Predicate::Not(p) => format!("not[{}]", predicate(p)),
        Predicate::Test(t) => format!(
            "{:?} {} negated={} fast={:?}",
            t.field,
            check(&t.check),
            t.negated,
            t.fast
        ),
    }
}

/// The compiled webhooks and the diagnostics' codes, without anything that says where (also
/// what `fmt`'s property tests compare).
pub fn meaning(compiled: &lang::Compiled) -> Vec<String> {
    let mut out: Vec<String> = compiled
        .webhooks
        .iter()
        .map(|w| {
            let conditions: Vec<String> = w
                .conditions
                .iter()
                .map(|c| predicate(&c.predicate))
                .collect();
            let r = &w.request;
            format!(
                "{:?} {:?} disabled={} when={conditions:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                w.name,
                w.events,
                w.disabled,
                r.method,
                r.url.segments,
                r.headers,
                r.timeout,
                r.retries,
                r.secret
            )
        })
        .collect();
    out.extend(
        compiled
            .diagnostics
            .iter()
            .map(|d| format!("{:?} {:?}", d.severity, d.code)),
    );
    out
}

// === event_decode ===

/// Arbitrary bytes as an events body and as one event. Whatever is accepted writes back out and
/// reads back in as the same events, the two ways in agree on a single object, and where the
/// hand-written reader reads a body, serde_json's reads the same events.
pub fn event_decode(data: &[u8]) {
    if let Some(by_hand) = readers::by_hand(data) {
        match readers::by_serde(data) {
            Ok(by_serde) => assert_eq!(by_hand, by_serde, "the two readers disagree"),
            Err(e) => panic!("read by hand, refused by serde_json: {e:?}"),
        }
    }
    if let Ok(events) = parse_events(data) {
        assert!(!events.is_empty(), "an accepted body holds an event");
        for event in &events {
            assert_round_trips(event);
        }
        let array = format!(
            "[{}]",
            events
                .iter()
                .map(Event::to_json_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let again = parse_events(array.as_bytes())
            .unwrap_or_else(|e| panic!("the written array is refused: {e}\n{array}"));
        assert_eq!(again, events, "{array}");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(event) = Event::from_json_str(text)
    {
        assert_round_trips(&event);
        let body = parse_events(data)
            .unwrap_or_else(|e| panic!("from_json_str accepts what parse_events refuses: {e}"));
        assert_eq!(body, [event], "the two ways in disagree");
    }
}

fn assert_round_trips(event: &Event) {
    let json = event.to_json_string();
    let again = Event::from_json_str(&json)
        .unwrap_or_else(|e| panic!("the written event is refused: {e}\n{json}\n{event:?}"));
    assert_eq!(&again, event, "{json}");
    assert_eq!(again.to_json_string(), json, "writing is not stable");
    assert_eq!(Event::from_json(&event.to_json()).as_ref(), Ok(event));
}

// === url_render ===

/// Splits the fuzzer's bytes at 0xFF, which UTF-8 never uses: the template, then the token
/// values in the order the template's tokens come (the last ones reused when there are fewer).
fn split_url_input(data: &[u8]) -> Option<(&str, Vec<String>)> {
    let mut parts = data.split(|b| *b == 0xFF);
    let template = std::str::from_utf8(parts.next()?).ok()?;
    let values = parts
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some((template, values))
}

/// An event and a context whose token values are the visitor's, as the template reads them.
fn fill(template: &UrlTemplate, values: &[String], event: &mut Event) -> (String, String) {
    let mut values = values.iter().cycle();
    let (mut webhook, mut delivery) = ("w".to_owned(), "d".to_owned());
    if values.clone().next().is_none() {
        return (webhook, delivery);
    }
    for segment in &template.segments {
        let Segment::Token(token, _) = segment else {
            continue;
        };
        let value = values.next().cloned().unwrap_or_default();
        match token {
            Token::Field(FieldRef::Click(a, c)) => {
                let click = match a {
                    whc::event::Attribution::First => &mut event.first_click,
                    whc::event::Attribution::Last => &mut event.last_click,
                };
                click.set(*c, Some(value));
            }
            Token::Field(FieldRef::Number(n)) => {
                // Any finite number the event decoder accepts; otherwise the length, as a number.
                let v = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .unwrap_or(value.len() as f64);
                event.numbers[n.slot()] = Some(v);
            }
            Token::Field(FieldRef::Flag(f)) => event.flags[f.slot()] = Some(value.len() % 2 == 1),
            Token::Field(FieldRef::Id(i)) => event.ids[i.slot()] = Some(value),
            Token::Field(FieldRef::Text(t)) => event.texts[t.slot()] = Some(value),
            Token::Transaction => event.transaction = Some(value),
            Token::Visitor => event.visitor = Some(value),
            Token::Timestamp => event.occurred_at = Some(value),
            // A quoted webhook name can hold any text; the delivery id is whc's own.
            Token::Webhook => webhook = value,
            Token::Delivery => delivery = value,
            Token::Event => {}
        }
    }
    (webhook, delivery)
}

/// The longest text `http::Uri` (hyper's, and so the delivery client's) parses.
pub const URI_MAX_LEN: usize = u16::MAX as usize - 1;

/// What a URL's token values can never change: scheme, host and port.
fn origin(uri: &http::Uri) -> (Option<String>, Option<String>, Option<u16>) {
    (
        uri.scheme_str().map(str::to_ascii_lowercase),
        uri.host().map(str::to_owned),
        uri.port_u16(),
    )
}

/// How many of each character that shapes a URL it has: token values must add none.
fn delimiters(url: &str) -> [usize; 6] {
    ['/', '?', '#', '&', '=', ';'].map(|d| url.matches(d).count())
}

/// A URL template and arbitrary token values (see [`split_url_input`]): when the checker accepts
/// the template, every rendering parses as a URI with the template's scheme, host and port, and
/// the values add no delimiter.
pub fn url_render(data: &[u8]) {
    let Some((source, values)) = split_url_input(data) else {
        return;
    };
    let Ok(template) = UrlTemplate::parse(source) else {
        return;
    };
    let plain = Event::new(EventKind::Conversion);
    let baseline = template.render(&RenderContext {
        event: &plain,
        webhook: "w",
        delivery: "d",
    });
    let expected: http::Uri = baseline.parse().unwrap_or_else(|e| {
        panic!("{source:?} is accepted but renders {baseline:?}, not a URI: {e}")
    });
    let mut event = Event::new(EventKind::Conversion);
    let (webhook, delivery) = fill(&template, &values, &mut event);
    let url = template.render(&RenderContext {
        event: &event,
        webhook: &webhook,
        delivery: &delivery,
    });
    if url.len() > URI_MAX_LEN {
        // Known, reported: `a_long_token_value_still_renders_a_uri` in fuzz_replay.rs.
        return;
    }
    let uri: http::Uri = url
        .parse()
        .unwrap_or_else(|e| panic!("{source:?} with {values:?} renders {url:?}, not a URI: {e}"));
    assert_eq!(origin(&uri), origin(&expected), "{source:?} → {url:?}");
    assert_eq!(
        delimiters(&url),
        delimiters(&baseline),
        "{source:?} with {values:?} → {url:?}"
    );
}

// === http_bodies ===

/// Arbitrary bytes as the body of `POST /v1/events` and as the query of `GET /v1/deliveries`.
/// Neither panics; a refusal says what is wrong; an accepted query is within bounds and reads
/// the same once written back out.
pub fn http_bodies(data: &[u8]) {
    match parse_events(data) {
        Ok(events) => assert!(!events.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty() && !e.message.is_empty()),
    }
    let query = String::from_utf8_lossy(data);
    match delivery_filter(&query) {
        Ok(filter) => {
            assert!((1..=1000).contains(&filter.limit), "{query:?}: {filter:?}");
            assert!(filter.webhook.as_ref().is_none_or(|w| !w.is_empty()));
            let mut written = format!("limit={}", filter.limit);
            if let Some(status) = filter.status {
                write!(written, "&status={status}").unwrap();
            }
            // Every key the filter reads back, the console's included; texts percent-encoded
            // byte by byte so that no `&`, `=`, `+` or `%` in them is read as syntax.
            let texts = [
                ("webhook", &filter.webhook),
                ("type", &filter.event_type),
                ("q", &filter.text),
                ("after", &filter.after),
            ];
            for (key, text) in texts {
                if let Some(text) = text {
                    write!(written, "&{key}=").unwrap();
                    for b in text.bytes() {
                        write!(written, "%{b:02X}").unwrap();
                    }
                }
            }
            for (key, ms) in [("since", filter.since), ("until", filter.until)] {
                if let Some(ms) = ms {
                    write!(written, "&{key}={ms}").unwrap();
                }
            }
            let again =
                delivery_filter(&written).unwrap_or_else(|e| panic!("{written:?} is refused: {e}"));
            assert_eq!(again, filter, "{query:?} → {written:?}");
        }
        Err(e) => assert!(!e.0.is_empty()),
    }
}
