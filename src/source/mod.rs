//! Tracker sources: a postback request on a source's route, mapped to a whc event.
//!
//! A `source` block compiles to a [`Source`]: its route, its secret and, for every event field
//! it fills, where in the request the value is read. [`Source::map`] turns one [`Request`] into
//! one [`Event`] or a [`SourceError`] that names the parameter at fault. Pure: no I/O, no HTTP
//! server types, so `whc explain` and the cases run the same mapping the sidecar does.

mod map;
pub mod request;

pub use map::SourceError;
pub use request::Request;

use crate::event::{Event, EventKind, FieldRef};
use crate::lang::ast::{Method, Place, Span};

/// One compiled `source` block.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name in the rules.
    pub name: String,
    /// The file it was written in.
    pub file: String,
    /// Where in that file.
    pub span: Span,
    /// The methods it answers (GET, POST or both).
    pub methods: Vec<Method>,
    /// The path on the events listener, such as `/in/voluum`.
    pub path: String,
    /// The shared secret the tracker sends, when the source has one.
    pub secret: Option<Secret>,
    /// How the event type is decided.
    pub kind: KindRule,
    /// Every other field it fills, in the order written.
    pub fields: Vec<Mapping>,
    /// How the event id is made.
    pub id: IdRule,
}

/// A source's shared secret: where the tracker puts it, and the variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Query parameter, header, ...
    pub place: Place,
    /// The parameter's or header's name.
    pub name: String,
    /// The environment variable holding the expected value (read on each request).
    pub env: String,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// A part of the request, by name (a JSON pointer for `json`).
    Request(Place, String),
    /// The same text for every request.
    Literal(String),
}

impl From {
    /// How the value is described in an error: `query parameter "et"`.
    pub fn describe(&self) -> String {
        match self {
            From::Request(Place::Query, n) => format!("query parameter \"{n}\""),
            From::Request(Place::Form, n) => format!("form field \"{n}\""),
            From::Request(Place::Json, n) => format!("JSON value \"{n}\""),
            From::Request(Place::Header, n) => format!("header \"{n}\""),
            From::Request(Place::Param, n) => format!("parameter \"{n}\""),
            From::Literal(v) => format!("the literal \"{v}\""),
        }
    }

    /// The key a 400 answer names: the parameter, field, pointer or header.
    pub fn key(&self) -> &str {
        match self {
            From::Request(_, n) => n,
            From::Literal(_) => "",
        }
    }
}

/// An event field a mapping fills, besides the type and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `transaction`
    Transaction,
    /// `visitor`
    Visitor,
    /// `occurredAt`, an RFC 3339 timestamp.
    OccurredAt,
    /// A condition field, a click field with its click.
    Field(FieldRef),
}

impl Target {
    /// The names of the targets that are not condition fields.
    pub const OTHER_NAMES: [&'static str; 3] = ["transaction", "visitor", "occurredAt"];

    /// The target a name stands for, besides condition fields.
    pub fn other(name: &str) -> Option<Target> {
        match name {
            "transaction" => Some(Target::Transaction),
            "visitor" => Some(Target::Visitor),
            "occurredAt" => Some(Target::OccurredAt),
            _ => None,
        }
    }
}

/// One field filled from the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// The field.
    pub target: Target,
    /// Where its value is read.
    pub from: From,
}

/// What a type or status value means: an event, or nothing to store (`-> ignore`, for a
/// tracker's `pending` or `hold` that a later postback settles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Store this event and fan it out.
    Event(EventKind),
    /// Answer the tracker that all is well, and store nothing.
    Ignore,
}

/// A value map for the type or the status: the text sent, and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct KindMap {
    /// Where the value is read.
    pub from: From,
    /// Each value and its outcome; empty means whc's own names (`conversion`, `event3`).
    pub entries: Vec<(String, Outcome)>,
    /// The outcome for a value not in the map (`else`), or for no value at all.
    pub default: Option<Outcome>,
}

/// What a request on a source's route became.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An event to store and fan out.
    Event(Box<Event>),
    /// A request the source's value map says to ignore.
    Ignored(Ignored),
}

/// A request a source ignores: which parameter said so, with which value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The parameter, form field, JSON pointer or header read.
    pub key: String,
    /// The value it had (empty when the map's `else` applied to a request without it).
    pub value: String,
}

impl Ignored {
    /// The reason, for the tracker's answer and the logs: `status "pending" is ignored`.
    pub fn reason(&self) -> String {
        format!("{} {:?} is ignored by the source", self.key, self.value)
    }
}

impl Mapped {
    /// The event, when the request made one.
    pub fn event(self) -> Option<Event> {
        match self {
            Mapped::Event(event) => Some(*event),
            Mapped::Ignored(_) => None,
        }
    }
}

/// How a source decides the event type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KindRule {
    /// `status = ...`: read first; when the request carries it, it decides.
    pub status: Option<KindMap>,
    /// `type = ...`: decides when there is no status.
    pub type_: Option<KindMap>,
    /// `negative revenue -> refund`: the event a negative revenue makes.
    pub negative_revenue: Option<EventKind>,
}

/// How a source makes the event id the outbox deduplicates on.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum IdRule {
    /// None: whc makes a new id for every request, so a retried postback fires again.
    #[default]
    None,
    /// The tracker's own id.
    From(From),
    /// A digest of the source's name and these mapped values (`type` for the event type).
    Hash(Vec<HashPart>),
}

/// One input of an id hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPart {
    /// The mapped event type.
    Type,
    /// A mapped field.
    Target(Target),
}

impl Source {
    /// Whether the source answers this method.
    pub fn allows(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.as_http() == method)
    }

    /// The methods as `GET, POST`, for a 405 answer.
    pub fn methods_text(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(|m| m.as_http()).collect();
        names.join(", ")
    }
}
