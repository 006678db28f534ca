//! Conditions: `and`/`or`/`not` trees and the comparisons at their leaves.

use crate::event::{FieldRef, FieldType};
use crate::lang::ast::{Comparison, Expr, Op, Span, Spanned};
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;
use crate::lang::predicate::{Check, Fast, Predicate, Test};
use crate::lang::reach::{Fact, FactValue};

use super::operators::{example_for, op_applies, ops_for};
use super::{Checker, LabelMut};

impl Checker<'_> {
    /// Compiles a condition. `conjunct` says whether it must hold for the webhook to fire, so
    /// that its comparisons take part in the can-never-fire analysis.
    pub(super) fn condition(&mut self, expr: &Spanned<Expr>, conjunct: bool) -> Option<Predicate> {
        match &expr.node {
            Expr::And(..) => {
                let mut parts = Vec::new();
                flatten_and(expr, &mut parts);
                let compiled: Vec<Option<Predicate>> = parts
                    .into_iter()
                    .map(|p| self.condition(p, conjunct))
                    .collect();
                let compiled: Option<Vec<Predicate>> = compiled.into_iter().collect();
                Some(Predicate::All(compiled?.into_boxed_slice()))
            }
            Expr::Or(a, b) => {
                let a = self.condition(a, false);
                let b = self.condition(b, false);
                let mut parts = Vec::new();
                for p in [a?, b?] {
                    match p {
                        Predicate::Any(inner) => parts.extend(inner.into_vec()),
                        other => parts.push(other),
                    }
                }
                Some(Predicate::Any(parts.into_boxed_slice()))
            }
            Expr::Not(inner) => Some(Predicate::Not(Box::new(self.condition(inner, false)?))),
            Expr::Compare(c) => {
                let test = self.comparison(c, expr.span, conjunct)?;
                Some(Predicate::Test(Box::new(test)))
            }
        }
    }

    pub(super) fn comparison(
        &mut self,
        c: &Comparison,
        span: Span,
        conjunct: bool,
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
                    .help = Some("the operators are: equals (==), not equals (!=), contains, not contains, starts with, ends with, greater than (>), at least (>=), less than (<), at most (<=), in, not in, matches, is set, is not set".into());
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
                self.fact(conjunct, field, &Op::Equals, FactValue::Flag(true), span);
                return Some(self.test(field, Check::Flag(true), false, span));
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
            let value = if op.node == Op::IsSet {
                FactValue::Set
            } else {
                FactValue::NotSet
            };
            self.fact(conjunct, field, &op.node, value, span);
            let check = if op.node == Op::IsSet {
                Check::IsSet
            } else {
                Check::IsNotSet
            };
            return Some(self.test(field, check, false, span));
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
        let (check, negated, fact) = self.check_for(field, &op.node, operand)?;
        self.fact(conjunct, field, &op.node, fact, span);
        Some(self.test(field, check, negated, span))
    }

    pub(super) fn test(&self, field: FieldRef, check: Check, negated: bool, span: Span) -> Test {
        Test {
            fast: Fast::of(field, &check, negated),
            field,
            check,
            negated,
            source: self.text(span).into(),
            span,
        }
    }

    pub(super) fn fact(
        &mut self,
        conjunct: bool,
        field: FieldRef,
        op: &Op,
        value: FactValue,
        span: Span,
    ) {
        if conjunct {
            self.facts.push(Fact {
                field,
                op: op.clone(),
                value,
                span,
            });
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
