//! The mapping itself: from a request's values to an event's fields, with errors that name the
//! parameter a tracker operator has to fix.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::event::timestamp::{from_unix_text, is_rfc3339};
use crate::event::{Attribution, Event, EventKind, FieldRef, NumberField};
use crate::lang::Env;
use crate::lang::ast::Place;

use super::{From, HashPart, IdRule, Ignored, KindMap, Mapped, Outcome, Request, Source, Target};

/// Why a request was refused: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// The parameter, form field, JSON pointer or header at fault; empty for the request.
    pub key: String,
    /// What is wrong, in plain words.
    pub message: String,
    /// The secret was missing or wrong (a 401, not a 400).
    pub unauthorised: bool,
}

impl SourceError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> SourceError {
        SourceError {
            key: key.into(),
            message: message.into(),
            unauthorised: false,
        }
    }

    fn bad(from: &From, message: impl Into<String>) -> SourceError {
        SourceError::new(
            from.key(),
            format!("{} {}", from.describe(), message.into()),
        )
    }
}

/// Whether a constant-time comparison of two secrets holds.
pub type SecretsMatch = fn(&[u8], &[u8]) -> bool;

impl Source {
    /// Checks the request's secret against the environment variable, with `matches` (a
    /// constant-time comparison). A source without a secret lets every request in; one whose
    /// variable is unset lets none in.
    pub fn authorise(
        &self,
        req: &Request,
        env: &dyn Env,
        matches: SecretsMatch,
    ) -> Result<(), SourceError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let refused = |message: &str| SourceError {
            key: secret.name.clone(),
            message: message.to_owned(),
            unauthorised: true,
        };
        let Some(expected) = env.var(&secret.env).filter(|v| !v.is_empty()) else {
            return Err(refused(
                "the source's secret is not configured on the sidecar; nothing is accepted",
            ));
        };
        let from = From::Request(secret.place, secret.name.clone());
        let given = read(req, &from).ok().flatten().unwrap_or_default();
        if matches(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(refused("missing or wrong secret"))
        }
    }

    /// Maps a request to one event, or to nothing when its type or status is one the source
    /// ignores (the secret is checked apart, by [`Source::authorise`]).
    pub fn map(&self, req: &Request) -> Result<Mapped, SourceError> {
        let mut event = Event::new(EventKind::Conversion);
        let mut first_set = false;
        let mut last_set = false;
        for m in &self.fields {
            let Some(value) = read(req, &m.from)? else {
                continue;
            };
            match m.target {
                Target::Transaction => event.transaction = Some(value),
                Target::Visitor => event.visitor = Some(value),
                Target::OccurredAt if is_rfc3339(&value) => event.occurred_at = Some(value),
                Target::OccurredAt => match from_unix_text(&value) {
                    Some(time) => event.occurred_at = Some(time),
                    None => {
                        return Err(SourceError::bad(
                            &m.from,
                            format!(
                                "must be an RFC 3339 timestamp such as \"2026-11-27T10:15:00Z\" or a Unix time in seconds or milliseconds, found {value:?}"
                            ),
                        ));
                    }
                },
                Target::Field(field) => {
                    set_field(&mut event, field, value, &m.from)?;
                    match field.attribution() {
                        Some(Attribution::First) => first_set = true,
                        Some(Attribution::Last) => last_set = true,
                        None => {}
                    }
                }
            }
        }
        // A visitor with a single click: that click is both the first and the last.
        if first_set != last_set {
            if first_set {
                event.last_click = event.first_click.clone();
            } else {
                event.first_click = event.last_click.clone();
            }
        }
        let kind = match self.kind(req, &event)? {
            Ok(kind) => kind,
            Err(ignored) => return Ok(Mapped::Ignored(ignored)),
        };
        event.kind = kind;
        event.set_number(NumberField::EventNumber, kind.event_number().map(f64::from));
        event.id = match &self.id {
            IdRule::None => None,
            IdRule::From(from) => read(req, from)?,
            IdRule::Hash(parts) => Some(self.hash_id(parts, &event)),
        };
        Ok(Mapped::Event(Box::new(event)))
    }

    /// The event the type and status say, or the request ignored (naming the key and value
    /// that decided; built only then, not on every postback).
    fn kind(
        &self,
        req: &Request,
        event: &Event,
    ) -> Result<Result<EventKind, Ignored>, SourceError> {
        let rule = &self.kind;
        let settle = |map: &KindMap, outcome: Outcome, value: Option<String>| match outcome {
            Outcome::Event(kind) => Ok(kind),
            Outcome::Ignore => Err(Ignored {
                key: map.from.key().to_owned(),
                value: value.unwrap_or_default(),
            }),
        };
        if let Some(kind) = rule
            .negative_revenue
            .filter(|_| event.number(NumberField::Revenue).is_some_and(|r| r < 0.0))
        {
            return Ok(Ok(kind));
        }
        if let Some(status) = &rule.status
            && let Some(value) = read(req, &status.from)?
        {
            return Ok(settle(status, lookup(status, &value)?, Some(value)));
        }
        let (map, value) = match (&rule.type_, &rule.status) {
            (None, None) => return Ok(Ok(EventKind::Conversion)),
            (None, Some(status)) => (status, None),
            (Some(type_), _) => (type_, read(req, &type_.from)?),
        };
        let outcome = match &value {
            Some(v) => lookup(map, v)?,
            None => map.default.ok_or_else(|| {
                SourceError::bad(&map.from, "is required: it decides the event type")
            })?,
        };
        Ok(settle(map, outcome, value))
    }

    fn hash_id(&self, parts: &[HashPart], event: &Event) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.name.as_bytes());
        for part in parts {
            hasher.update([0]);
            let value = match part {
                HashPart::Type => Some(event.kind.wire_name()),
                HashPart::Target(Target::Transaction) => event.transaction.clone(),
                HashPart::Target(Target::Visitor) => event.visitor.clone(),
                HashPart::Target(Target::OccurredAt) => event.occurred_at.clone(),
                HashPart::Target(Target::Field(f)) => Some(event.value(*f).render()),
            };
            hasher.update(value.unwrap_or_default().as_bytes());
        }
        let digest = hasher.finalize();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.name)
    }
}

