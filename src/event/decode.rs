//! An events body (one event object or an array of them) read from JSON text straight into
//! [`Event`]s, in one pass and without a [`Doc`] tree in between.
//!
//! What it accepts and refuses is what reading the body with [`strict::doc_from_slice`] and each
//! event with [`Event::from_doc`] does, errors included (a test holds the two equal): a repeated
//! key at any depth or a syntax error, whichever the text reaches first, wins over an event's
//! own fault; an event's faults are reported in the order `Event::from_doc` checks its keys, not
//! the order they are written in; in an array, the first event at fault is the one named. The
//! checks and messages for each value are `wire`'s, handed one value at a time.
//!
//! serde_json reads a body only after a faster hand-written reader (`scan`) declines it: that
//! one reads the common body through the same checks, and declines anything it is not sure
//! of, every refusal among it, so what serde_json reads here stays the reference (the tests
//! and the fuzzer compare the two through [`readers`]).
//!
//! [`strict::doc_from_slice`]: super::strict::doc_from_slice
//! [`Doc`]: super::strict::Doc

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::scan;
use super::strict::{Step, StrictJsonError};
use super::wire::{self, Obj, Raw};
use super::{
    Attribution, Click, ClickField, Event, EventError, EventKind, FlagField, IdField, NumberField,
    TextField,
};

/// Why an events body was refused.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON, or an object repeats a key: as [`super::strict::doc_from_slice`] reports them.
    Json(StrictJsonError),
    /// JSON, but neither an object nor an array: what it is instead ("a number").
    NotEvents(&'static str),
    /// An array with no events in it.
    NoEvents,
    /// An event is not valid.
    Event {
        /// Its position in the array, from 0; `None` for a body of one event object.
        index: Option<usize>,
        /// What is wrong with it.
        error: EventError,
    },
}

/// Reads an events body: one event object, or a non-empty array of them. All or nothing: the
/// first event at fault refuses the whole body.
pub fn events_from_slice(body: &[u8]) -> Result<Vec<Event>, BodyError> {
    // serde_json checks a slice's strings for UTF-8 one at a time, at a cost per string that
    // came to an eighth of reading an event: one check of the whole body instead. A body that
    // is not UTF-8 is read as a slice, for the same error at the same place.
    match std::str::from_utf8(body) {
        // The common body, read by hand in a quarter fewer instructions than below (callgrind,
        // the benchmark's event); whatever that reader is not sure of, every refusal among it,
        // is read again below.
        Ok(text) => match scan::events(text) {
            Some(events) => Ok(events),
            None => read_body(serde_json::Deserializer::from_str(text)),
        },
        Err(_) => read_body(serde_json::Deserializer::from_slice(body)),
    }
}

/// The two readers [`events_from_slice`] tries, apart, for the tests and the fuzzer to compare:
/// where the first reads a body at all, the second must read the same events.
#[doc(hidden)]
pub mod readers {
    use super::{BodyError, Event};

    /// The hand-written reader: `None` where it declines the body.
    pub fn by_hand(body: &[u8]) -> Option<Vec<Event>> {
        super::scan::events(std::str::from_utf8(body).ok()?)
    }

    /// serde_json's reader, the reference: every body, every refusal.
    pub fn by_serde(body: &[u8]) -> Result<Vec<Event>, BodyError> {
        match std::str::from_utf8(body) {
            Ok(text) => super::read_body(serde_json::Deserializer::from_str(text)),
            Err(_) => super::read_body(serde_json::Deserializer::from_slice(body)),
        }
    }
}

fn read_body<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<Vec<Event>, BodyError> {
    let found = Cell::new(None);
    let top = At {
        path: None,
        found: &found,
    };
    let parsed = Read {
        at: top,
        place: Body,
    }
    .deserialize(&mut de)
    .and_then(|events| de.end().map(|()| events));
    match (parsed, found.take()) {
        (_, Some(path)) => Err(BodyError::Json(StrictJsonError::DuplicateKey(path))),
        (Ok(events), None) => events,
        (Err(e), None) => Err(BodyError::Json(StrictJsonError::Syntax(e))),
    }
}

