//! The tracker's JSON wire format for one event: strict on known keys, silent on unknown ones.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Number, Value as Json};

use super::strict::{self, Doc, StrictJsonError};
use super::{Click, ClickField, Event, EventKind, FlagField, IdField, NumberField, TextField};

/// Why an event body was rejected; `key` names the offending key (dotted for click fields).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if key.is_empty() { "body" } else { key.as_str() })]
pub struct EventError {
    /// The JSON key at fault, such as `revenue` or `firstClick.country`; empty for the body itself.
    pub key: String,
    /// What is wrong with it, in plain words.
    pub message: String,
}

impl EventError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> EventError {
        EventError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The error for a body that is not JSON at all.
    pub fn syntax(err: &serde_json::Error) -> EventError {
        EventError::new("", format!("not valid JSON ({err})"))
    }

    /// The error for a key an object repeats, at `key` (dotted).
    pub fn duplicate_key(key: impl Into<String>) -> EventError {
        EventError::new(key, "appears twice in the same object; send each key once")
    }

    /// The error for text the strict JSON reader refused.
    pub fn from_strict(err: StrictJsonError) -> EventError {
        match err {
            StrictJsonError::Syntax(e) => EventError::syntax(&e),
            StrictJsonError::DuplicateKey(path) => EventError::duplicate_key(strict::dotted(&path)),
        }
    }
}

/// What kind of JSON value this is, for error messages ("found a string").
pub(crate) fn describe(value: &Json) -> &'static str {
    Raw::of_json(value).describe()
}

/// What kind of JSON value this is, for error messages ("found a string").
#[cfg(test)]
pub(crate) fn describe_doc(value: &Doc<'_>) -> &'static str {
    Raw::of_doc(value).describe()
}

/// One JSON value as the readers below see it, from a `serde_json::Value` or a [`Doc`]: the
/// same checks and messages for both (and for `decode`, which hands them one value at a time).
#[derive(Clone, Copy)]
pub(super) enum Raw<'a> {
    Null,
    Bool(bool),
    Number(&'a Number),
    Text(&'a str),
    Array,
    Object(Obj<'a>),
}

/// A JSON object, from a `serde_json::Value` or a [`Doc`].
#[derive(Clone, Copy)]
pub(super) enum Obj<'a> {
    Map(&'a Map<String, Json>),
    Doc(&'a [(Cow<'a, str>, Doc<'a>)]),
}

impl<'a> Raw<'a> {
    fn of_json(value: &'a Json) -> Raw<'a> {
        match value {
            Json::Null => Raw::Null,
            Json::Bool(b) => Raw::Bool(*b),
            Json::Number(n) => Raw::Number(n),
            Json::String(s) => Raw::Text(s),
            Json::Array(_) => Raw::Array,
            Json::Object(map) => Raw::Object(Obj::Map(map)),
        }
    }

    fn of_doc(value: &'a Doc<'a>) -> Raw<'a> {
        match value {
            Doc::Null => Raw::Null,
            Doc::Bool(b) => Raw::Bool(*b),
            Doc::Number(n) => Raw::Number(n),
            Doc::Text(s) => Raw::Text(s),
            Doc::Array(_) => Raw::Array,
            Doc::Object(fields) => Raw::Object(Obj::Doc(fields)),
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Raw::Null => "null",
            Raw::Bool(_) => "a boolean",
            Raw::Number(_) => "a number",
            Raw::Text(_) => "a string",
            Raw::Array => "an array",
            Raw::Object(_) => "an object",
        }
    }
}

impl<'a> Obj<'a> {
    /// The value of `key`, if the object has it.
    fn get(self, key: &str) -> Option<Raw<'a>> {
        match self {
            Obj::Map(map) => map.get(key).map(Raw::of_json),
            Obj::Doc(fields) => fields
                .iter()
                .find(|(k, _)| k.len() == key.len() && k == key)
                .map(|(_, v)| Raw::of_doc(v)),
        }
    }
}

/// A text value; `null` counts as not sent.
pub(super) fn text(value: Option<Raw<'_>>, key: &str) -> Result<Option<String>, EventError> {
    match value {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Text(s)) => Ok(Some(s.to_owned())),
        Some(other) => Err(EventError::new(
            key,
            format!("expected a string, found {}", other.describe()),
        )),
    }
}

/// An identifier: a string or an integer, kept as text.
pub(super) fn id(value: Option<Raw<'_>>, key: &str) -> Result<Option<String>, EventError> {
    match value {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Text(s)) => Ok(Some(s.to_owned())),
        Some(Raw::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(EventError::new(
            key,
            format!(
                "expected a string or an integer, found {}",
                other.describe()
            ),
        )),
    }
}
/// A number as sent: its value, and whether it was written as an integer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    pub(super) value: f64,
    pub(super) integer: bool,
}

/// A number: a JSON number or a numeric string.
pub(super) fn number(value: Option<Raw<'_>>, key: &str) -> Result<Option<Sent>, EventError> {
    let bad = |found: &str| EventError::new(key, format!("expected a number, found {found}"));
    match value {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Number(n)) => n
            .as_f64()
            .map(|value| {
                Some(Sent {
                    value,
                    integer: n.is_i64() || n.is_u64(),
                })
            })
            .ok_or_else(|| bad("a number out of range")),
        Some(Raw::Text(s)) => match s.trim().parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Some(Sent {
                value,
                integer: s.trim().parse::<i64>().is_ok(),
            })),
            _ => Err(bad(&format!("the string {s:?}"))),
        },
        Some(other) => Err(bad(other.describe())),
    }
}

