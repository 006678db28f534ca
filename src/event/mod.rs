//! The event model the predicates read: fields in fixed slots, first and last click side by side.

pub mod decode;
pub mod field;
mod key;
mod scan;
pub mod strict;
pub(crate) mod timestamp;
mod wire;
pub(crate) mod write;

pub use field::{
    Attribution, ClickField, CodeList, Field, FieldRef, FieldType, FlagField, IdField, NumberField,
    TextField,
};
pub use key::TextKey;
pub use wire::EventError;
pub(crate) use wire::describe;
#[cfg(test)]
pub(crate) use wire::describe_doc;

use std::fmt;

/// What happened in the tracker: the `on` part of a webhook matches this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A conversion was recorded (sale, lead, signup).
    Conversion,
    /// A refund was processed.
    Refund,
    /// Custom event `event1`..`event10`; the number is always in 1..=10.
    Custom(u8),
}

impl EventKind {
    /// The highest custom event number.
    pub const MAX_CUSTOM: u8 = 10;

    /// The wire name: `conversion`, `refund` or `event3`.
    pub fn wire_name(self) -> String {
        match self {
            EventKind::Conversion => "conversion".to_owned(),
            EventKind::Refund => "refund".to_owned(),
            EventKind::Custom(n) => format!("event{n}"),
        }
    }

    /// A bit unique to this kind, for sets of kinds (bit 0 conversion, 1 refund, 2..=11 events).
    #[inline]
    pub fn bit(self) -> u16 {
        match self {
            EventKind::Conversion => 1,
            EventKind::Refund => 1 << 1,
            EventKind::Custom(n) => 1 << (1 + n as u16),
        }
    }

    /// The custom event number, if this is a custom event.
    pub fn event_number(self) -> Option<u8> {
        match self {
            EventKind::Custom(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wire_name())
    }
}

/// The attributable fields of one click (first or last), indexed by [`ClickField::slot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    /// One value per [`ClickField`], `None` when the tracker did not send it.
    values: [Option<String>; 10],
    /// Each value's [`TextKey`], kept in step with `values` by [`Click::set`].
    keys: [TextKey; 10],
}

impl Default for Click {
    fn default() -> Click {
        Click {
            values: Default::default(),
            keys: [TextKey::MISSING; 10],
        }
    }
}

impl Click {
    /// The value of one field of this click.
    #[inline]
    pub fn get(&self, field: ClickField) -> Option<&str> {
        self.values[field.slot()].as_deref()
    }

    /// The key of one field's value: upper case for `country`, which compares ignoring case.
    #[inline]
    pub fn key(&self, field: ClickField) -> TextKey {
        self.keys[field.slot()]
    }

    /// Sets (or, with `None`, clears) one field.
    pub fn set(&mut self, field: ClickField, value: Option<String>) {
        self.keys[field.slot()] = TextKey::of_value(value.as_deref(), field.ignores_case());
        self.values[field.slot()] = value;
    }

    /// Whether the tracker sent no attributable field for this click.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

/// One tracker event, as compiled predicates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The tracker's id for this event; the sidecar deduplicates on it.
    pub id: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// The conversion's transaction id (`[transaction]`).
    pub transaction: Option<String>,
    /// The visitor's id (`[visitor]`).
    pub visitor: Option<String>,
    /// When the event happened, as the tracker wrote it (`[timestamp]`).
    pub occurred_at: Option<String>,
    /// Indexed by [`NumberField::slot`]; `eventNumber` is set for custom events. Conditions
    /// compare these; set them with [`Event::set_number`] to keep a whole number whole on the
    /// wire.
    pub numbers: [Option<f64>; 5],
    /// Bit [`NumberField::slot`] set: the number was sent as an integer (`82`, not `82.0`) and
    /// goes out as one. Only set for values an `f64` holds exactly.
    integers: u8,
    /// Indexed by [`FlagField::slot`].
    pub flags: [Option<bool>; 3],
    /// Indexed by [`IdField::slot`].
    pub ids: [Option<String>; 2],
    /// Indexed by [`TextField::slot`].
    pub texts: [Option<String>; 1],
    /// The visitor's first click.
    pub first_click: Click,
    /// The visitor's most recent click before the event.
    pub last_click: Click,
}

/// A field's value in one event, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Text(&'a str),
    Number(f64),
    Flag(bool),
    /// The tracker did not send the field.
    Missing,
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Number(n) => write!(f, "{}", format_number(*n)),
            Value::Flag(b) => write!(f, "{b}"),
            Value::Missing => f.write_str("not set"),
        }
    }
}

impl Value<'_> {
    /// The value as it lands in a URL token, before encoding; missing renders empty.
    pub fn render(&self) -> String {
        match self {
            Value::Text(s) => (*s).to_owned(),
            Value::Number(n) => format_number(*n),
            Value::Flag(b) => b.to_string(),
            Value::Missing => String::new(),
        }
    }
}