// === Where a value is ===

/// Where the value being read is: the path down to it, to name a repeated key, and where that
/// path is left when one is found.
#[derive(Clone, Copy)]
struct At<'a> {
    path: Option<&'a Node<'a>>,
    found: &'a Cell<Option<Vec<Step>>>,
}

/// One step of a path, linked through the stack: nothing is allocated unless a key repeats.
struct Node<'a> {
    step: Branch<'a>,
    parent: Option<&'a Node<'a>>,
}

#[derive(Clone, Copy)]
enum Branch<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    /// The step from here down to a key or an index.
    fn step(self, step: Branch<'a>) -> Node<'a> {
        Node {
            step,
            parent: self.path,
        }
    }

    /// The place one step further down.
    fn below<'b>(self, node: &'b Node<'b>) -> At<'b>
    where
        'a: 'b,
    {
        At {
            path: Some(node),
            found: self.found,
        }
    }

    /// Records that the object here has `key` twice, and stops the reading.
    fn repeated<E: de::Error>(self, key: &str) -> E {
        let mut path = vec![Step::Key(key.to_owned())];
        let mut node = self.path;
        while let Some(n) = node {
            path.push(match n.step {
                Branch::Key(k) => Step::Key(k.to_owned()),
                Branch::Index(i) => Step::Index(i),
            });
            node = n.parent;
        }
        path.reverse();
        self.found.set(Some(path));
        E::custom(format_args!("duplicate key `{key}`"))
    }
}

/// Past this many keys an object checks for repeats with a hash set instead of a scan.
const SCANNED_KEYS: usize = 32;

/// The keys of one object read so far, other than those counted in a bit set.
#[derive(Default)]
struct Keys<'de> {
    scanned: Vec<Cow<'de, str>>,
    /// Every key, once there are more than a scan should check (an event has about twenty).
    hashed: Option<HashSet<Cow<'de, str>>>,
}

impl<'de> Keys<'de> {
    fn contains(&self, key: &str) -> bool {
        match &self.hashed {
            Some(set) => set.contains(key),
            None => self.scanned.iter().any(|k| k == key),
        }
    }

    fn insert(&mut self, key: Cow<'de, str>) {
        if let Some(set) = &mut self.hashed {
            set.insert(key);
        } else if self.scanned.len() < SCANNED_KEYS {
            self.scanned.push(key);
        } else {
            let mut set: HashSet<_> = self.scanned.drain(..).collect();
            set.insert(key);
            self.hashed = Some(set);
        }
    }
}

/// An object's key, borrowed from the text when it holds no escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

// === What a value is read as ===

/// What the value at some place is read as: an object or an array it reads itself, anything
/// else it is handed as a [`Scalar`].
trait Place<'de>: Sized {
    type Out;

    fn object<A: MapAccess<'de>>(self, at: At<'_>, map: A) -> Result<Self::Out, A::Error>;

    /// An array where none is wanted: checked for repeated keys, then handed over empty.
    fn array<A: SeqAccess<'de>>(self, at: At<'_>, seq: A) -> Result<Self::Out, A::Error> {
        skip_array(at, seq)?;
        Ok(self.scalar(Scalar::Array))
    }

    /// Any value but an object or an array (or one of those, emptied: see [`AnyValue`]).
    fn scalar(self, value: Scalar<'de>) -> Self::Out;
}

/// Reads the value at `at` as `place` says.
struct Read<'a, P> {
    at: At<'a>,
    place: P,
}

impl<'de, P: Place<'de>> DeserializeSeed<'de> for Read<'_, P> {
    type Value = P::Out;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<P::Out, D::Error> {
        // `deserialize_any` as `strict` calls it: the same syntax errors and nesting limit.
        deserializer.deserialize_any(self)
    }
}

