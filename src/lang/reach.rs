//! Can-never-fire and duplicate-condition analysis over the conditions that must all hold.

use crate::event::{EventKind, FieldRef, NumberField};

use super::ast::{Op, Span};
use super::webhook::EventSet;

/// What a comparison compares with, in a form the analysis can reason about.
#[derive(Debug, Clone, PartialEq)]
pub enum FactValue {
    /// `is set`
    Set,
    /// `is not set`
    NotSet,
    /// A flag must have this value.
    Flag(bool),
    /// A number.
    Num(f64),
    /// A list of numbers.
    Nums(Vec<f64>),
    /// A text for `equals`/`not equals`.
    Text(String),
    /// A list of texts.
    Texts(Vec<String>),
    /// A text for an operator the analysis does not reason about (`contains`, `matches`...).
    Other(String),
}

/// A comparison that must hold for the webhook to fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// The slot it reads.
    pub field: FieldRef,
    /// Its operator.
    pub op: Op,
    /// Its operand.
    pub value: FactValue,
    /// Where it was written.
    pub span: Span,
}

/// Why a webhook can never fire: the places involved, a label for each, and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The conflicting conditions.
    pub spans: Vec<Span>,
    /// One label per span.
    pub labels: Vec<String>,
    /// One sentence of explanation.
    pub reason: String,
}

/// Pairs of conditions written twice (the first, then the repeat).
pub fn duplicates(facts: &[Fact]) -> Vec<(&Fact, &Fact)> {
    let mut out = Vec::new();
    for (i, b) in facts.iter().enumerate() {
        if let Some(a) = facts[..i]
            .iter()
            .find(|a| a.field == b.field && a.op == b.op && same_value(a.field, &a.value, &b.value))
        {
            out.push((a, b));
        }
    }
    out
}

/// Whether two operands are the same for this field (`country` ignores case).
fn same_value(field: FieldRef, a: &FactValue, b: &FactValue) -> bool {
    match (a, b) {
        (FactValue::Text(x), FactValue::Text(y)) => same_text(field, x, y),
        (FactValue::Texts(x), FactValue::Texts(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_text(field, x, y))
        }
        _ => a == b,
    }
}

