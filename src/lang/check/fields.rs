//! Field names and their `first.`/`last.` click.

use crate::event::{Attribution, Field, FieldRef};
use crate::lang::ast::Comparison;
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;

use super::Checker;

impl Checker<'_> {
    pub(super) fn field(&mut self, c: &Comparison) -> Option<FieldRef> {
        let name = &c.field.name;
        let Some(field) = Field::from_name(&name.node) else {
            let names: Vec<&str> = Field::all().map(Field::name).collect();
            let label = suggestion(&name.node, names.iter().copied())
                .unwrap_or_else(|| "not a field".into());
            let mut help = format!("the fields are: {}", names.join(", "));
            if matches!(name.node.as_str(), "first" | "last") {
                help = format!(
                    "`{}` picks a click: write `{}.utm_source`",
                    name.node, name.node
                );
            }
            self.error(
                Code::UnknownField,
                name.span,
                label,
                format!("unknown field `{}`", name.node),
            )
            .help = Some(help);
            return None;
        };
        let attribution = match &c.field.attribution {
            None => None,
            Some(a) => match a.node.as_str() {
                "first" => Some(Attribution::First),
                "last" => Some(Attribution::Last),
                other => {
                    let label = suggestion(other, ["first", "last"])
                        .unwrap_or_else(|| "not `first` or `last`".into());
                    self.error(
                        Code::Attribution,
                        a.span,
                        label,
                        format!("unknown click `{other}` before `.{}`", name.node),
                    )
                    .help = Some("write `first.FIELD` for the visitor's first click or `last.FIELD` for their last".into());
                    return None;
                }
            },
        };
        match FieldRef::resolve(field, attribution) {
            Some(f) => Some(f),
            None => {
                let a = c
                    .field
                    .attribution
                    .as_ref()
                    .map_or(c.field.span, |a| a.span);
                self.error(
                    Code::Attribution,
                    a.to(name.span),
                    format!("`{field}` has no first or last click"),
                    format!(
                        "`{field}` is not read from a click, so it cannot take `first.` or `last.`"
                    ),
                )
                .help = Some(format!(
                    "write `{field}` alone; only these fields have a first and last click: {}",
                    Field::attributable_names().join(", ")
                ));
                None
            }
        }
    }
}