/// The largest whole number an `f64` holds exactly (2^53 - 1).
pub(super) const MAX_EXACT: f64 = 9_007_199_254_740_991.0;

/// A count (`conversionCount`, `eventCount`): a number of things, so a whole number from 0.
/// `2.0` and `"2"` are 2; `1.5` and `-1` are refused, as is anything past 2^53 - 1, where an
/// `f64` (what conditions compare) stops holding every whole number.
pub(super) fn count(value: Option<Raw<'_>>, key: &str) -> Result<Option<Sent>, EventError> {
    match number(value, key)? {
        Some(n) if n.value.fract() != 0.0 || !(0.0..=MAX_EXACT).contains(&n.value) => {
            Err(EventError::new(
                key,
                format!(
                    "must be a whole number from 0, found {}",
                    super::format_number(n.value)
                ),
            ))
        }
        n => Ok(n),
    }
}

/// `occurredAt`: an RFC 3339 timestamp, kept as text.
pub(super) fn timestamp(value: Option<Raw<'_>>, key: &str) -> Result<Option<String>, EventError> {
    match text(value, key)? {
        Some(at) if !super::timestamp::is_rfc3339(&at) => Err(EventError::new(
            key,
            format!(
                "expected an RFC 3339 timestamp such as \"2026-11-27T10:15:00Z\", found {at:?}"
            ),
        )),
        at => Ok(at),
    }
}

/// A flag: a JSON boolean, or the strings `"true"`/`"false"`, or `0`/`1`.
pub(super) fn flag(value: Option<Raw<'_>>, key: &str) -> Result<Option<bool>, EventError> {
    let bad = |found: &str| EventError::new(key, format!("expected true or false, found {found}"));
    match value {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Bool(b)) => Ok(Some(b)),
        Some(Raw::Text(s)) => match s {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(bad(&format!("the string {s:?}"))),
        },
        Some(Raw::Number(n)) => match n.as_u64() {
            Some(1) => Ok(Some(true)),
            Some(0) => Ok(Some(false)),
            _ => Err(bad(&format!("the number {n}"))),
        },
        Some(other) => Err(bad(other.describe())),
    }
}

/// The click at `key` (`firstClick`, `lastClick`): an object of click fields.
pub(super) fn click(value: Option<Raw<'_>>, key: &str) -> Result<Option<Click>, EventError> {
    let inner = match value {
        None | Some(Raw::Null) => return Ok(None),
        Some(Raw::Object(inner)) => inner,
        Some(other) => {
            return Err(EventError::new(
                key,
                format!("expected an object, found {}", other.describe()),
            ));
        }
    };
    let mut click = Click::default();
    for field in ClickField::ALL {
        click.set(field, click_text(inner.get(field.name()), key, field)?);
    }
    Ok(Some(click))
}

/// One field of the click at `key`; an error names it dotted (`firstClick.country`).
pub(super) fn click_text(
    value: Option<Raw<'_>>,
    key: &str,
    field: ClickField,
) -> Result<Option<String>, EventError> {
    // The dotted key is only spelled out for an error: this runs for every event.
    text(value, field.name()).map_err(|e| EventError::new(format!("{key}.{}", e.key), e.message))
}

