//! Why a webhook fires or not for one event: each condition, the value it read, and the verdict.

use serde::Serialize;

use crate::event::{Event, Value};
use crate::lang::Webhook;
use crate::lang::predicate::{Predicate, Test};
use crate::lang::url::RenderContext;

/// One comparison's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionReport {
    /// The comparison as written.
    pub condition: String,
    /// The value it read, saying from which click (`"facebook" (first click)`, `not set`).
    pub value: String,
    /// Whether it held.
    pub holds: bool,
}

/// One webhook's verdict for an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The webhook's name.
    pub webhook: String,
    /// Whether it fires (a disabled webhook never does).
    pub fires: bool,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Whether the event's kind is one it listens to.
    pub listens: bool,
    /// The rendered URL, when it fires or would fire but for `disabled`.
    pub url: Option<String>,
    /// Every comparison of its `when` clauses, in source order.
    pub conditions: Vec<ConditionReport>,
}

/// Reports one comparison.
pub fn report_test(test: &Test, event: &Event) -> ConditionReport {
    let value = event.value(test.field);
    let mut shown = value.to_string();
    if let (Some(a), false) = (test.field.attribution(), matches!(value, Value::Missing)) {
        shown = format!("{shown} ({})", a.phrase());
    } else if let Some(a) = test.field.attribution() {
        shown = format!("not set ({})", a.phrase());
    }
    ConditionReport {
        condition: test.source.trim().to_owned(),
        value: shown,
        holds: test.eval_value(value),
    }
}

fn collect(predicate: &Predicate, event: &Event, out: &mut Vec<ConditionReport>) {
    match predicate {
        Predicate::All(parts) | Predicate::Any(parts) => {
            parts.iter().for_each(|p| collect(p, event, out))
        }
        Predicate::Not(inner) => collect(inner, event, out),
        Predicate::Test(test) => out.push(report_test(test, event)),
    }
}

/// Explains one webhook for one event.
pub fn explain(webhook: &Webhook, event: &Event) -> Explanation {
    let listens = webhook.events.contains(event.kind);
    let mut conditions = Vec::new();
    for c in &webhook.conditions {
        collect(&c.predicate, event, &mut conditions);
    }
    let matched = webhook.fires_for(event);
    let url = matched.then(|| {
        webhook.request.url.render(&RenderContext {
            event,
            webhook: &webhook.name,
            delivery: "DELIVERY-ID",
        })
    });
    Explanation {
        webhook: webhook.name.clone(),
        fires: matched && !webhook.disabled,
        disabled: webhook.disabled,
        listens,
        url,
        conditions,
    }
}