impl<'de, P: Place<'de>> Visitor<'de> for Read<'_, P> {
    type Value = P::Out;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<P::Out, E> {
        // As `strict`: a number serde_json parsed is always finite.
        Ok(self
            .place
            .scalar(Number::from_f64(v).map_or(Scalar::Null, Scalar::Number)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Text(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Text(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Text(Cow::Owned(v))))
    }

    fn visit_unit<E>(self) -> Result<P::Out, E> {
        Ok(self.place.scalar(Scalar::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<P::Out, A::Error> {
        self.place.array(self.at, seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<P::Out, A::Error> {
        self.place.object(self.at, map)
    }
}

/// Reads every element of an array where nothing reads them, refusing repeated keys in them.
fn skip_array<'de, A: SeqAccess<'de>>(at: At<'_>, mut seq: A) -> Result<(), A::Error> {
    for index in 0.. {
        let node = at.step(Branch::Index(index));
        let read = Read {
            at: at.below(&node),
            place: AnyValue,
        };
        if seq.next_element_seed(read)?.is_none() {
            break;
        }
    }
    Ok(())
}

/// Any value, as the [`Scalar`] the checks of `wire` read.
struct AnyValue;

/// One value as the checks of `wire` read it: of an array or an object, only what it is (its
/// contents were read for repeated keys, and no check reads more).
pub(super) enum Scalar<'de> {
    Null,
    Bool(bool),
    Number(Number),
    Text(Cow<'de, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    pub(super) fn raw(&self) -> Raw<'_> {
        match self {
            Scalar::Null => Raw::Null,
            Scalar::Bool(b) => Raw::Bool(*b),
            Scalar::Number(n) => Raw::Number(n),
            Scalar::Text(s) => Raw::Text(s),
            Scalar::Array => Raw::Array,
            // Never read as an object: `wire` only names it ("found an object").
            Scalar::Object => Raw::Object(Obj::Doc(&[])),
        }
    }
}

impl<'de> Place<'de> for AnyValue {
    type Out = Scalar<'de>;

    fn object<A: MapAccess<'de>>(self, at: At<'_>, mut map: A) -> Result<Scalar<'de>, A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key_seed(Key)? {
            if keys.contains(&key) {
                return Err(at.repeated(&key));
            }
            {
                let node = at.step(Branch::Key(&key));
                map.next_value_seed(Read {
                    at: at.below(&node),
                    place: AnyValue,
                })?;
            }
            keys.insert(key);
        }
        Ok(Scalar::Object)
    }

    fn scalar(self, value: Scalar<'de>) -> Scalar<'de> {
        value
    }
}

/// The whole body: an event object, or an array of them.
struct Body;

impl<'de> Place<'de> for Body {
    type Out = Result<Vec<Event>, BodyError>;

    fn object<A: MapAccess<'de>>(self, at: At<'_>, map: A) -> Result<Self::Out, A::Error> {
        let mut events = vec![Event::new(EventKind::Conversion)];
        let read = EventObject {
            event: &mut events[0],
        }
        .object(at, map)?;
        Ok(read
            .map(|()| events)
            .map_err(|error| BodyError::Event { index: None, error }))
    }

    fn array<A: SeqAccess<'de>>(self, at: At<'_>, mut seq: A) -> Result<Self::Out, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
        let mut fault = None;
        for index in 0.. {
            let node = at.step(Branch::Index(index));
            let at = at.below(&node);
            if fault.is_some() {
                // The body is refused: what follows is only read for a syntax error or a
                // repeated key, which would be reported instead.
                match seq.next_element_seed(Read {
                    at,
                    place: AnyValue,
                })? {
                    Some(_) => continue,
                    None => break,
                }
            }
            // Each event is read where it stays: an event is a kilobyte to move.
            events.push(Event::new(EventKind::Conversion));
            let event = events.last_mut().expect("just pushed");
            match seq.next_element_seed(Read {
                at,
                place: EventObject { event },
            })? {
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    fault = Some(BodyError::Event {
                        index: Some(index),
                        error,
                    })
                }
                None => {
                    events.pop();
                    break;
                }
            }
        }
        Ok(match fault {
            Some(fault) => Err(fault),
            None if events.is_empty() => Err(BodyError::NoEvents),
            None => Ok(events),
        })
    }

    fn scalar(self, value: Scalar<'de>) -> Self::Out {
        Err(BodyError::NotEvents(value.raw().describe()))
    }
}

// === One event ===

/// A key of the event object that [`Event::from_doc`] reads, as `wire::parse_raw` checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    Type,
    EventNumber,
    Id,
    Transaction,
    Visitor,
    OccurredAt,
    Number(NumberField),
    Flag(FlagField),
    Ident(IdField),
    Text(TextField),
    Click(Attribution),
}