/// The event's kind, from its `type` and `eventNumber`.
pub(super) fn kind(
    name: Option<Raw<'_>>,
    number: Option<Raw<'_>>,
) -> Result<EventKind, EventError> {
    let name = match name {
        Some(Raw::Text(s)) => s,
        None | Some(Raw::Null) => return Err(EventError::new("type", "is required")),
        Some(other) => {
            return Err(EventError::new(
                "type",
                format!("expected a string, found {}", other.describe()),
            ));
        }
    };
    let number = self::number(number, "eventNumber")?.map(|n| n.value);
    let custom = |n: f64| -> Result<EventKind, EventError> {
        if n.fract() == 0.0 && (1.0..=f64::from(EventKind::MAX_CUSTOM)).contains(&n) {
            Ok(EventKind::Custom(n as u8))
        } else {
            Err(EventError::new(
                "eventNumber",
                format!("must be a whole number from 1 to 10, found {n}"),
            ))
        }
    };
    match name {
        "conversion" => Ok(EventKind::Conversion),
        "refund" => Ok(EventKind::Refund),
        "event" => match number {
            Some(n) => custom(n),
            None => Err(EventError::new(
                "eventNumber",
                "is required when type is \"event\"",
            )),
        },
        other => {
            let n = other
                .strip_prefix("event")
                .and_then(|digits| digits.parse::<u8>().ok())
                .filter(|n| (1..=EventKind::MAX_CUSTOM).contains(n));
            match (n, number) {
                (Some(n), None) => Ok(EventKind::Custom(n)),
                (Some(n), Some(given)) if given == f64::from(n) => Ok(EventKind::Custom(n)),
                (Some(n), Some(given)) => Err(EventError::new(
                    "eventNumber",
                    format!("is {given} but type says event{n}"),
                )),
                (None, _) => Err(EventError::new(
                    "type",
                    format!(
                        "unknown event type {other:?}; expected \"conversion\", \"refund\", \"event\" or \"event1\"..\"event10\""
                    ),
                )),
            }
        }
    }
}

/// Parses one event; see "The event format" in docs/language.md for the keys.
pub(super) fn parse_event(value: &Json) -> Result<Event, EventError> {
    parse_raw(Raw::of_json(value))
}

/// Parses one event read into a [`Doc`]: the same checks as [`parse_event`].
pub(super) fn parse_doc_event(value: &Doc<'_>) -> Result<Event, EventError> {
    parse_raw(Raw::of_doc(value))
}

/// Parses one event; anything but an object is refused.
pub(super) fn parse_raw(value: Raw<'_>) -> Result<Event, EventError> {
    let Raw::Object(obj) = value else {
        return Err(EventError::new(
            "",
            format!("expected a JSON object, found {}", value.describe()),
        ));
    };
    let mut event = Event::new(kind(obj.get("type"), obj.get("eventNumber"))?);
    event.id = id(obj.get("id"), "id")?;
    event.transaction = id(obj.get("transaction"), "transaction")?;
    event.visitor = id(obj.get("visitor"), "visitor")?;
    event.occurred_at = timestamp(obj.get("occurredAt"), "occurredAt")?;
    for field in NumberField::ALL {
        let value = obj.get(field.name());
        let sent = match field {
            NumberField::EventNumber => continue, // derived from the type, checked in `kind`
            NumberField::ConversionCount | NumberField::EventCount => count(value, field.name())?,
            NumberField::Revenue | NumberField::QualityScore => number(value, field.name())?,
        };
        event.set_number_as_sent(
            field,
            sent.map(|n| n.value),
            sent.is_some_and(|n| n.integer),
        );
    }
    for field in FlagField::ALL {
        event.flags[field.slot()] = flag(obj.get(field.name()), field.name())?;
    }
    for field in IdField::ALL {
        event.ids[field.slot()] = id(obj.get(field.name()), field.name())?;
    }
    for field in TextField::ALL {
        event.texts[field.slot()] = text(obj.get(field.name()), field.name())?;
    }
    let first = click(obj.get("firstClick"), "firstClick")?;
    let last = click(obj.get("lastClick"), "lastClick")?;
    // A visitor with a single click: that click is both the first and the last.
    (event.first_click, event.last_click) = match (first, last) {
        (Some(f), Some(l)) => (f, l),
        (Some(one), None) | (None, Some(one)) => (one.clone(), one),
        (None, None) => (Click::default(), Click::default()),
    };
    Ok(event)
}

/// One click's fields, the ones present only.
struct ClickOut<'a>(&'a Click);

impl Serialize for ClickOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for field in ClickField::ALL {
            if let Some(v) = self.0.get(field) {
                map.serialize_entry(field.name(), v)?;
            }
        }
        map.end()
    }
}

