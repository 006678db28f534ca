//! The candidate index: for each event kind, webhooks keyed by an exact-text condition they
//! require, so that matching only evaluates webhooks that can fire.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::event::{Event, FieldRef, Value};
use crate::lang::Webhook;
use crate::lang::predicate::{Check, Predicate};

/// A test that must hold for the webhook to fire and pins one field to one exact text:
/// `utm_source equals "facebook"`, as a `when` of its own or a part of one joined by `and`.
/// `country` is left out (it compares ignoring case).
fn key_of(webhook: &Webhook) -> Option<(FieldRef, &str)> {
    webhook.conditions.iter().find_map(|c| key_in(&c.predicate))
}

fn key_in(predicate: &Predicate) -> Option<(FieldRef, &str)> {
    match predicate {
        Predicate::Test(t) if !t.negated && !t.ignore_case() => match &t.check {
            Check::TextEq(want) => Some((t.field, &**want)),
            _ => None,
        },
        // Every part must hold, so each part's key is the whole condition's.
        Predicate::All(parts) => parts.iter().find_map(key_in),
        _ => None,
    }
}

/// The webhooks that require each value of one key field.
type ByValue = HashMap<Box<str>, Vec<u32>, BuildHasherDefault<Fnv>>;

/// FNV-1a (64 bits), a few instructions a byte where SipHash takes a hundred or more a lookup.
/// The table holds only the rules' own texts and an event's value is only looked up, never
/// added: nothing an event sends can make the table slower, so there is no need for a keyed
/// hash.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The candidates of one event kind.
#[derive(Debug, Default)]
pub struct Bucket {
    /// Webhooks without a key condition: always evaluated.
    unkeyed: Vec<u32>,
    /// For each key field, the webhooks that require each value of it.
    keyed: Vec<(FieldRef, ByValue)>,
}

impl Bucket {
    /// Adds webhook `index`.
    pub fn insert(&mut self, index: u32, webhook: &Webhook) {
        let Some((field, value)) = key_of(webhook) else {
            self.unkeyed.push(index);
            return;
        };
        let slot = match self.keyed.iter().position(|(f, _)| *f == field) {
            Some(slot) => slot,
            None => {
                self.keyed.push((field, ByValue::default()));
                self.keyed.len() - 1
            }
        };
        self.keyed[slot]
            .1
            .entry(value.into())
            .or_default()
            .push(index);
    }

    /// The webhooks that may fire for `event`, in ascending index (source) order. Borrowed,
    /// with no allocation, unless candidates come from two lists (unkeyed webhooks and a key's,
    /// or two keys').
    pub fn candidates(&self, event: &Event) -> Cow<'_, [u32]> {
        let mut out = Cow::Borrowed(self.unkeyed.as_slice());
        for (field, by_value) in &self.keyed {
            if let Value::Text(v) = event.value(*field)
                && let Some(hits) = by_value.get(v)
            {
                match &mut out {
                    // Each list is in ascending order already.
                    Cow::Borrowed([]) => out = Cow::Borrowed(hits),
                    Cow::Borrowed(some) => {
                        let mut both = Vec::with_capacity(some.len() + hits.len());
                        both.extend_from_slice(some);
                        both.extend_from_slice(hits);
                        out = Cow::Owned(both);
                    }
                    Cow::Owned(list) => list.extend_from_slice(hits),
                }
            }
        }
        if let Cow::Owned(list) = &mut out {
            list.sort_unstable();
        }
        out
    }
}
