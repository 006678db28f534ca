//! Compiled conditions: fields resolved to slots, matchers pre-built, evaluation allocation-free.

use std::collections::HashSet;

use memchr::memmem;
use regex::Regex;

use crate::event::{
    Attribution, ClickField, Event, FieldRef, FlagField, NumberField, TextKey, Value,
};

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
    /// The comparison as written, for explanations.
    pub source: Box<str>,
    /// Where it was written.
    pub span: Span,
    /// The field read and the check fused into one dispatch, for the common shapes.
    pub fast: Option<Fast>,
}

/// A test specialised at compile time for the common shapes: one match selects both the value
/// read and the comparison. Text tests compare [`TextKey`]s, so most read no string at all.
#[derive(Debug, Clone)]
pub enum Fast {
    /// A click field equals a text of at most [`TextKey::PREFIX`] bytes (upper case for
    /// `country`, whose keys are upper case too).
    TextIs {
        /// The click it reads.
        click: Attribution,
        /// The field it reads.
        field: ClickField,
        /// The key of the text it must equal.
        key: TextKey,
    },
    /// A click field equals a longer text, compared case-sensitively.
    TextIsLong {
        /// The click it reads.
        click: Attribution,
        /// The field it reads.
        field: ClickField,
        /// The key of the text, compared first.
        key: TextKey,
        /// The whole text.
        want: Box<str>,
    },
    /// A click field is one of a few short texts.
    TextIn {
        /// The click it reads.
        click: Attribution,
        /// The field it reads.
        field: ClickField,
        /// The keys of the texts.
        keys: Box<[TextKey]>,
    },
    /// A click field starts with a text of at most [`TextKey::PREFIX`] bytes.
    StartsWith {
        /// The click it reads.
        click: Attribution,
        /// The field it reads.
        field: ClickField,
        /// The key of the prefix.
        prefix: TextKey,
    },
    /// A click field is set.
    IsSet {
        /// The click it reads.
        click: Attribution,
        /// The field it reads.
        field: ClickField,
    },
    /// A click field is not set.
    IsNotSet {
        /// The click it reads.
        click: Attribution,
        /// The field it reads.
        field: ClickField,
    },
    /// A number field equals a constant.
    NumEq(NumberField, f64),
    /// A number field is greater than a constant.
    NumGreater(NumberField, f64),
    /// A number field is at least a constant.
    NumAtLeast(NumberField, f64),
    /// A number field is less than a constant.
    NumLess(NumberField, f64),
    /// A number field is at most a constant.
    NumAtMost(NumberField, f64),
    /// A flag field has this value.
    Flag(FlagField, bool),
}

impl Fast {
    /// The largest `in` list tested by scanning keys.
    const IN_SCAN_LIMIT: usize = 16;

    /// The fused form of a test, when it has one.
    pub fn of(field: FieldRef, check: &Check, negated: bool) -> Option<Fast> {
        if negated {
            return None;
        }
        let ignore_case = field.ignores_case();
        let whole = |text: &str| Some(TextKey::of(text, ignore_case)).filter(|k| k.is_whole());
        Some(match (field, check) {
            (FieldRef::Click(click, field), Check::TextEq(want)) => match whole(want) {
                Some(key) => Fast::TextIs { click, field, key },
                None if !ignore_case => Fast::TextIsLong {
                    click,
                    field,
                    key: TextKey::of(want, false),
                    want: want.clone(),
                },
                None => return None,
            },
            (FieldRef::Click(click, field), Check::TextIn(TextSet::Few(values)))
                if values.len() <= Fast::IN_SCAN_LIMIT =>
            {
                let keys = values.iter().map(|v| whole(v)).collect::<Option<_>>()?;
                Fast::TextIn { click, field, keys }
            }
            (FieldRef::Click(click, field), Check::StartsWith(prefix)) => Fast::StartsWith {
                click,
                field,
                prefix: whole(prefix)?,
            },
            (FieldRef::Click(click, field), Check::IsSet) => Fast::IsSet { click, field },
            (FieldRef::Click(click, field), Check::IsNotSet) => Fast::IsNotSet { click, field },
            (FieldRef::Number(field), Check::Number(op, rhs)) => {
                let rhs = *rhs;
                match op {
                    NumOp::Eq => Fast::NumEq(field, rhs),
                    NumOp::Greater => Fast::NumGreater(field, rhs),
                    NumOp::AtLeast => Fast::NumAtLeast(field, rhs),
                    NumOp::Less => Fast::NumLess(field, rhs),
                    NumOp::AtMost => Fast::NumAtMost(field, rhs),
                }
            }
            (FieldRef::Flag(field), Check::Flag(want)) => Fast::Flag(field, *want),
            _ => return None,
        })
    }

    /// Whether the fused test holds.
    #[inline(always)]
    pub fn holds(&self, event: &Event) -> bool {
        let key = |click: Attribution, field: ClickField| event.click(click).key(field);
        match self {
            Fast::TextIs {
                click,
                field,
                key: want,
            } => key(*click, *field) == *want,
            Fast::TextIsLong {
                click,
                field,
                key: want_key,
                want,
            } => {
                key(*click, *field) == *want_key && event.click(*click).get(*field) == Some(&**want)
            }
            Fast::TextIn { click, field, keys } => keys.contains(&key(*click, *field)),
            Fast::StartsWith {
                click,
                field,
                prefix,
            } => key(*click, *field).starts_with(*prefix),
            Fast::IsSet { click, field } => key(*click, *field).text_len().is_some(),
            Fast::IsNotSet { click, field } => key(*click, *field).text_len().is_none(),
            Fast::NumEq(field, rhs) => event.number(*field).is_some_and(|n| n == *rhs),
            Fast::NumGreater(field, rhs) => event.number(*field).is_some_and(|n| n > *rhs),
            Fast::NumAtLeast(field, rhs) => event.number(*field).is_some_and(|n| n >= *rhs),
            Fast::NumLess(field, rhs) => event.number(*field).is_some_and(|n| n < *rhs),
            Fast::NumAtMost(field, rhs) => event.number(*field).is_some_and(|n| n <= *rhs),
            Fast::Flag(field, want) => event.flag(*field) == Some(*want),
        }
    }
}

