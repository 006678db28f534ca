//! Compiled conditions: fields resolved to slots, matchers pre-built, evaluation allocation-free.

use std::collections::HashSet;

use memchr::memmem;
use regex::Regex;

use crate::event::{Event, FieldRef, Value};

use super::ast::Span;

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Greater,
    AtLeast,
    Less,
    AtMost,
}

/// A set of text values for `in`; small sets are scanned, large ones hashed.
#[derive(Debug, Clone)]
pub enum TextSet {
    /// Up to a handful of values, compared one by one.
    Few(Box<[Box<str>]>),
    /// Many values.
    Many(HashSet<Box<str>>),
}

impl TextSet {
    const SCAN_LIMIT: usize = 8;

    /// Builds a set; with `ignore_case` the values are stored in upper case.
    pub fn new(values: impl IntoIterator<Item = String>, ignore_case: bool) -> TextSet {
        let values: Vec<Box<str>> = values
            .into_iter()
            .map(|v| {
                if ignore_case {
                    v.to_ascii_uppercase().into_boxed_str()
                } else {
                    v.into_boxed_str()
                }
            })
            .collect();
        if values.len() <= TextSet::SCAN_LIMIT || ignore_case {
            TextSet::Few(values.into_boxed_slice())
        } else {
            TextSet::Many(values.into_iter().collect())
        }
    }

    fn contains(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            TextSet::Few(values) if ignore_case => {
                values.iter().any(|v| v.eq_ignore_ascii_case(value))
            }
            TextSet::Few(values) => values.iter().any(|v| **v == *value),
            TextSet::Many(set) => set.contains(value),
        }
    }
}

/// What a test does with a present value.
#[derive(Debug, Clone)]
pub enum Check {
    /// `is set`: true when the value is present.
    IsSet,
    /// `is not set`: true when the value is missing (the one check that holds on a missing value).
    IsNotSet,
    /// A flag equals this.
    Flag(bool),
    /// A number compared with a constant.
    Number(NumOp, f64),
    /// A number is one of these.
    NumberIn(Box<[f64]>),
    /// Text equals this exactly (or ignoring ASCII case).
    TextEq(Box<str>),
    /// Text is one of a set.
    TextIn(TextSet),
    /// Text contains this, found with a pre-built substring finder.
    Contains(Box<memmem::Finder<'static>>),
    /// Text starts with this.
    StartsWith(Box<str>),
    /// Text ends with this.
    EndsWith(Box<str>),
    /// Text matches a pre-compiled regex.
    Matches(Regex),
}

/// One comparison against one field.
#[derive(Debug, Clone)]
pub struct Test {
    /// The slot it reads.
    pub field: FieldRef,
    /// What it checks.
    pub check: Check,
    /// `not equals`, `not contains`, `not in`: the check's answer is inverted, but only for a
    /// value that is present (a missing value still fails).
    pub negated: bool,
    /// Compare text ignoring ASCII case (`country`).
    pub ignore_case: bool,
    /// The comparison as written, for explanations.
    pub source: Box<str>,
    /// Where it was written.
    pub span: Span,
    /// The field read and the check fused into one dispatch, for the common shapes.
    pub fast: Fast,
}

/// Text of at most 16 bytes kept inline, so comparing it reads no other memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineText {
    len: u8,
    bytes: [u8; 16],
}

impl InlineText {
    /// The text inline, when it fits.
    pub fn new(text: &str) -> Option<InlineText> {
        let len = text.len();
        (len <= 16).then(|| {
            let mut bytes = [0; 16];
            bytes[..len].copy_from_slice(text.as_bytes());
            InlineText {
                len: len as u8,
                bytes,
            }
        })
    }