impl Known {
    /// The key named `key`, with its rank: its place in the order `wire::parse_raw` checks the
    /// keys (a lower rank's fault is the one reported), and its bit among the keys seen. A test
    /// holds these to that order and to the fields' names.
    pub(super) fn of(key: &str) -> Option<(Known, u32)> {
        use Attribution::{First, Last};
        // By length first (a jump), then one comparison of text for most keys.
        let known = match (key.len(), key) {
            (4, "type") => (Known::Type, 0),
            (11, "eventNumber") => (Known::EventNumber, 1),
            (2, "id") => (Known::Id, 2),
            (11, "transaction") => (Known::Transaction, 3),
            (7, "visitor") => (Known::Visitor, 4),
            (10, "occurredAt") => (Known::OccurredAt, 5),
            (7, "revenue") => (Known::Number(NumberField::Revenue), 6),
            (12, "qualityScore") => (Known::Number(NumberField::QualityScore), 7),
            (15, "conversionCount") => (Known::Number(NumberField::ConversionCount), 8),
            (10, "eventCount") => (Known::Number(NumberField::EventCount), 9),
            (15, "isFromGoogleAds") => (Known::Flag(FlagField::IsFromGoogleAds), 10),
            (17, "isFromFacebookAds") => (Known::Flag(FlagField::IsFromFacebookAds), 11),
            (15, "isFromTikTokAds") => (Known::Flag(FlagField::IsFromTikTokAds), 12),
            (6, "linkId") => (Known::Ident(IdField::LinkId), 13),
            (8, "targetId") => (Known::Ident(IdField::TargetId), 14),
            (8, "currency") => (Known::Text(TextField::Currency), 15),
            (10, "firstClick") => (Known::Click(First), 16),
            (9, "lastClick") => (Known::Click(Last), 17),
            _ => return None,
        };
        Some(known)
    }

    /// The key's name on the wire.
    pub(super) fn name(self) -> &'static str {
        match self {
            Known::Type => "type",
            Known::EventNumber => "eventNumber",
            Known::Id => "id",
            Known::Transaction => "transaction",
            Known::Visitor => "visitor",
            Known::OccurredAt => "occurredAt",
            Known::Number(field) => field.name(),
            Known::Flag(field) => field.name(),
            Known::Ident(field) => field.name(),
            Known::Text(field) => field.name(),
            Known::Click(Attribution::First) => "firstClick",
            Known::Click(Attribution::Last) => "lastClick",
        }
    }
}

/// Of the faults found so far in one object, the one its reader reports: the one at the key
/// it checks first.
#[derive(Default)]
struct Fault(Option<(u32, EventError)>);

impl Fault {
    fn note(&mut self, rank: u32, error: EventError) {
        if self.0.as_ref().is_none_or(|(first, _)| rank < *first) {
            self.0 = Some((rank, error));
        }
    }
}

/// One event, read into `event` (a new one): an object of the keys [`Known`] lists (any others
/// are read and ignored).
struct EventObject<'e> {
    event: &'e mut Event,
}

/// An event's keys kept until its end: its kind depends on two of them, the clicks on both.
#[derive(Default)]
pub(super) struct Later<'de> {
    name: Option<Scalar<'de>>,
    number: Option<Scalar<'de>>,
    /// Whether `firstClick` was sent as an object (and so filled in).
    pub(super) first: bool,
    /// Whether `lastClick` was sent as an object.
    pub(super) last: bool,
}