/// What a type or status value means.
fn lookup(map: &KindMap, value: &str) -> Result<Outcome, SourceError> {
    let found = if map.entries.is_empty() {
        whc_kind(value).map(Outcome::Event)
    } else {
        map.entries
            .iter()
            .find(|(v, _)| v == value)
            .map(|(_, kind)| *kind)
    };
    found.or(map.default).ok_or_else(|| {
        let expected: Vec<String> = if map.entries.is_empty() {
            vec!["\"conversion\", \"refund\", \"event1\"..\"event10\"".to_owned()]
        } else {
            map.entries.iter().map(|(v, _)| format!("{v:?}")).collect()
        };
        SourceError::bad(
            &map.from,
            format!(
                "has the value {value:?}, which the source does not map; expected {}",
                expected.join(", ")
            ),
        )
    })
}

/// whc's own names for event types: `conversion`, `refund`, `event3`.
fn whc_kind(value: &str) -> Option<EventKind> {
    match value {
        "conversion" => Some(EventKind::Conversion),
        "refund" => Some(EventKind::Refund),
        other => other
            .strip_prefix("event")
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| (1..=EventKind::MAX_CUSTOM).contains(n))
            .map(EventKind::Custom),
    }
}

/// Reads one value: `None` when the request does not carry it or carries it empty (trackers
/// fill an unknown macro with nothing); an error when it is there twice or is not a value.
fn read(req: &Request, from: &From) -> Result<Option<String>, SourceError> {
    let (place, name) = match from {
        From::Literal(v) => return Ok(Some(v.clone())),
        From::Request(place, name) => (*place, name.as_str()),
    };
    let one = |values: &mut dyn Iterator<Item = &str>| -> Result<Option<String>, SourceError> {
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v.to_owned()).filter(|v| !v.is_empty())),
            (Some(_), Some(_)) => Err(SourceError::bad(
                from,
                "appears more than once; send it once",
            )),
        }
    };
    let value = match place {
        Place::Query => one(&mut req.query_values(name))?,
        Place::Form => one(&mut req.form_values(name))?,
        Place::Json => json_value(req, name, from)?,
        Place::Header => {
            let mut values = req
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok());
            one(&mut values)?
        }
        Place::Param => match one(&mut req.query_values(name))? {
            Some(v) => Some(v),
            None => match one(&mut req.form_values(name))? {
                Some(v) => Some(v),
                None => json_value(req, name, from)?,
            },
        },
    };
    Ok(value)
}

fn json_value(req: &Request, pointer: &str, from: &From) -> Result<Option<String>, SourceError> {
    let body = req
        .json()
        .map_err(|message| SourceError::new("", format!("body: {message}")))?;
    let found = if pointer.starts_with('/') {
        body.pointer(pointer)
    } else {
        body.get(pointer)
    };
    match found {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(Json::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(SourceError::bad(
            from,
            format!(
                "must be a string, a number or a boolean, found {}",
                crate::event::describe(other)
            ),
        )),
    }
}

/// Sets a condition field from text, parsed for its type.
fn set_field(
    event: &mut Event,
    field: FieldRef,
    value: String,
    from: &From,
) -> Result<(), SourceError> {
    match field {
        FieldRef::Click(Attribution::First, c) => event.first_click.set(c, Some(value)),
        FieldRef::Click(Attribution::Last, c) => event.last_click.set(c, Some(value)),
        FieldRef::Text(t) => event.texts[t.slot()] = Some(value),
        FieldRef::Id(i) => event.ids[i.slot()] = Some(value),
        FieldRef::Flag(f) => {
            let word = value.trim();
            let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(word));
            let flag = if is(&["1", "true", "yes", "y", "on"]) {
                true
            } else if is(&["0", "false", "no", "n", "off"]) {
                false
            } else {
                return Err(SourceError::bad(
                    from,
                    format!("must be a flag (1/0, true/false, yes/no), found {value:?}"),
                ));
            };
            event.flags[f.slot()] = Some(flag);
        }
        FieldRef::Number(n) => {
            let text = value.trim();
            let number = text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    SourceError::bad(from, format!("must be a number, found {value:?}"))
                })?;
            let count = matches!(n, NumberField::ConversionCount | NumberField::EventCount);
            if count && (number.fract() != 0.0 || number < 0.0) {
                return Err(SourceError::bad(
                    from,
                    format!("must be a whole number from 0, found {value:?}"),
                ));
            }
            event.set_number_as_sent(n, Some(number), text.parse::<i64>().is_ok());
        }
    }
    Ok(())
}
