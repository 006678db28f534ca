//! Coverage of `whc cases`: webhooks some case fires, conditions made both true and false.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::event::Event;
use crate::lang::Webhook;
use crate::lang::predicate::Test;
use crate::source::Source;

use super::super::output::paint;
use super::SuiteResult;

/// Which webhooks some case fires, and which conditions the cases make both true and false.
#[derive(Debug)]
pub(super) struct Coverage {
    /// Per webhook (in rule order): whether some case's event matches it (a disabled webhook
    /// counts when its conditions hold).
    fired: Vec<bool>,
    /// Per webhook, per comparison in its `when` clauses: (seen true, seen false).
    conditions: Vec<Vec<(bool, bool)>>,
    /// Per source (in rule order): its name and whether some case sends it a request.
    sources: Vec<(String, bool)>,
}

impl Coverage {
    pub(super) fn measure(
        webhooks: &[Webhook],
        sources: &[Source],
        suites: &[SuiteResult],
    ) -> Coverage {
        let sources = sources
            .iter()
            .map(|s| {
                let used = suites
                    .iter()
                    .flat_map(|suite| &suite.cases)
                    .any(|c| c.error.is_none() && c.source.as_deref() == Some(s.name.as_str()));
                (s.name.clone(), used)
            })
            .collect();
        let events: Vec<&Event> = suites
            .iter()
            .flat_map(|s| &s.cases)
            .filter_map(|c| c.event.as_ref())
            .collect();
        let mut fired = Vec::with_capacity(webhooks.len());
        let mut conditions = Vec::with_capacity(webhooks.len());
        for w in webhooks {
            let tests = tests_of(w);
            let mut seen = vec![(false, false); tests.len()];
            let mut any = false;
            for event in events.iter().filter(|e| w.events.contains(e.kind)) {
                any |= w.fires_for(event);
                for (test, seen) in tests.iter().zip(seen.iter_mut()) {
                    if test.eval(event) {
                        seen.0 = true;
                    } else {
                        seen.1 = true;
                    }
                }
            }
            fired.push(any);
            conditions.push(seen);
        }
        Coverage {
            fired,
            conditions,
            sources,
        }
    }

    fn webhook_counts(&self) -> (usize, usize) {
        (self.fired.iter().filter(|f| **f).count(), self.fired.len())
    }

    fn source_counts(&self) -> (usize, usize) {
        let used = self.sources.iter().filter(|(_, u)| *u).count();
        (used, self.sources.len())
    }

    fn condition_counts(&self) -> (usize, usize) {
        let all = self.conditions.iter().flatten();
        (all.clone().filter(|(t, f)| *t && *f).count(), all.count())
    }

    /// The reasons coverage is below `min` percent (empty when it is not).
    pub(super) fn below(&self, min: f64) -> Vec<String> {
        let mut out = Vec::new();
        for (what, (covered, total)) in [
            ("webhook", self.webhook_counts()),
            ("condition", self.condition_counts()),
            ("source", self.source_counts()),
        ] {
            if (covered as f64) * 100.0 < min * (total as f64) {
                out.push(format!(
                    "{what} coverage {} is below --min-coverage {min}%",
                    percent(covered, total)
                ));
            }
        }
        out
    }

    pub(super) fn human(&self, webhooks: &[Webhook], color: bool) -> String {
        let mut out = String::from("\ncoverage\n");
        let (covered, total) = self.webhook_counts();
        let _ = writeln!(
            out,
            "  webhooks:   {covered}/{total} fired by some case ({})",
            percent(covered, total)
        );
        for (w, fired) in webhooks.iter().zip(&self.fired) {
            if !fired {
                let (line, col) = w.source.line_column(w.span.start);
                let _ = writeln!(
                    out,
                    "    {} {}:{line}:{col} `{}`: no case fires it",
                    paint("✗", "31", color),
                    w.source.name,
                    w.name
                );
            }
        }
        let (covered, total) = self.source_counts();
        if total > 0 {
            let _ = writeln!(
                out,
                "  sources:    {covered}/{total} sent a request by some case ({})",
                percent(covered, total)
            );
            for (name, used) in &self.sources {
                if !used {
                    let _ = writeln!(
                        out,
                        "    {} source `{name}`: no case sends it a request",
                        paint("✗", "31", color)
                    );
                }
            }
        }
        let (covered, total) = self.condition_counts();
        let _ = writeln!(
            out,
            "  conditions: {covered}/{total} made both true and false ({})",
            percent(covered, total)
        );
        for (w, seen) in webhooks.iter().zip(&self.conditions) {
            for (test, (t, f)) in tests_of(w).iter().zip(seen) {
                if *t && *f {
                    continue;
                }
                let never = match (t, f) {
                    (false, false) => "never evaluated (no case sends an event it listens to)",
                    (true, _) => "never false",
                    (_, true) => "never true",
                };
                let (line, col) = w.source.line_column(test.span.start);
                let _ = writeln!(
                    out,
                    "    {} {}:{line}:{col} `{}`: `{}` {never}",
                    paint("✗", "31", color),
                    w.source.name,
                    w.name,
                    test.source.trim()
                );
            }
        }
        out.push('\n');
        out
    }

    pub(super) fn to_json(&self, webhooks: &[Webhook]) -> Value {
        let (wc, wt) = self.webhook_counts();
        let (cc, ct) = self.condition_counts();
        let unfired: Vec<&str> = webhooks
            .iter()
            .zip(&self.fired)
            .filter(|(_, f)| !**f)
            .map(|(w, _)| w.name.as_str())
            .collect();
        let mut gaps = Vec::new();
        for (w, seen) in webhooks.iter().zip(&self.conditions) {
            for (test, (t, f)) in tests_of(w).iter().zip(seen) {
                if !(*t && *f) {
                    let (line, column) = w.source.line_column(test.span.start);
                    gaps.push(json!({
                        "webhook": w.name,
                        "condition": test.source.trim(),
                        "file": w.source.name,
                        "line": line,
                        "column": column,
                        "seen_true": t,
                        "seen_false": f,
                    }));
                }
            }
        }
        let (sc, st) = self.source_counts();
        let unused: Vec<&str> = self
            .sources
            .iter()
            .filter(|(_, u)| !u)
            .map(|(n, _)| n.as_str())
            .collect();
        json!({
            "webhooks": { "covered": wc, "total": wt, "percent": ratio(wc, wt) },
            "sources": { "covered": sc, "total": st, "percent": ratio(sc, st) },
            "sources_not_used": unused,
            "conditions": { "covered": cc, "total": ct, "percent": ratio(cc, ct) },
            "webhooks_not_fired": unfired,
            "conditions_not_covered": gaps,
        })
    }
}

/// Every comparison in a webhook's `when` clauses, in source order.
fn tests_of(w: &Webhook) -> Vec<&Test> {
    w.conditions
        .iter()
        .flat_map(|c| c.predicate.tests())
        .collect()
}

fn ratio(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

pub(super) fn percent(covered: usize, total: usize) -> String {
    let r = ratio(covered, total);
    if r.fract() == 0.0 {
        format!("{r:.0}%")
    } else {
        format!("{r:.1}%")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentages() {
        assert_eq!(super::percent(0, 0), "100%");
        assert_eq!(super::percent(15, 16), "93.8%");
    }
}
