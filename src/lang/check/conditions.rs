//! Conditions: `and`/`or`/`not` trees and the comparisons at their leaves.

use crate::event::{FieldRef, FieldType};
use crate::lang::ast::{Comparison, Expr, Op, Span, Spanned};
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;
use crate::lang::predicate::{Check, Fast, Predicate, Test};
use crate::lang::reach::{Fact, FactValue};

use super::operators::{all_ops, example_for, op_applies, ops_for};
use super::{Checker, LabelMut};

/// Where a condition sits, which decides whether its comparisons are facts for the
/// can-never-fire analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    /// A `when` line or one side of a top-level `and`: it must hold for the webhook to fire.
    Conjunct,
    /// Under `or` or `not`: the webhook may fire without it.
    Nested,
}

/// Whether a compiled check's answer is kept or inverted (`not equals`, `not in`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sense {
    /// The comparison holds when the check does.
    Holds,
    /// The comparison holds when the check does not.
    Negated,
}

/// What a comparison's operand compiles to: the check, its sense, and the fact it asserts.
#[derive(Debug)]
pub(super) struct Matcher {
    /// What is tested against the field's value.
    pub check: Check,
    /// Kept or inverted.
    pub sense: Sense,
    /// What the comparison says about the field, for the can-never-fire analysis.
    pub fact: FactValue,
}

impl Checker<'_> {
    /// Compiles a condition; its `position` says whether its comparisons are facts that must
    /// all hold (see [`Position`]).
    pub(super) fn condition(
        &mut self,
        expr: &Spanned<Expr>,
        position: Position,
    ) -> Option<Predicate> {
        match &expr.node {
            Expr::And(..) => {
                let mut parts = Vec::new();
                flatten_and(expr, &mut parts);
                let compiled: Vec<Option<Predicate>> = parts
                    .into_iter()
                    .map(|p| self.condition(p, position))
                    .collect();
                let compiled: Option<Vec<Predicate>> = compiled.into_iter().collect();
                Some(Predicate::All(compiled?.into_boxed_slice()))
            }
            Expr::Or(a, b) => {
                let a = self.condition(a, Position::Nested);
                let b = self.condition(b, Position::Nested);
                let mut parts = Vec::new();
                for p in [a?, b?] {
                    match p {
                        Predicate::Any(inner) => parts.extend(inner.into_vec()),
                        other => parts.push(other),
                    }
                }
                Some(Predicate::Any(parts.into_boxed_slice()))
            }
            Expr::Not(inner) => Some(Predicate::Not(Box::new(
                self.condition(inner, Position::Nested)?,
            ))),
            Expr::Compare(c) => {
                let test = self.comparison(c, expr.span, position)?;
                Some(Predicate::Test(Box::new(test)))
            }
        }
    }

    pub(super) fn comparison(
        &mut self,
        c: &Comparison,
        span: Span,
        position: Position,
    ) -> Option<Test> {
        let field = self.field(c);
        let op = match &c.op {
            None => None,
            Some(op) => match &op.node {
                Op::Unknown(word) => {
                    let words: Vec<&str> = Op::KNOWN
                        .iter()
                        .map(|o| o.words())
                        .chain(Op::KNOWN.iter().filter_map(Op::symbol))
                        .collect();
                    let label = suggestion(word, words.iter().copied())
                        .unwrap_or_else(|| "not an operator".into());
                    self.error(
                        Code::UnknownOperator,
                        op.span,
                        label,
                        format!("unknown operator `{word}`"),
                    )
                    .help = Some(format!("the operators are: {}", all_ops()));
                    return None;
                }
                known => Some(Spanned::new(op.span, known.clone())),
            },
        };
        let field = field?;
        let ty = field.field().ty();
        let Some(op) = op else {
            // A bare field: only a flag may stand alone.
            if ty == FieldType::Flag {
                let matcher = Matcher {
                    check: Check::Flag(true),
                    sense: Sense::Holds,
                    fact: FactValue::Flag(true),
                };
                return Some(self.test(position, field, &Op::Equals, matcher, span));
            }
            self.error(
                Code::MissingValue,
                c.field.span,
                "needs an operator and a value",
                format!("`{}` is {} and cannot stand alone", field, ty.describe()),
            )
            .help = Some(example_for(ty, field));
            return None;
        };
        if !op_applies(ty, &op.node) {
            let label = format!("`{}` does not apply to {}", op.node.words(), ty.describe());
            self.error(
                Code::OperatorType,
                op.span,
                label,
                format!(
                    "`{}` is {}; `{}` cannot compare it",
                    field.field(),
                    ty.describe(),
                    op.node.words()
                ),
            )
            .with_label_mut(c.field.span, format!("this is {}", ty.describe()))
            .help = Some(format!("{} compares with: {}", ty.describe(), ops_for(ty)));
            return None;
        }
        if !op.node.takes_operand() {
            if let Some(operand) = &c.operand {
                self.error(
                    Code::LiteralType,
                    operand.span,
                    "remove this value",
                    format!("`{}` takes no value", op.node.words()),
                );
                return None;
            }
            let (check, fact) = if op.node == Op::IsSet {
                (Check::IsSet, FactValue::Set)
            } else {
                (Check::IsNotSet, FactValue::NotSet)
            };
            let matcher = Matcher {
                check,
                sense: Sense::Holds,
                fact,
            };
            return Some(self.test(position, field, &op.node, matcher, span));
        }
        let Some(operand) = &c.operand else {
            self.error(
                Code::MissingValue,
                op.span,
                "expected a value after this",
                format!(
                    "`{}` needs a value to compare `{}` with",
                    op.node.words(),
                    field
                ),
            )
            .help = Some(example_for(ty, field));
            return None;
        };
        let matcher = self.check_for(field, &op.node, operand)?;
        Some(self.test(position, field, &op.node, matcher, span))
    }

    /// The compiled comparison; a conjunct's fact is kept for the can-never-fire analysis.
    fn test(
        &mut self,
        position: Position,
        field: FieldRef,
        op: &Op,
        matcher: Matcher,
        span: Span,
    ) -> Test {
        let Matcher { check, sense, fact } = matcher;
        if position == Position::Conjunct {
            self.facts.push(Fact {
                field,
                op: op.clone(),
                value: fact,
                span,
            });
        }
        let negated = sense == Sense::Negated;
        Test {
            fast: Fast::of(field, &check, negated),
            field,
            check,
            negated,
            source: self.text(span).into(),
            span,
        }
    }
}

pub(super) fn flatten_and<'a>(expr: &'a Spanned<Expr>, out: &mut Vec<&'a Spanned<Expr>>) {
    match &expr.node {
        Expr::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        _ => out.push(expr),
    }
}
