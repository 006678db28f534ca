//! The `on` clause: event names and custom event numbers.

use crate::event::EventKind;
use crate::lang::ast::{EventSpec, Spanned};
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;
use crate::lang::webhook::EventSet;

use super::Checker;

impl Checker<'_> {
    pub(super) fn event_spec(&mut self, spec: &Spanned<EventSpec>) -> Option<EventSet> {
        let mut set = EventSet::default();
        match &spec.node {
            EventSpec::Named(name) => match name.as_str() {
                "conversion" => set.insert(EventKind::Conversion),
                "refund" => set.insert(EventKind::Refund),
                "event" => set.extend(EventSet::ANY_CUSTOM),
                other => {
                    let label = suggestion(other, ["conversion", "refund", "event"])
                        .unwrap_or_else(|| "not an event".into());
                    self.error(Code::UnknownEvent, spec.span, label, format!("unknown event `{other}`"))
                        .help = Some("the events are `conversion`, `refund`, `event` (any custom event) and `event 1` to `event 10`".into());
                    return None;
                }
            },
            EventSpec::Numbered(n) => match n.parse::<u8>() {
                Ok(n) if (1..=EventKind::MAX_CUSTOM).contains(&n) => {
                    set.insert(EventKind::Custom(n));
                }
                _ => {
                    self.error(
                        Code::EventNumberRange,
                        spec.span,
                        "no such custom event",
                        format!("there is no custom event {n}"),
                    )
                    .help = Some("custom events are numbered 1 to 10".into());
                    return None;
                }
            },
        }
        Some(set)
    }
}
