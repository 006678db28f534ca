//! The checker: names, types, attribution, tokens and settings, compiled as it goes.
//!
//! One [`Checker`] per webhook collects every problem; each module below checks one thing.

mod clauses;
mod conditions;
mod events;
mod fields;
mod headers;
mod literals;
mod operators;
mod regex;
mod settings;
mod sources;
mod url;
mod warnings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ast::{Span, WebhookDecl};
use super::codes::Code;
use super::diagnostic::{Diagnostic, Label, SourceFile};
use super::reach::Fact;
use super::webhook::{Env, Webhook};

pub use settings::{MAX_RETRIES, MAX_TIMEOUT};
pub use sources::check_sources;

/// The `matches` patterns compiled so far in one compilation, by pattern and case: a pattern
/// written on many webhooks is compiled once and shared (a compiled regex is 10 KB or more,
/// and rule sets generated from templates repeat their patterns).
/// Shared by the threads of one compilation.
#[derive(Debug, Default)]
pub struct Regexes(Mutex<HashMap<(String, bool), ::regex::Regex>>);

impl Regexes {
    /// The regex compiled for a pattern and case, if one was.
    fn get(&self, key: &(String, bool)) -> Option<::regex::Regex> {
        self.lock().get(key).cloned()
    }

    /// Keeps a compiled regex; the one kept first when another thread compiled it meanwhile.
    fn keep(&self, key: (String, bool), regex: ::regex::Regex) -> ::regex::Regex {
        self.lock().entry(key).or_insert(regex).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, bool), ::regex::Regex>> {
        // A map of finished regexes: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Checks and compiles the webhooks of one parsed file; problems go to `diags`.
/// A webhook with an error is left out of the result.
pub fn check_webhooks(
    source: &Arc<SourceFile>,
    webhooks: &[WebhookDecl],
    env: &dyn Env,
    regexes: &Regexes,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Webhook> {
    let mut out = Vec::new();
    for decl in webhooks {
        let mut checker = Checker {
            source,
            env,
            regexes,
            diags: Vec::new(),
            facts: Vec::new(),
        };
        let webhook = checker.webhook(decl);
        let failed = checker.diags.iter().any(Diagnostic::is_error);
        diags.append(&mut checker.diags);
        if let (Some(w), false) = (webhook, failed) {
            out.push(w);
        }
    }
    out
}

/// Checks one webhook, collecting its diagnostics and the facts its conditions assert.
struct Checker<'a> {
    source: &'a Arc<SourceFile>,
    env: &'a dyn Env,
    regexes: &'a Regexes,
    diags: Vec<Diagnostic>,
    /// Comparisons that must all hold (top-level conjuncts), for reachability.
    facts: Vec<Fact>,
}

impl Checker<'_> {
    fn error(
        &mut self,
        code: Code,
        span: Span,
        label: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::new(code, self.source, span, label, message));
        self.diags.last_mut().expect("just pushed")
    }

    fn text(&self, span: Span) -> &str {
        self.source.text.get(span.range()).unwrap_or("")
    }
}

/// Adds a secondary label to a diagnostic already pushed (see [`Checker::error`]).
trait LabelMut {
    fn with_label_mut(&mut self, span: Span, text: impl Into<String>) -> &mut Self;
}

impl LabelMut for Diagnostic {
    fn with_label_mut(&mut self, span: Span, text: impl Into<String>) -> &mut Self {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }
}
