//! A compiled webhook: the events it listens to, its conditions and its request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::event::{Event, EventKind};

use super::ast::{Method, Span};
use super::diagnostic::SourceFile;
use super::predicate::{Plan, Predicate};
use super::url::UrlTemplate;

/// The default per-attempt deadline (the product page's "respond under 5 seconds").
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A set of event kinds, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct EventSet(u16);

impl EventSet {
    /// Every custom event, `on event`.
    pub const ANY_CUSTOM: EventSet = EventSet(0b1111_1111_1100);

    /// Adds a kind.
    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= kind.bit();
    }

    /// Adds every kind of another set.
    pub fn extend(&mut self, other: EventSet) {
        self.0 |= other.0;
    }

    /// Whether the set holds a kind.
    #[inline]
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether every kind of `other` is in this set.
    pub fn covers(self, other: EventSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the set holds any custom event.
    pub fn has_custom(self) -> bool {
        self.0 & EventSet::ANY_CUSTOM.0 != 0
    }

    /// The kinds in the set, conversion first.
    pub fn kinds(self) -> impl Iterator<Item = EventKind> {
        [EventKind::Conversion, EventKind::Refund]
            .into_iter()
            .chain((1..=EventKind::MAX_CUSTOM).map(EventKind::Custom))
            .filter(move |k| self.contains(*k))
    }
}

/// Where the sidecar reads values that must not live in rule files.
pub trait Env: Send + Sync {
    /// The value of a variable, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A value given literally or read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secretish {
    /// Written in the rule file.
    Literal(String),
    /// `env("VAR")`: the variable's name, and its value when the rules were loaded.
    Env {
        /// The variable's name.
        var: String,
        /// Its value at load time; `None` when unset.
        value: Option<String>,
    },
}

impl Secretish {
    /// The value to send, if there is one.
    pub fn value(&self) -> Option<&str> {
        match self {
            Secretish::Literal(v) => Some(v),
            Secretish::Env { value, .. } => value.as_deref(),
        }
    }
}

/// An extra header sent with every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: Secretish,
}

/// Where and how a webhook's request goes.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST` carries the event as JSON; `GET` carries nothing but the URL.
    pub method: Method,
    /// The URL with its tokens.
    pub url: UrlTemplate,
    /// Extra headers.
    pub headers: Vec<Header>,
    /// The deadline for one attempt.
    pub timeout: Duration,
    /// How many times a failed delivery is tried again; `None` follows the retry schedule.
    pub retries: Option<u32>,
    /// The environment variable holding the signing secret.
    pub secret: Option<Secretish>,
}

/// One `when` clause: its compiled condition and the text it came from.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The condition as written.
    pub source: String,
    /// Where it was written.
    pub span: Span,
    /// The compiled condition.
    pub predicate: Predicate,
}

/// A compiled webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its name, unique across the rules directory.
    pub name: String,
    /// The file it was written in.
    pub source: Arc<SourceFile>,
    /// Where its name was written.
    pub span: Span,
    /// The events that fire it.
    pub events: EventSet,
    /// Its `when` clauses, all of which must hold.
    pub conditions: Vec<Condition>,
    /// Where it sends.
    pub request: Request,
    /// Compiled and testable, never fired by the sidecar.
    pub disabled: bool,
    /// The conditions laid out for matching (built from `conditions` by [`Plan::new`]).
    pub plan: Plan,
}

impl Webhook {
    /// Whether this webhook fires for an event (ignoring `disabled`).
    #[inline]
    pub fn fires_for(&self, event: &Event) -> bool {
        self.events.contains(event.kind) && self.plan.holds(event)
    }
}