impl<'de> Place<'de> for EventObject<'_> {
    type Out = Result<(), EventError>;

    fn object<A: MapAccess<'de>>(self, at: At<'_>, mut map: A) -> Result<Self::Out, A::Error> {
        let event = self.event;
        let mut later = Later::default();
        let mut seen = 0u32;
        let mut others = Keys::default();
        let mut fault = Fault::default();
        while let Some(key) = map.next_key_seed(Key)? {
            let known = Known::of(&key);
            let repeated = match known {
                Some((_, rank)) => seen & (1 << rank) != 0,
                None => others.contains(&key),
            };
            if repeated {
                return Err(at.repeated(&key));
            }
            let node = at.step(Branch::Key(&key));
            let here = at.below(&node);
            let Some((known, rank)) = known else {
                map.next_value_seed(Read {
                    at: here,
                    place: AnyValue,
                })?;
                others.insert(key);
                continue;
            };
            seen |= 1 << rank;
            let read = match known {
                Known::Click(attribution) => {
                    let (click, sent) = match attribution {
                        Attribution::First => (&mut event.first_click, &mut later.first),
                        Attribution::Last => (&mut event.last_click, &mut later.last),
                    };
                    let place = ClickObject {
                        key: known.name(),
                        click,
                    };
                    map.next_value_seed(Read { at: here, place })?
                        .map(|read| *sent = read)
                }
                _ => {
                    let value = map.next_value_seed(Read {
                        at: here,
                        place: AnyValue,
                    })?;
                    set(event, &mut later, known, value)
                }
            };
            if let Err(error) = read {
                fault.note(rank, error);
            }
        }
        // The kind's fault first, as `wire::parse_raw` checks it first (the event is dropped
        // with the body at any fault, finished or not).
        Ok(match (finish(event, &later), fault.0) {
            (Err(error), _) | (Ok(()), Some((_, error))) => Err(error),
            (Ok(()), None) => Ok(()),
        })
    }

    fn scalar(self, value: Scalar<'de>) -> Self::Out {
        wire::parse_raw(value.raw()).map(|_| ())
    }
}

/// The end of one event read without a fault: its kind, from the `type` and `eventNumber` kept
/// for it, and a single click as both.
pub(super) fn finish(event: &mut Event, later: &Later<'_>) -> Result<(), EventError> {
    let kind = wire::kind(
        later.name.as_ref().map(Scalar::raw),
        later.number.as_ref().map(Scalar::raw),
    )?;
    event.kind = kind;
    if let Some(n) = kind.event_number() {
        event.set_number(NumberField::EventNumber, Some(f64::from(n)));
    }
    // A visitor with a single click: that click is both the first and the last (as in
    // `wire::parse_raw`).
    match (later.first, later.last) {
        (true, false) => event.last_click = event.first_click.clone(),
        (false, true) => event.first_click = event.last_click.clone(),
        _ => {}
    }
    Ok(())
}

/// Checks one value of the event and keeps it: in the event, or for its end.
pub(super) fn set<'de>(
    event: &mut Event,
    later: &mut Later<'de>,
    key: Known,
    value: Scalar<'de>,
) -> Result<(), EventError> {
    let name = key.name();
    let raw = Some(value.raw());
    match key {
        Known::Type => later.name = Some(value),
        Known::EventNumber => later.number = Some(value),
        Known::Id => event.id = wire::id(raw, name)?,
        Known::Transaction => event.transaction = wire::id(raw, name)?,
        Known::Visitor => event.visitor = wire::id(raw, name)?,
        Known::OccurredAt => event.occurred_at = wire::timestamp(raw, name)?,
        Known::Number(field) => {
            let sent = match field {
                NumberField::ConversionCount | NumberField::EventCount => wire::count(raw, name)?,
                _ => wire::number(raw, name)?,
            };
            event.set_number_as_sent(
                field,
                sent.map(|n| n.value),
                sent.is_some_and(|n| n.integer),
            );
        }
        Known::Flag(field) => event.flags[field.slot()] = wire::flag(raw, name)?,
        Known::Ident(field) => event.ids[field.slot()] = wire::id(raw, name)?,
        Known::Text(field) => event.texts[field.slot()] = wire::text(raw, name)?,
        Known::Click(_) => unreachable!("a click is read by ClickObject"),
    }
    Ok(())
}

