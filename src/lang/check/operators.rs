//! Which operators compare which field types, and the help that lists them.

use crate::event::{FieldRef, FieldType};
use crate::lang::ast::Op;

pub(super) fn op_applies(ty: FieldType, op: &Op) -> bool {
    use Op::*;
    match ty {
        FieldType::Text | FieldType::Id => matches!(
            op,
            Equals
                | NotEquals
                | Contains
                | NotContains
                | StartsWith
                | EndsWith
                | In
                | NotIn
                | Matches
                | IsSet
                | IsNotSet
        ),
        FieldType::Number => matches!(
            op,
            Equals | NotEquals | Greater | AtLeast | Less | AtMost | In | NotIn | IsSet | IsNotSet
        ),
        FieldType::Flag => matches!(op, Equals | NotEquals | IsSet | IsNotSet),
    }
}

/// Every operator, in words with its symbol: `equals (==), not equals (!=), contains, ...`.
pub(super) fn all_ops() -> String {
    Op::KNOWN
        .iter()
        .map(|op| match op.symbol() {
            Some(sym) => format!("{} ({sym})", op.words()),
            None => op.words().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operators that apply to a type, for its help: `` `equals` (==), `contains`, ... ``.
pub(super) fn ops_for(ty: FieldType) -> String {
    Op::KNOWN
        .iter()
        .filter(|op| op_applies(ty, op))
        .map(|op| match op.symbol() {
            Some(sym) => format!("`{}` ({sym})", op.words()),
            None => format!("`{}`", op.words()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn example_for(ty: FieldType, field: FieldRef) -> String {
    match ty {
        FieldType::Number => format!("for example `{field} > 50` or `{field} is set`"),
        FieldType::Flag => format!("for example `{field}` or `{field} == false`"),
        FieldType::Text | FieldType::Id => {
            format!("for example `{field} equals \"value\"` or `{field} is set`")
        }
    }
}
