//! Warnings about the whole webhook: duplicate conditions, never fires, `eventNumber` unset.

use crate::event::{FieldRef, NumberField};
use crate::lang::ast::WebhookDecl;
use crate::lang::codes::Code;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::reach;
use crate::lang::webhook::EventSet;

use super::{Checker, LabelMut};

impl Checker<'_> {
    pub(super) fn reachability(&mut self, events: EventSet, decl: &WebhookDecl) {
        let facts = std::mem::take(&mut self.facts);
        for (a, b) in reach::duplicates(&facts) {
            self.error(
                Code::DuplicateCondition,
                b.span,
                "same as above",
                "this condition is written twice",
            )
            .with_label_mut(a.span, "first written here")
            .help = Some("remove one of them".into());
        }
        if let Some(conflict) = reach::contradiction(&facts, events) {
            let name = &decl.name.node;
            let mut d = Diagnostic::new(
                Code::NeverFires,
                self.source,
                conflict.spans[0],
                conflict.labels[0].clone(),
                format!("webhook `{name}` can never fire"),
            )
            .with_help(conflict.reason.clone());
            for (span, label) in conflict.spans.iter().zip(&conflict.labels).skip(1) {
                d = d.with_label(*span, label.clone());
            }
            self.diags.push(d);
        }
        if !events.is_empty()
            && !events.has_custom()
            && let Some(f) = facts
                .iter()
                .find(|f| f.field == FieldRef::Number(NumberField::EventNumber))
        {
            {
                self.error(
                    Code::EventNumberOutsideEvent,
                    f.span,
                    "only custom events have a number",
                    "`eventNumber` is never set for the events this webhook listens to",
                )
                .help = Some(
                    "add `event` (or `event N`) to the `on` clause, or remove this condition"
                        .into(),
                );
            }
        }
    }
}