    /// The text's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A test specialised at compile time: one match selects both the slot and the comparison.
#[derive(Debug, Clone)]
pub enum Fast {
    /// A click field (first click when `first`) equals `want` exactly.
    TextEq {
        /// Reads the first click rather than the last.
        first: bool,
        /// The [`crate::event::ClickField`] slot.
        slot: u8,
        /// The text it must equal.
        want: InlineText,
    },
    /// A click field equals `want` ignoring ASCII case (`country`).
    TextEqIc {
        /// Reads the first click rather than the last.
        first: bool,
        /// The [`crate::event::ClickField`] slot.
        slot: u8,
        /// The text it must equal.
        want: InlineText,
    },
    /// A number field is greater than `rhs`.
    NumGreater {
        /// The [`crate::event::NumberField`] slot.
        slot: u8,
        /// The bound.
        rhs: f64,
    },
    /// Any other shape: read the value, then apply the check.
    Generic,
}

impl Fast {
    /// The fused form of a test, when it has one.
    pub fn of(field: FieldRef, check: &Check, negated: bool, ignore_case: bool) -> Fast {
        use crate::event::Attribution;
        match (field, check, negated) {
            (FieldRef::Click(a, c), Check::TextEq(want), false) => {
                let first = a == Attribution::First;
                let slot = c.slot() as u8;
                let Some(want) = InlineText::new(want) else {
                    return Fast::Generic;
                };
                if ignore_case {
                    Fast::TextEqIc { first, slot, want }
                } else {
                    Fast::TextEq { first, slot, want }
                }
            }
            (FieldRef::Number(n), Check::Number(NumOp::Greater, rhs), false) => Fast::NumGreater {
                slot: n.slot() as u8,
                rhs: *rhs,
            },
            _ => Fast::Generic,
        }
    }

    /// Whether the fused test holds; `None` for [`Fast::Generic`].
    #[inline(always)]
    pub fn eval(&self, event: &Event) -> Option<bool> {
        let click = |first: bool| {
            if first {
                &event.first_click
            } else {
                &event.last_click
            }
        };
        Some(match self {
            Fast::TextEq { first, slot, want } => click(*first).values[*slot as usize]
                .as_deref()
                .is_some_and(|s| eq_bytes(want.as_bytes(), s.as_bytes())),
            Fast::TextEqIc { first, slot, want } => click(*first).values[*slot as usize]
                .as_deref()
                .is_some_and(|s| want.as_bytes().eq_ignore_ascii_case(s.as_bytes())),
            Fast::NumGreater { slot, rhs } => {
                event.numbers[*slot as usize].is_some_and(|n| n > *rhs)
            }
            Fast::Generic => return None,
        })
    }
}

impl Test {
    /// Whether the test holds for an event.
    #[inline]
    pub fn eval(&self, event: &Event) -> bool {
        match self.fast.eval(event) {
            Some(held) => held,
            None => self.eval_value(event.value(self.field)),
        }
    }

