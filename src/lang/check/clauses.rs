//! A webhook's clauses: each read once and in order, then what is missing.

use std::sync::Arc;
use std::time::Duration;

use crate::lang::ast::{Clause, Method, Span, Spanned, WebhookDecl};
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;
use crate::lang::predicate::Plan;
use crate::lang::url::UrlTemplate;
use crate::lang::webhook::{Condition, DEFAULT_TIMEOUT, EventSet, Request, Secretish, Webhook};

use super::conditions::Position;
use super::{Checker, LabelMut};

const CLAUSE_WORDS: [&str; 9] = [
    "on", "when", "post", "get", "header", "timeout", "retries", "secret", "disabled",
];

impl Checker<'_> {
    pub(super) fn webhook(&mut self, decl: &WebhookDecl) -> Option<Webhook> {
        let mut events = EventSet::default();
        let mut saw_on = false;
        let mut on_span = None;
        let mut conditions = Vec::new();
        let mut request: Option<(Spanned<Method>, UrlTemplate, Span)> = None;
        let mut headers = Vec::new();
        let mut timeout: Option<(Duration, Span)> = None;
        let mut retries: Option<(u32, Span)> = None;
        let mut secret: Option<(Secretish, Span)> = None;
        let mut disabled: Option<Span> = None;
        let mut broken = false;

        for clause in &decl.clauses {
            match &clause.node {
                Clause::On(specs) => {
                    saw_on = true;
                    on_span.get_or_insert(clause.span);
                    for spec in specs {
                        match self.event_spec(spec) {
                            Some(set) if events.covers(set) => {
                                self.error(
                                    Code::DuplicateEvent,
                                    spec.span,
                                    "already listed",
                                    format!(
                                        "`{}` is already covered by this webhook's `on`",
                                        self.text(spec.span)
                                    ),
                                )
                                .help = Some("remove it; each event fires the webhook once".into());
                            }
                            Some(set) => events.extend(set),
                            None => broken = true,
                        }
                    }
                }
                Clause::When(expr) => match self.condition(expr, Position::Conjunct) {
                    Some(predicate) => conditions.push(Condition {
                        source: self.text(expr.span).to_owned(),
                        span: expr.span,
                        predicate,
                    }),
                    None => broken = true,
                },
                Clause::Request { method, url } => {
                    if let Some((first, ..)) = &request {
                        let first_span = first.span;
                        self.repeated(clause.span, first_span, "a URL", "post` or `get");
                        continue;
                    }
                    match self.url(url) {
                        Some(t) => request = Some((method.clone(), t, url.span)),
                        None => broken = true,
                    }
                }
                Clause::Header { name, value } => match self.header(name, value) {
                    Some(h) => headers.push(h),
                    None => broken = true,
                },
                Clause::Timeout(text) => {
                    if let Some((_, first)) = timeout {
                        self.repeated(clause.span, first, "a timeout", "timeout");
                    } else if let Some(d) = self.duration(text) {
                        timeout = Some((d, clause.span));
                    }
                }
                Clause::Retries(text) => {
                    if let Some((_, first)) = retries {
                        self.repeated(clause.span, first, "a retry count", "retries");
                    } else if let Some(n) = self.retries(text) {
                        retries = Some((n, clause.span));
                    }
                }
                Clause::Secret(value) => {
                    if let Some((_, first)) = secret {
                        self.repeated(clause.span, first, "a secret", "secret");
                    } else if let Some(s) = self.secret(value, clause.span) {
                        secret = Some((s, clause.span));
                    }
                }
                Clause::Disabled => {
                    if let Some(first) = disabled {
                        self.repeated(clause.span, first, "`disabled`", "disabled");
                    }
                    disabled = Some(clause.span);
                }
                Clause::Unknown { word } => {
                    let mut label = "not a clause".to_owned();
                    if let Some(s) = suggestion(&word.node, CLAUSE_WORDS) {
                        label = s;
                    }
                    self.error(
                        Code::UnknownClause,
                        word.span,
                        label,
                        format!("unknown clause `{}`", word.node),
                    )
                    .help = Some(format!(
                        "a webhook's lines start with one of: {}",
                        CLAUSE_WORDS.map(|w| format!("`{w}`")).join(", ")
                    ));
                }
            }
        }

        if !saw_on {
            self.error(
                Code::MissingOn,
                decl.name.span,
                "no `on` clause",
                format!(
                    "webhook `{}` never says which events fire it",
                    decl.name.node
                ),
            )
            .help =
                Some("add a line such as `on conversion` (or `refund`, `event`, `event 3`)".into());
        }
        if request.is_none() && !broken {
            self.error(
                Code::MissingUrl,
                decl.name.span,
                "no `post` or `get` clause",
                format!("webhook `{}` has no URL to send to", decl.name.node),
            )
            .help = Some("add a line such as `post \"https://api.example.com/hook\"`".into());
        }

        self.reachability(events, decl);

        let (method, url, _) = request?;
        if broken || !saw_on {
            return None;
        }
        Some(Webhook {
            name: decl.name.node.clone(),
            source: Arc::clone(self.source),
            span: decl.name.span,
            events,
            request: Request {
                method: method.node,
                url,
                headers,
                timeout: timeout.map_or(DEFAULT_TIMEOUT, |(d, _)| d),
                retries: retries.map(|(n, _)| n),
                secret: secret.map(|(s, _)| s),
            },
            disabled: disabled.is_some(),
            plan: Plan::new(conditions.iter().map(|c| &c.predicate)),
            conditions,
        })
    }

    pub(super) fn repeated(&mut self, span: Span, first: Span, what: &str, word: &str) {
        self.error(
            Code::RepeatedClause,
            span,
            "given again here",
            format!("this webhook already has {what}"),
        )
        .with_label_mut(first, "first given here")
        .help = Some(format!("keep a single `{word}` line"));
    }
}