impl Test {
    /// Whether text compares ignoring ASCII case (`country`).
    #[inline]
    pub fn ignore_case(&self) -> bool {
        self.field.ignores_case()
    }

    /// Whether the test holds for an event.
    #[inline]
    pub fn eval(&self, event: &Event) -> bool {
        match &self.fast {
            Some(fast) => fast.holds(event),
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
                if self.ignore_case() {
                    want.eq_ignore_ascii_case(s)
                } else {
                    eq_bytes(want.as_bytes(), s.as_bytes())
                }
            }
            (Check::TextIn(set), Value::Text(s)) => set.contains(s, self.ignore_case()),
            (Check::Contains(finder), Value::Text(s)) => {
                if self.ignore_case() {
                    contains_ignore_case(s.as_bytes(), finder.needle())
                } else {
                    finder.find(s.as_bytes()).is_some()
                }
            }
            (Check::StartsWith(p), Value::Text(s)) => {
                s.len() >= p.len()
                    && (if self.ignore_case() {
                        s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                    } else {
                        s.as_bytes().starts_with(p.as_bytes())
                    })
            }
            (Check::EndsWith(p), Value::Text(s)) => {
                s.len() >= p.len()
                    && (if self.ignore_case() {
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

/// One click field compared with a short text through keys: the plan's cheapest test.
#[derive(Debug, Clone, Copy)]
struct KeyTest {
    click: Attribution,
    field: ClickField,
    key: TextKey,
}

/// A number field compared with a constant, as the closed range of values that pass.
#[derive(Debug, Clone, Copy)]
struct RangeTest {
    field: NumberField,
    lo: f64,
    hi: f64,
}

impl RangeTest {
    /// The range form of a fused number comparison. Event numbers are finite, so `> x` is
    /// `>= next_up(x)`; an infinite constant keeps its own test.
    fn of(fast: &Fast) -> Option<RangeTest> {
        let (field, lo, hi) = match *fast {
            Fast::NumEq(f, x) => (f, x, x),
            Fast::NumGreater(f, x) => (f, x.next_up(), f64::INFINITY),
            Fast::NumAtLeast(f, x) => (f, x, f64::INFINITY),
            Fast::NumLess(f, x) => (f, f64::NEG_INFINITY, x.next_down()),
            Fast::NumAtMost(f, x) => (f, f64::NEG_INFINITY, x),
            _ => return None,
        };
        let constant = if lo.is_finite() { lo } else { hi };
        constant.is_finite().then_some(RangeTest { field, lo, hi })
    }
}

/// A webhook's `when` clauses laid out for matching, cheapest first: the exact-text tests (one
/// key comparison each), the number comparisons (one range check each), then the other fused
/// tests, then every other condition.
/// Conditions have no side effects, so the order changes only how soon a failing one is found.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    texts: Box<[KeyTest]>,
    ranges: Box<[RangeTest]>,
    fast: Box<[Fast]>,
    rest: Box<[Predicate]>,
}

impl Plan {
    /// Lays out conditions that must all hold.
    pub fn new<'a>(conditions: impl IntoIterator<Item = &'a Predicate>) -> Plan {
        #[derive(Default)]
        struct Parts {
            texts: Vec<KeyTest>,
            ranges: Vec<RangeTest>,
            fast: Vec<Fast>,
            rest: Vec<Predicate>,
        }
        fn lay_out(p: &Predicate, parts: &mut Parts) {
            match p {
                Predicate::All(all) => all.iter().for_each(|p| lay_out(p, parts)),
                Predicate::Test(t) => match &t.fast {
                    Some(Fast::TextIs { click, field, key }) => parts.texts.push(KeyTest {
                        click: *click,
                        field: *field,
                        key: *key,
                    }),
                    Some(fast) => match RangeTest::of(fast) {
                        Some(range) => parts.ranges.push(range),
                        None => parts.fast.push(fast.clone()),
                    },
                    None => parts.rest.push(p.clone()),
                },
                other => parts.rest.push(other.clone()),
            }
        }
        // Within each group source order is kept: authors tend to write the most selective
        // condition first.
        let mut parts = Parts::default();
        for p in conditions {
            lay_out(p, &mut parts);
        }
        Plan {
            texts: parts.texts.into_boxed_slice(),
            ranges: parts.ranges.into_boxed_slice(),
            fast: parts.fast.into_boxed_slice(),
            rest: parts.rest.into_boxed_slice(),
        }
    }

    /// Whether every condition holds.
    #[inline(always)]
    pub fn holds(&self, event: &Event) -> bool {
        // Plain loops, not `Iterator::all`, so that they are inlined into the caller.
        for t in self.texts.iter() {
            if event.click(t.click).key(t.field) != t.key {
                return false;
            }
        }
        for r in self.ranges.iter() {
            if !event
                .number(r.field)
                .is_some_and(|n| n >= r.lo && n <= r.hi)
            {
                return false;
            }
        }
        for fast in self.fast.iter() {
            if !fast.holds(event) {
                return false;
            }
        }
        self.rest.is_empty() || self.rest_holds(event)
    }

    /// The conditions that are not fused, kept out of line so the fused loop stays small.
    #[inline(never)]
    fn rest_holds(&self, event: &Event) -> bool {
        self.rest.iter().all(|p| p.eval(event))
    }
}