    /// Whether the test holds for a value already read.
    #[inline]
    pub fn eval_value(&self, value: Value<'_>) -> bool {
        let held = match (&self.check, value) {
            (Check::IsNotSet, v) => return matches!(v, Value::Missing),
            (_, Value::Missing) => return false,
            (Check::IsSet, _) => true,
            (Check::Flag(want), Value::Flag(b)) => b == *want,
            (Check::Number(op, rhs), Value::Number(n)) => match op {
                NumOp::Eq => n == *rhs,
                NumOp::Greater => n > *rhs,
                NumOp::AtLeast => n >= *rhs,
                NumOp::Less => n < *rhs,
                NumOp::AtMost => n <= *rhs,
            },
            (Check::NumberIn(set), Value::Number(n)) => set.contains(&n),
            (Check::TextEq(want), Value::Text(s)) => {
                if self.ignore_case {
                    want.eq_ignore_ascii_case(s)
                } else {
                    eq_bytes(want.as_bytes(), s.as_bytes())
                }
            }
            (Check::TextIn(set), Value::Text(s)) => set.contains(s, self.ignore_case),
            (Check::Contains(finder), Value::Text(s)) => {
                if self.ignore_case {
                    contains_ignore_case(s.as_bytes(), finder.needle())
                } else {
                    finder.find(s.as_bytes()).is_some()
                }
            }
            (Check::StartsWith(p), Value::Text(s)) => {
                s.len() >= p.len()
                    && (if self.ignore_case {
                        s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                    } else {
                        s.as_bytes().starts_with(p.as_bytes())
                    })
            }
            (Check::EndsWith(p), Value::Text(s)) => {
                s.len() >= p.len()
                    && (if self.ignore_case {
                        s.as_bytes()[s.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
                    } else {
                        s.as_bytes().ends_with(p.as_bytes())
                    })
            }
            (Check::Matches(re), Value::Text(s)) => re.is_match(s),
            // The checker only pairs checks with fields of their type.
            _ => false,
        };
        held != self.negated
    }
}

/// Byte equality without a libc call for short text: two overlapping word loads.
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap());
    let w4 = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().unwrap());
    match n {
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Every part holds.
    All(Box<[Predicate]>),
    /// Some part holds.
    Any(Box<[Predicate]>),
    /// The part does not hold.
    Not(Box<Predicate>),
    /// A single comparison.
    Test(Box<Test>),
}

impl Predicate {
    /// Whether the condition holds for an event.
    #[inline]
    pub fn eval(&self, event: &Event) -> bool {
        match self {
            Predicate::Test(test) => test.eval(event),
            _ => self.eval_compound(event),
        }
    }

    #[inline(never)]
    fn eval_compound(&self, event: &Event) -> bool {
        match self {
            Predicate::All(parts) => parts.iter().all(|p| p.eval(event)),
            Predicate::Any(parts) => parts.iter().any(|p| p.eval(event)),
            Predicate::Not(inner) => !inner.eval(event),
            Predicate::Test(test) => test.eval(event),
        }
    }

    /// Every comparison in the condition, in source order.
    pub fn tests(&self) -> Vec<&Test> {
        let mut out = Vec::new();
        self.collect_tests(&mut out);
        out
    }

    fn collect_tests<'a>(&'a self, out: &mut Vec<&'a Test>) {
        match self {
            Predicate::All(parts) | Predicate::Any(parts) => {
                parts.iter().for_each(|p| p.collect_tests(out))
            }
            Predicate::Not(inner) => inner.collect_tests(out),
            Predicate::Test(test) => out.push(test),
        }
    }
}

/// A webhook's `when` clauses laid out for matching: the fused tests that must all hold, in one
/// contiguous slice, then every other condition.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    fast: Box<[Fast]>,
    rest: Box<[Predicate]>,
}

impl Plan {
    /// Lays out conditions that must all hold.
    pub fn new<'a>(conditions: impl IntoIterator<Item = &'a Predicate>) -> Plan {
        fn lay_out(p: &Predicate, fast: &mut Vec<Fast>, rest: &mut Vec<Predicate>) {
            match p {
                Predicate::All(parts) => parts.iter().for_each(|p| lay_out(p, fast, rest)),
                Predicate::Test(t) if !matches!(t.fast, Fast::Generic) => fast.push(t.fast.clone()),
                other => rest.push(other.clone()),
            }
        }
        // Source order is kept: authors tend to write the most selective condition first.
        let mut fast = Vec::new();
        let mut rest = Vec::new();
        for p in conditions {
            lay_out(p, &mut fast, &mut rest);
        }
        Plan {
            fast: fast.into_boxed_slice(),
            rest: rest.into_boxed_slice(),
        }
    }

    /// Whether every condition holds.
    #[inline]
    pub fn holds(&self, event: &Event) -> bool {
        // A plan holds no `Fast::Generic`, so `None` never comes up here.
        self.fast.iter().all(|f| f.eval(event).unwrap_or(false))
            && self.rest.iter().all(|p| p.eval(event))
    }
}