fn same_text(field: FieldRef, a: &str, b: &str) -> bool {
    if field.ignores_case() {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn conflict(a: &Fact, b: &Fact, reason: String) -> Conflict {
    Conflict {
        spans: vec![b.span, a.span],
        labels: vec!["this cannot hold...".into(), "...together with this".into()],
        reason,
    }
}

/// The first contradiction among conditions that must all hold, if any.
pub fn contradiction(facts: &[Fact], events: EventSet) -> Option<Conflict> {
    for (i, b) in facts.iter().enumerate() {
        for a in &facts[..i] {
            if a.field != b.field {
                continue;
            }
            if let Some(c) = pair_conflict(a, b) {
                return Some(c);
            }
        }
    }
    number_bounds(facts).or_else(|| event_numbers(facts, events))
}

fn pair_conflict(a: &Fact, b: &Fact) -> Option<Conflict> {
    use FactValue::*;
    let f = a.field;
    let reason = match (&a.value, &b.value) {
        (NotSet, NotSet) => return None,
        (NotSet, _) | (_, NotSet) => format!(
            "`{f}` cannot be missing and compared at once: every comparison but `is not set` is false on a missing value"
        ),
        (Flag(x), Flag(y)) if x != y => format!("`{f}` cannot be both true and false"),
        (Text(x), Text(y)) => match (&a.op, &b.op) {
            (Op::Equals, Op::Equals) if !same_text(f, x, y) => {
                format!("`{f}` cannot equal both \"{x}\" and \"{y}\"")
            }
            (Op::Equals, Op::NotEquals) | (Op::NotEquals, Op::Equals) if same_text(f, x, y) => {
                format!("`{f}` cannot both equal and not equal \"{x}\"")
            }
            _ => return None,
        },
        (Text(x), Texts(list)) | (Texts(list), Text(x)) => {
            let (eq, set_op) = if matches!(a.value, Text(_)) {
                (&a.op, &b.op)
            } else {
                (&b.op, &a.op)
            };
            let listed = list.iter().any(|v| same_text(f, v, x));
            match (eq, set_op) {
                (Op::Equals, Op::In) if !listed => {
                    format!("`{f}` equals \"{x}\", which is not in the list")
                }
                (Op::Equals, Op::NotIn) if listed => {
                    format!("`{f}` equals \"{x}\", which the list excludes")
                }
                _ => return None,
            }
        }
        (Texts(x), Texts(y)) if a.op == Op::In && b.op == Op::In => {
            if x.iter().any(|v| y.iter().any(|w| same_text(f, v, w))) {
                return None;
            }
            format!("no value of `{f}` is in both lists")
        }
        _ => return None,
    };
    Some(conflict(a, b, reason))
}

/// Interval reasoning over `>`, `>=`, `<`, `<=`, `equals` and `in` on each number field.
fn number_bounds(facts: &[Fact]) -> Option<Conflict> {
    struct Bound<'a> {
        value: f64,
        strict: bool,
        fact: &'a Fact,
    }
    let mut fields: Vec<FieldRef> = facts
        .iter()
        .filter(|f| matches!(f.field, FieldRef::Number(_)))
        .map(|f| f.field)
        .collect();
    fields.dedup();
    for field in fields {
        let mut lo: Option<Bound> = None;
        let mut hi: Option<Bound> = None;
        for fact in facts.iter().filter(|f| f.field == field) {
            let FactValue::Num(v) = fact.value else {
                continue;
            };
            let (set_lo, set_hi, strict) = match fact.op {
                Op::Greater => (true, false, true),
                Op::AtLeast => (true, false, false),
                Op::Less => (false, true, true),
                Op::AtMost => (false, true, false),
                Op::Equals => (true, true, false),
                _ => continue,
            };
            if set_lo
                && lo
                    .as_ref()
                    .is_none_or(|b| v > b.value || (v == b.value && strict))
            {
                lo = Some(Bound {
                    value: v,
                    strict,
                    fact,
                });
            }
            if set_hi
                && hi
                    .as_ref()
                    .is_none_or(|b| v < b.value || (v == b.value && strict))
            {
                hi = Some(Bound {
                    value: v,
                    strict,
                    fact,
                });
            }
        }
        if let (Some(l), Some(h)) = (&lo, &hi) {
            let empty = l.value > h.value || (l.value == h.value && (l.strict || h.strict));
            if empty && l.fact.span != h.fact.span {
                let (a, b) = if l.fact.span < h.fact.span {
                    (l.fact, h.fact)
                } else {
                    (h.fact, l.fact)
                };
                return Some(conflict(
                    a,
                    b,
                    format!("no value of `{field}` satisfies both"),
                ));
            }
        }
        for fact in facts.iter().filter(|f| f.field == field && f.op == Op::In) {
            let FactValue::Nums(list) = &fact.value else {
                continue;
            };
            let inside = |v: f64| {
                lo.as_ref()
                    .is_none_or(|b| v > b.value || (v == b.value && !b.strict))
                    && hi
                        .as_ref()
                        .is_none_or(|b| v < b.value || (v == b.value && !b.strict))
            };
            if !list.iter().any(|v| inside(*v)) {
                let other = lo.as_ref().or(hi.as_ref()).map(|b| b.fact)?;
                return Some(conflict(
                    other,
                    fact,
                    format!("no value in the list satisfies the other bound on `{field}`"),
                ));
            }
        }
    }
    None
}

/// `eventNumber equals N` on a webhook that does not listen to `event N`.
fn event_numbers(facts: &[Fact], events: EventSet) -> Option<Conflict> {
    if !events.has_custom() {
        return None;
    }
    for fact in facts
        .iter()
        .filter(|f| f.field == FieldRef::Number(NumberField::EventNumber))
    {
        let wanted: Vec<f64> = match (&fact.op, &fact.value) {
            (Op::Equals, FactValue::Num(n)) => vec![*n],
            (Op::In, FactValue::Nums(list)) => list.clone(),
            _ => continue,
        };
        let listened = wanted
            .iter()
            .any(|n| events.contains(EventKind::Custom(*n as u8)));
        if !listened {
            return Some(Conflict {
                spans: vec![fact.span],
                labels: vec!["no listened-to event has this number".into()],
                reason: "the `on` clause does not include a custom event with this number".into(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use crate::lang::{Code, SourceFile, compile};

    fn codes(rule: &str) -> Vec<Code> {
        let text =
            format!("webhook w {{\n on conversion\n {rule}\n post \"https://x.test/\"\n}}\n");
        compile(&[Arc::new(SourceFile::new("t.whc", text))], &HashMap::new())
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect()
    }

    #[test]
    fn a_country_written_twice_in_another_case_is_a_duplicate() {
        assert_eq!(
            codes("when country equals \"US\"\n when country equals \"us\""),
            [Code::DuplicateCondition]
        );
        assert_eq!(
            codes("when utm_source equals \"fb\"\n when utm_source equals \"FB\""),
            [Code::NeverFires],
            "text other than country is case-sensitive: two different values"
        );
    }
}
