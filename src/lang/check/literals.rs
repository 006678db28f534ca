//! Literals against the field's type: numbers, flags, texts, lists and country codes.

use memchr::memmem;

use crate::event::EventKind;
use crate::event::{CodeList, FieldRef, FieldType, NumberField};
use crate::lang::ast::{Literal, Op, Span, Spanned, StringLit};
use crate::lang::codes::Code;
use crate::lang::country::is_iso_alpha2;
use crate::lang::currency::is_iso_4217;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::predicate::{Check, NumOp, TextSet};
use crate::lang::reach::FactValue;

use super::Checker;
use super::conditions::{Matcher, Sense};

/// A text operand: its value, where it is, and the string literal it came from (`None` for an
/// id written as a bare number), so that a regex error can point inside the string.
#[derive(Debug)]
pub(super) struct TextLiteral<'l> {
    /// The text, escapes decoded.
    pub value: String,
    /// The whole literal.
    pub span: Span,
    /// The string as written, when it was one.
    pub string: Option<&'l StringLit>,
}

/// Whether text comparisons on a field ignore case (`country` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    /// `"a"` and `"A"` differ.
    Sensitive,
    /// `"us"` matches `"US"`.
    Ignored,
}

impl Case {
    /// How the field compares text.
    pub(super) fn of(field: FieldRef) -> Case {
        if field.ignores_case() {
            Case::Ignored
        } else {
            Case::Sensitive
        }
    }
}

impl Checker<'_> {
    /// Warns about a text compared with `country` or `currency` that is no code of its standard.
    fn check_code(&mut self, list: CodeList, t: &str, span: Span) {
        match list {
            CodeList::Country if !is_iso_alpha2(t) => {
                self.error(
                    Code::CountryCode,
                    span,
                    "not an ISO 3166-1 alpha-2 code",
                    format!("\"{t}\" is not a country code the tracker sends"),
                )
                .help = Some(match t {
                    "UK" | "uk" => "the United Kingdom is \"GB\"".into(),
                    _ => "countries are two-letter ISO codes such as \"US\", \"DE\", \"GB\"".into(),
                });
            }
            CodeList::Currency if !is_iso_4217(t) => {
                self.error(
                    Code::CurrencyCode,
                    span,
                    "not an ISO 4217 code",
                    format!("\"{t}\" is not a currency code the tracker sends"),
                )
                .help = Some(
                    "currencies are three-letter ISO 4217 codes such as \"USD\", \"EUR\", \"GBP\""
                        .into(),
                );
            }
            _ => {}
        }
    }

    /// Checks the operand against the field's type and builds the matcher.
    pub(super) fn check_for(
        &mut self,
        field: FieldRef,
        op: &Op,
        operand: &Spanned<Literal>,
    ) -> Option<Matcher> {
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
        let sense = if matches!(op, Op::NotEquals | Op::NotContains | Op::NotIn) {
            Sense::Negated
        } else {
            Sense::Holds
        };
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
                Some(Matcher { check, sense, fact })
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
                // `!= true` is `== false`: a flag's check is never negated.
                let want = b != (sense == Sense::Negated);
                Some(Matcher {
                    check: Check::Flag(want),
                    sense: Sense::Holds,
                    fact: FactValue::Flag(want),
                })
            }
            FieldType::Text | FieldType::Id => {
                let texts: Vec<TextLiteral> = items
                    .iter()
                    .map(|i| self.text_literal(field, i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Option<_>>()?;
                if let Some(list) = field.code_list()
                    && matches!(op, Op::Equals | Op::NotEquals | Op::In | Op::NotIn)
                {
                    for TextLiteral { value: t, span, .. } in &texts {
                        self.check_code(list, t, *span);
                    }
                }
                // `in []` has no first value (and needs none); every other operator has one.
                let single = texts.first().map(|t| t.value.clone()).unwrap_or_default();
                let check = match op {
                    Op::Equals | Op::NotEquals => Check::TextEq(single.clone().into_boxed_str()),
                    Op::Contains | Op::NotContains => Check::Contains(Box::new(
                        memmem::Finder::new(single.as_bytes()).into_owned(),
                    )),
                    Op::StartsWith => Check::StartsWith(single.clone().into_boxed_str()),
                    Op::EndsWith => Check::EndsWith(single.clone().into_boxed_str()),
                    Op::Matches => Check::Matches(self.regex(&texts[0], Case::of(field))?),
                    Op::In | Op::NotIn => {
                        let values = texts.iter().map(|t| t.value.clone());
                        Check::TextIn(TextSet::new(values, Case::of(field) == Case::Ignored))
                    }
                    _ => unreachable!("{op:?} passed op_applies for text"),
                };
                let fact = match op {
                    Op::In | Op::NotIn => {
                        FactValue::Texts(texts.into_iter().map(|t| t.value).collect())
                    }
                    Op::Equals | Op::NotEquals => FactValue::Text(single),
                    _ => FactValue::Other(single),
                };
                Some(Matcher { check, sense, fact })
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
    ) -> Option<TextLiteral<'l>> {
        let ty = field.field().ty();
        match &lit.node {
            Literal::Str(s) => Some(TextLiteral {
                value: s.value.clone(),
                span: lit.span,
                string: Some(s),
            }),
            Literal::Number(n, text)
                if ty == FieldType::Id && n.fract() == 0.0 && !text.starts_with('-') =>
            {
                Some(TextLiteral {
                    value: text.clone(),
                    span: lit.span,
                    string: None,
                })
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