/// Formats a number without a trailing `.0` for whole values (`50`, `49.99`).
pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl Event {
    /// A new event of the given kind with no field set.
    pub fn new(kind: EventKind) -> Event {
        let mut event = Event {
            id: None,
            kind,
            transaction: None,
            visitor: None,
            occurred_at: None,
            numbers: [None; 5],
            integers: 0,
            flags: [None; 3],
            ids: [None, None],
            texts: [None],
            first_click: Click::default(),
            last_click: Click::default(),
        };
        if let Some(n) = kind.event_number() {
            event.set_number(NumberField::EventNumber, Some(f64::from(n)));
        }
        event
    }

    /// Sets a number field; a whole value is written back as an integer (`1`, not `1.0`).
    pub fn set_number(&mut self, field: NumberField, value: Option<f64>) {
        let whole = value.is_some_and(|n| n.fract() == 0.0);
        self.set_number_as_sent(field, value, whole);
    }

    /// Sets a number field as the tracker sent it: `integer` when it was written without a
    /// fraction or exponent (`82`, or the string `"82"`), so that it goes out the same way.
    pub(crate) fn set_number_as_sent(
        &mut self,
        field: NumberField,
        value: Option<f64>,
        integer: bool,
    ) {
        self.numbers[field.slot()] = value;
        let bit = 1 << field.slot();
        // Past 2^53 an f64 is not the integer that was sent: write it as the float it is.
        if integer && value.is_some_and(|n| n.abs() <= wire::MAX_EXACT) {
            self.integers |= bit;
        } else {
            self.integers &= !bit;
        }
    }

    /// Whether a number field goes out as an integer (see [`Event::set_number`]).
    pub fn number_is_integer(&self, field: NumberField) -> bool {
        self.integers & (1 << field.slot()) != 0 && self.numbers[field.slot()].is_some()
    }

    /// Parses the tracker's JSON for one event; see [`EventError`] for what is rejected.
    ///
    /// A `Value` has already lost any repeated key (serde_json keeps the last): read JSON text
    /// with [`Event::from_json_str`] or [`strict::from_slice`] to refuse those.
    pub fn from_json(value: &serde_json::Value) -> Result<Event, EventError> {
        wire::parse_event(value)
    }

    /// Reads one event from a [`strict::Doc`] (what [`strict::doc_from_slice`] reads, repeated
    /// keys already refused): the checks of [`Event::from_json`] without a `Value`'s
    /// allocations.
    pub fn from_doc(doc: &strict::Doc<'_>) -> Result<Event, EventError> {
        wire::parse_doc_event(doc)
    }

    /// Parses one event from JSON text; an object that repeats a key is refused.
    pub fn from_json_str(text: &str) -> Result<Event, EventError> {
        let value = strict::from_str(text).map_err(EventError::from_strict)?;
        Event::from_json(&value)
    }

    /// The event in the wire format, with both clicks written out.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The event in the wire format as JSON text (what the outbox stores and deliveries carry).
    pub fn to_json_string(&self) -> String {
        // Sized for a typical event up front, so it is not regrown on the way.
        let mut out = String::with_capacity(768);
        write::event(self, &mut out);
        out
    }

    /// The click a condition with this attribution reads.
    #[inline]
    pub fn click(&self, attribution: Attribution) -> &Click {
        match attribution {
            Attribution::First => &self.first_click,
            Attribution::Last => &self.last_click,
        }
    }

    /// The text of a click field, from the chosen click.
    #[inline]
    pub fn click_text(&self, attribution: Attribution, field: ClickField) -> Option<&str> {
        self.click(attribution).get(field)
    }

    /// The value of a number field.
    #[inline]
    pub fn number(&self, field: NumberField) -> Option<f64> {
        self.numbers[field.slot()]
    }

    /// The value of a flag field.
    #[inline]
    pub fn flag(&self, field: FlagField) -> Option<bool> {
        self.flags[field.slot()]
    }

    /// The value of an event text field.
    #[inline]
    pub fn text(&self, field: TextField) -> Option<&str> {
        self.texts[field.slot()].as_deref()
    }

    /// The value of an id field.
    #[inline]
    pub fn id_value(&self, field: IdField) -> Option<&str> {
        self.ids[field.slot()].as_deref()
    }

    /// The value at a resolved field, for explanations and URL tokens.
    #[inline]
    pub fn value(&self, field: FieldRef) -> Value<'_> {
        let v = match field {
            FieldRef::Click(a, c) => self.click_text(a, c).map(Value::Text),
            FieldRef::Text(t) => self.text(t).map(Value::Text),
            FieldRef::Number(n) => self.number(n).map(Value::Number),
            FieldRef::Flag(f) => self.flag(f).map(Value::Flag),
            FieldRef::Id(i) => self.id_value(i).map(Value::Text),
        };
        v.unwrap_or(Value::Missing)
    }
}