/// The click at `key`, read into `click` (a new one): an object of click fields, or `null`
/// for none (read as `false`).
struct ClickObject<'c> {
    key: &'static str,
    click: &'c mut Click,
}

/// The click field named `key` (by length first, as [`Known::of`]); a test holds this to the
/// fields' names.
pub(super) fn click_field(key: &str) -> Option<ClickField> {
    Some(match (key.len(), key) {
        (10, "utm_source") => ClickField::UtmSource,
        (10, "utm_medium") => ClickField::UtmMedium,
        (12, "utm_campaign") => ClickField::UtmCampaign,
        (11, "utm_content") => ClickField::UtmContent,
        (8, "utm_term") => ClickField::UtmTerm,
        (7, "country") => ClickField::Country,
        (10, "deviceType") => ClickField::DeviceType,
        (8, "referrer") => ClickField::Referrer,
        (7, "clickId") => ClickField::ClickId,
        (10, "externalId") => ClickField::ExternalId,
        _ => return None,
    })
}

impl<'de> Place<'de> for ClickObject<'_> {
    type Out = Result<bool, EventError>;

    fn object<A: MapAccess<'de>>(self, at: At<'_>, mut map: A) -> Result<Self::Out, A::Error> {
        let click = self.click;
        let mut seen = 0u32;
        let mut others = Keys::default();
        let mut fault = Fault::default();
        while let Some(key) = map.next_key_seed(Key)? {
            let field = click_field(&key);
            let repeated = match field {
                Some(field) => seen & (1 << field.slot()) != 0,
                None => others.contains(&key),
            };
            if repeated {
                return Err(at.repeated(&key));
            }
            let value = {
                let node = at.step(Branch::Key(&key));
                map.next_value_seed(Read {
                    at: at.below(&node),
                    place: AnyValue,
                })?
            };
            let Some(field) = field else {
                others.insert(key);
                continue;
            };
            seen |= 1 << field.slot();
            match wire::click_text(Some(value.raw()), self.key, field) {
                Ok(text) => click.set(field, text),
                Err(error) => fault.note(field.slot() as u32, error),
            }
        }
        Ok(match fault.0 {
            Some((_, error)) => Err(error),
            None => Ok(true),
        })
    }

    fn scalar(self, value: Scalar<'de>) -> Self::Out {
        wire::click(Some(value.raw()), self.key).map(|click| click.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key, in the order `wire::parse_raw` checks them.
    const ORDER: [Known; 18] = [
        Known::Type,
        Known::EventNumber,
        Known::Id,
        Known::Transaction,
        Known::Visitor,
        Known::OccurredAt,
        Known::Number(NumberField::Revenue),
        Known::Number(NumberField::QualityScore),
        Known::Number(NumberField::ConversionCount),
        Known::Number(NumberField::EventCount),
        Known::Flag(FlagField::IsFromGoogleAds),
        Known::Flag(FlagField::IsFromFacebookAds),
        Known::Flag(FlagField::IsFromTikTokAds),
        Known::Ident(IdField::LinkId),
        Known::Ident(IdField::TargetId),
        Known::Text(TextField::Currency),
        Known::Click(Attribution::First),
        Known::Click(Attribution::Last),
    ];

    #[test]
    fn every_known_key_is_found_by_its_name_with_its_rank() {
        for (rank, known) in ORDER.into_iter().enumerate() {
            assert_eq!(Known::of(known.name()), Some((known, rank as u32)));
        }
        for field in ClickField::ALL {
            assert_eq!(click_field(field.name()), Some(field));
        }
        assert_eq!(Known::of("Type"), None);
        assert_eq!(click_field("Country"), None);
    }
}