/// The wire format, written straight to the output (no intermediate `Value`): keys that are not
/// set are left out, both clicks are written.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(id) = &self.id {
            map.serialize_entry("id", id)?;
        }
        map.serialize_entry("type", &self.kind.wire_name())?;
        for (key, value) in [
            ("transaction", &self.transaction),
            ("visitor", &self.visitor),
        ] {
            if let Some(v) = value {
                map.serialize_entry(key, v)?;
            }
        }
        for field in NumberField::ALL {
            match self.number(field) {
                // Exact: `set_number_as_sent` marks only integers an f64 holds exactly.
                Some(v) if self.number_is_integer(field) => {
                    map.serialize_entry(field.name(), &(v as i64))?
                }
                Some(v) => map.serialize_entry(field.name(), &v)?,
                None => {}
            }
        }
        for field in FlagField::ALL {
            if let Some(v) = self.flag(field) {
                map.serialize_entry(field.name(), &v)?;
            }
        }
        for field in IdField::ALL {
            if let Some(v) = self.id_value(field) {
                map.serialize_entry(field.name(), v)?;
            }
        }
        for field in TextField::ALL {
            if let Some(v) = self.text(field) {
                map.serialize_entry(field.name(), v)?;
            }
        }
        map.serialize_entry("firstClick", &ClickOut(&self.first_click))?;
        map.serialize_entry("lastClick", &ClickOut(&self.last_click))?;
        if let Some(at) = &self.occurred_at {
            map.serialize_entry("occurredAt", at)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Attribution, Value};

    /// Parses through a `Value` and through a `Doc`, which must agree (errors included).
    fn parse(text: &str) -> Result<Event, EventError> {
        let by_value = Event::from_json_str(text);
        let by_doc = strict::doc_from_slice(text.as_bytes())
            .map_err(EventError::from_strict)
            .and_then(|doc| Event::from_doc(&doc));
        assert_eq!(by_value, by_doc, "{text}");
        by_value
    }

    #[test]
    fn reads_every_key() {
        let e = parse(
            r#"{"id":"e1","type":"conversion","transaction":"t-1","revenue":"49.5","visitor":"v9",
                "linkId":12,"targetId":"x","qualityScore":70,"conversionCount":2,"eventCount":"3",
                "isFromGoogleAds":true,"isFromFacebookAds":"false","isFromTikTokAds":null,
                "currency":"EUR",
                "firstClick":{"utm_source":"facebook","country":"US","clickId":"c1"},
                "lastClick":{"utm_source":"google","deviceType":"mobile","externalId":"gclid-9"},
                "occurredAt":"2026-11-27T10:00:00Z","somethingElse":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Conversion);
        assert_eq!(e.number(NumberField::Revenue), Some(49.5));
        assert_eq!(e.number(NumberField::EventCount), Some(3.0));
        assert_eq!(e.number(NumberField::EventNumber), None);
        assert_eq!(e.id_value(IdField::LinkId), Some("12"));
        assert_eq!(e.flag(FlagField::IsFromFacebookAds), Some(false));
        assert_eq!(e.flag(FlagField::IsFromTikTokAds), None);
        assert_eq!(
            e.click_text(Attribution::First, ClickField::UtmSource),
            Some("facebook")
        );
        assert_eq!(e.text(TextField::Currency), Some("EUR"));
        assert_eq!(
            e.click_text(Attribution::Last, ClickField::ExternalId),
            Some("gclid-9")
        );
        assert_eq!(
            e.click_text(Attribution::Last, ClickField::Country),
            None,
            "clicks are not merged when both are sent"
        );
        let back = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn one_click_serves_as_both() {
        let e = parse(r#"{"type":"refund","lastClick":{"country":"DE"}}"#).unwrap();
        assert_eq!(
            e.value(crate::event::FieldRef::Click(
                Attribution::First,
                ClickField::Country
            )),
            Value::Text("DE")
        );
    }

    #[test]
    fn custom_event_kinds() {
        assert_eq!(
            parse(r#"{"type":"event7"}"#).unwrap().kind,
            EventKind::Custom(7)
        );
        let e = parse(r#"{"type":"event","eventNumber":"3"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Custom(3));
        assert_eq!(e.number(NumberField::EventNumber), Some(3.0));
        assert_eq!(parse(r#"{"type":"event"}"#).unwrap_err().key, "eventNumber");
        assert_eq!(
            parse(r#"{"type":"event","eventNumber":11}"#)
                .unwrap_err()
                .key,
            "eventNumber"
        );
        assert_eq!(parse(r#"{"type":"event11"}"#).unwrap_err().key, "type");
        assert_eq!(
            parse(r#"{"type":"event2","eventNumber":3}"#)
                .unwrap_err()
                .key,
            "eventNumber"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let cases = [
            (r#"{"type":"conversion","revenue":"lots"}"#, "revenue"),
            (r#"{"type":"conversion","revenue":[1]}"#, "revenue"),
            (
                r#"{"type":"conversion","isFromGoogleAds":"yes"}"#,
                "isFromGoogleAds",
            ),
            (
                r#"{"type":"conversion","firstClick":{"country":3}}"#,
                "firstClick.country",
            ),
            (r#"{"type":"conversion","lastClick":"US"}"#, "lastClick"),
            (r#"{"type":"conversion","linkId":1.5}"#, "linkId"),
            (r#"{"type":"conversion","currency":840}"#, "currency"),
            (r#"{"type":"sale"}"#, "type"),
            (r#"{"revenue":1}"#, "type"),
            (r#"[1]"#, ""),
        ];
        for (body, key) in cases {
            assert_eq!(parse(body).unwrap_err().key, key, "{body}");
        }
        assert_eq!(parse("{").unwrap_err().key, "");
    }

    #[test]
    fn numbers_go_out_as_they_came_in() {
        let e = parse(
            r#"{"type":"conversion","qualityScore":82,"revenue":79.90,"conversionCount":1,
                "eventCount":"4"}"#,
        )
        .unwrap();
        let json = e.to_json_string();
        for part in [
            r#""qualityScore":82,"#,
            r#""revenue":79.9,"#,
            r#""conversionCount":1,"#,
            r#""eventCount":4,"#,
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
        // A float stays a float, a numeric string with a fraction is a number, and an integer
        // past 2^53 goes out as the float conditions compared.
        let e = parse(
            r#"{"type":"event","eventNumber":3,"qualityScore":82.0,"revenue":"10.50",
                "conversionCount":2.0}"#,
        )
        .unwrap();
        let json = e.to_json_string();
        for part in [
            r#""qualityScore":82.0,"#,
            r#""revenue":10.5,"#,
            r#""conversionCount":2.0,"#,
            r#""eventNumber":3,"#,
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
        let big = parse(r#"{"type":"conversion","revenue":18446744073709551615}"#).unwrap();
        let big = big.to_json_string();
        assert!(big.contains(r#""revenue":1.8446744073709552e+19"#), "{big}");
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn a_repeated_key_is_refused_at_every_level() {
        let cases = [
            (
                r#"{"type":"conversion","revenue":1,"revenue":900}"#,
                "revenue",
            ),
            (r#"{"type":"conversion","type":"refund"}"#, "type"),
            (
                r#"{"type":"conversion","firstClick":{"country":"US","country":"DE"}}"#,
                "firstClick.country",
            ),
            (
                r#"{"type":"conversion","lastClick":{},"lastClick":{"country":"DE"}}"#,
                "lastClick",
            ),
            (r#"{"type":"conversion","extra":{"a":1,"a":2}}"#, "extra.a"),
        ];
        for (body, key) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.key, key, "{body}");
            assert!(err.message.contains("twice"), "{err}");
        }
    }

    #[test]
    fn counts_are_whole_numbers_from_zero() {
        for key in ["conversionCount", "eventCount"] {
            for bad in ["-1", "\"-3\"", "1.5", "9007199254740992", "-0.5"] {
                let body = format!(r#"{{"type":"conversion","{key}":{bad}}}"#);
                let err = parse(&body).unwrap_err();
                assert_eq!(err.key, key, "{body}");
                assert!(err.message.contains("whole number"), "{err}");
            }
            for (good, n) in [("0", 0.0), ("2", 2.0), ("2.0", 2.0), ("\"3\"", 3.0)] {
                let body = format!(r#"{{"type":"conversion","{key}":{good}}}"#);
                let field = match key {
                    "eventCount" => NumberField::EventCount,
                    _ => NumberField::ConversionCount,
                };
                assert_eq!(parse(&body).unwrap().number(field), Some(n), "{body}");
            }
        }
        // Revenue may be negative (a refund), and is not a count.
        let refund = parse(r#"{"type":"refund","revenue":-79.9}"#).unwrap();
        assert_eq!(refund.number(NumberField::Revenue), Some(-79.9));
    }

    #[test]
    fn occurred_at_is_an_rfc3339_timestamp() {
        for bad in [r#""yesterday""#, r#""2026-11-27 10:15:00""#, "1764238500"] {
            let body = format!(r#"{{"type":"conversion","occurredAt":{bad}}}"#);
            assert_eq!(parse(&body).unwrap_err().key, "occurredAt", "{body}");
        }
        let e = parse(r#"{"type":"conversion","occurredAt":"2026-11-27T10:15:00+01:00"}"#).unwrap();
        assert_eq!(e.occurred_at.as_deref(), Some("2026-11-27T10:15:00+01:00"));
    }
}
