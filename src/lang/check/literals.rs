//! Literals against the field's type: numbers, flags, texts, lists and country codes.

use memchr::memmem;

use crate::event::EventKind;
use crate::event::{FieldRef, FieldType, NumberField};
use crate::lang::ast::{Literal, Op, Span, Spanned, StringLit};
use crate::lang::codes::Code;
use crate::lang::country::is_iso_alpha2;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::predicate::{Check, NumOp, TextSet};
use crate::lang::reach::FactValue;

use super::Checker;

impl Checker<'_> {
    /// Checks the operand against the field's type and builds the matcher.
    pub(super) fn check_for(
        &mut self,
        field: FieldRef,
        op: &Op,
        operand: &Spanned<Literal>,
    ) -> Option<(Check, bool, FactValue)> {
        let ty = field.field().ty();
        let is_list_op = matches!(op, Op::In | Op::NotIn);
        let items: Vec<&Spanned<Literal>> = match (&operand.node, is_list_op) {
            (Literal::List(items), true) => items.iter().collect(),
            (Literal::List(_), false) => {
                self.error(
                    Code::LiteralType,
                    operand.span,
                    "a list",
                    format!("`{}` compares with a single value, not a list", op.words()),
                )
                .help = Some(format!("to test membership write `{field} in [...]`"));
                return None;
            }
            (other, true) => {
                self.error(
                    Code::LiteralType,
                    operand.span,
                    format!("{}, not a list", other.describe()),
                    format!("`{}` needs a list such as `[\"a\", \"b\"]`", op.words()),
                );
                return None;
            }
            (_, false) => vec![operand],
        };
        let negated = matches!(op, Op::NotEquals | Op::NotContains | Op::NotIn);
        match ty {
            FieldType::Number => {
                let nums: Vec<f64> = items
                    .iter()
                    .map(|i| self.number_literal(field, i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Option<_>>()?;
                let (check, fact) = match op {
                    Op::In | Op::NotIn => (
                        Check::NumberIn(nums.clone().into_boxed_slice()),
                        FactValue::Nums(nums),
                    ),
                    _ => {
                        let num_op = match op {
                            Op::Greater => NumOp::Greater,
                            Op::AtLeast => NumOp::AtLeast,
                            Op::Less => NumOp::Less,
                            Op::AtMost => NumOp::AtMost,
                            _ => NumOp::Eq,
                        };
                        (Check::Number(num_op, nums[0]), FactValue::Num(nums[0]))
                    }
                };
                Some((check, negated, fact))
            }
            FieldType::Flag => {
                let Literal::Bool(b) = items[0].node else {
                    self.error(
                        Code::LiteralType,
                        items[0].span,
                        format!("{}, not `true` or `false`", items[0].node.describe()),
                        format!("`{field}` is a flag; compare it with `true` or `false`"),
                    )
                    .help = Some(format!(
                        "or write `{field}` alone, meaning `{field} == true`"
                    ));
                    return None;
                };
                let want = b != negated;
                Some((Check::Flag(want), false, FactValue::Flag(want)))
            }
            FieldType::Text | FieldType::Id => {
                let texts: Vec<(String, Span, Option<&StringLit>)> = items
                    .iter()
                    .map(|i| self.text_literal(field, i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Option<_>>()?;
                if field.ignores_case()
                    && matches!(op, Op::Equals | Op::NotEquals | Op::In | Op::NotIn)
                {
                    for (t, span, _) in &texts {
                        if !is_iso_alpha2(t) {
                            self.error(
                                Code::CountryCode,
                                *span,
                                "not an ISO 3166-1 alpha-2 code",
                                format!("\"{t}\" is not a country code the tracker sends"),
                            )
                            .help = Some(match t.as_str() {
                                "UK" | "uk" => "the United Kingdom is \"GB\"".into(),
                                _ => "countries are two-letter ISO codes such as \"US\", \"DE\", \"GB\"".into(),
                            });
                        }
                    }
                }
                // `in []` has no first value (and needs none); every other operator has one.
                let single = texts.first().map(|t| t.0.clone()).unwrap_or_default();
                let check = match op {
                    Op::Equals | Op::NotEquals => Check::TextEq(single.clone().into_boxed_str()),
                    Op::Contains | Op::NotContains => Check::Contains(Box::new(
                        memmem::Finder::new(single.as_bytes()).into_owned(),
                    )),
                    Op::StartsWith => Check::StartsWith(single.clone().into_boxed_str()),
                    Op::EndsWith => Check::EndsWith(single.clone().into_boxed_str()),
                    Op::Matches => Check::Matches(self.regex(&texts[0], field.ignores_case())?),
                    Op::In | Op::NotIn => {
                        let ignore_case = field.ignores_case();
                        Check::TextIn(TextSet::new(texts.iter().map(|t| t.0.clone()), ignore_case))
                    }
                    _ => unreachable!("{op:?} passed op_applies for text"),
                };
                let fact = match op {
                    Op::In | Op::NotIn => {
                        FactValue::Texts(texts.into_iter().map(|t| t.0).collect())
                    }
                    Op::Equals | Op::NotEquals => FactValue::Text(single),
                    _ => FactValue::Other(single),
                };
                Some((check, negated, fact))
            }
        }
    }

    pub(super) fn number_literal(
        &mut self,
        field: FieldRef,
        lit: &Spanned<Literal>,
    ) -> Option<f64> {
        let n = match &lit.node {
            Literal::Number(n, _) => *n,
            Literal::Str(s) => {
                let mut d = Diagnostic::new(
                    Code::LiteralType,
                    self.source,
                    lit.span,
                    "a string, not a number",
                    format!("`{field}` is a number; compare it with a number"),
                );
                if s.value.trim().parse::<f64>().is_ok() {
                    d = d.with_help(format!("write `{}` without quotes", s.value.trim()));
                }
                self.diags.push(d);
                return None;
            }
            other => {
                self.error(
                    Code::LiteralType,
                    lit.span,
                    format!("{}, not a number", other.describe()),
                    format!("`{field}` is a number; compare it with a number"),
                );
                return None;
            }
        };
        if field == FieldRef::Number(NumberField::EventNumber)
            && !(n.fract() == 0.0 && (1.0..=f64::from(EventKind::MAX_CUSTOM)).contains(&n))
        {
            self.error(
                Code::EventNumberRange,
                lit.span,
                "outside 1..10",
                format!(
                    "`eventNumber` is 1 to 10, so it is never {}",
                    self.text(lit.span)
                ),
            )
            .help = Some("custom events are numbered 1 to 10".into());
            return None;
        }
        Some(n)
    }

    pub(super) fn text_literal<'l>(
        &mut self,
        field: FieldRef,
        lit: &'l Spanned<Literal>,
    ) -> Option<(String, Span, Option<&'l StringLit>)> {
        let ty = field.field().ty();
        match &lit.node {
            Literal::Str(s) => Some((s.value.clone(), lit.span, Some(s))),
            Literal::Number(n, text)
                if ty == FieldType::Id && n.fract() == 0.0 && !text.starts_with('-') =>
            {
                Some((text.clone(), lit.span, None))
            }
            other => {
                let wrote = self.text(lit.span).to_owned();
                self.error(
                    Code::LiteralType,
                    lit.span,
                    format!("{}, not text", other.describe()),
                    format!(
                        "`{field}` is {}; compare it with a quoted string",
                        ty.describe()
                    ),
                )
                .help = Some(format!("write `\"{wrote}\"`"));
                None
            }
        }
    }
}
