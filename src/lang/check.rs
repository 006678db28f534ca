//! The checker: names, types, attribution, tokens and settings, compiled as it goes.

use std::sync::Arc;
use std::time::Duration;

use memchr::memmem;

use crate::event::EventKind;
use crate::event::{Attribution, Field, FieldRef, FieldType, NumberField};

use super::ast::{
    Clause, Comparison, EventSpec, Expr, Literal, Method, Op, Span, Spanned, StringLit,
    ValueSource, WebhookDecl,
};
use super::codes::Code;
use super::country::is_iso_alpha2;
use super::diagnostic::{Diagnostic, SourceFile, suggestion};
use super::predicate::{Check, NumOp, Plan, Predicate, Test, TextSet};
use super::reach::{self, Fact, FactValue};
use super::url::{Token, UrlProblem, UrlTemplate};
use super::webhook::{
    Condition, DEFAULT_TIMEOUT, Env, EventSet, Header, Request, Secretish, Webhook,
};

/// The longest per-attempt deadline a rule may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The most retries a rule may ask for.
pub const MAX_RETRIES: u32 = 100;

const CLAUSE_WORDS: [&str; 9] = [
    "on", "when", "post", "get", "header", "timeout", "retries", "secret", "disabled",
];

/// Headers whc sets itself, which a rule may not override.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "content-type",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "user-agent",
];

/// Checks and compiles the webhooks of one parsed file; problems go to `diags`.
/// A webhook with an error is left out of the result.
pub fn check_webhooks(
    source: &Arc<SourceFile>,
    webhooks: &[WebhookDecl],
    env: &dyn Env,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Webhook> {
    let mut out = Vec::new();
    for decl in webhooks {
        let mut checker = Checker {
            source,
            env,
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

struct Checker<'a> {
    source: &'a Arc<SourceFile>,
    env: &'a dyn Env,
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

    fn webhook(&mut self, decl: &WebhookDecl) -> Option<Webhook> {
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
                Clause::When(expr) => match self.condition(expr, true) {
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

    fn repeated(&mut self, span: Span, first: Span, what: &str, word: &str) {
        self.error(
            Code::RepeatedClause,
            span,
            "given again here",
            format!("this webhook already has {what}"),
        )
        .with_label_mut(first, "first given here")
        .help = Some(format!("keep a single `{word}` line"));
    }

    fn event_spec(&mut self, spec: &Spanned<EventSpec>) -> Option<EventSet> {
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

    // === Conditions ===

    /// Compiles a condition. `conjunct` says whether it must hold for the webhook to fire, so
    /// that its comparisons take part in the can-never-fire analysis.
    fn condition(&mut self, expr: &Spanned<Expr>, conjunct: bool) -> Option<Predicate> {
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

    fn field(&mut self, c: &Comparison) -> Option<FieldRef> {
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

    fn comparison(&mut self, c: &Comparison, span: Span, conjunct: bool) -> Option<Test> {
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

    fn test(&self, field: FieldRef, check: Check, negated: bool, span: Span) -> Test {
        Test {
            fast: super::predicate::Fast::of(field, &check, negated),
            field,
            check,
            negated,
            source: self.text(span).into(),
            span,
        }
    }

    fn fact(&mut self, conjunct: bool, field: FieldRef, op: &Op, value: FactValue, span: Span) {
        if conjunct {
            self.facts.push(Fact {
                field,
                op: op.clone(),
                value,
                span,
            });
        }
    }

    /// Checks the operand against the field's type and builds the matcher.
    fn check_for(
        &mut self,
        field: FieldRef,
        op: &Op,
        operand: &Spanned<Literal>,
    ) -> Option<(Check, bool, FactValue)> {
        let ty = field.field().ty();
        let is_list_op = matches!(op, Op::In | Op::NotIn);
        let items: Vec<&Spanned<Literal>> = match (&operand.node, is_list_op) {
            (Literal::List(items), true) => items.iter().collect(),
            (Literal::List(_), false) => {
                self.error(
                    Code::LiteralType,
                    operand.span,
                    "a list",
                    format!("`{}` compares with a single value, not a list", op.words()),
                )
                .help = Some(format!("to test membership write `{field} in [...]`"));
                return None;
            }
            (other, true) => {
                self.error(
                    Code::LiteralType,
                    operand.span,
                    format!("{}, not a list", other.describe()),
                    format!("`{}` needs a list such as `[\"a\", \"b\"]`", op.words()),
                );
                return None;
            }
            (_, false) => vec![operand],
        };
        let negated = matches!(op, Op::NotEquals | Op::NotContains | Op::NotIn);
        match ty {
            FieldType::Number => {
                let nums: Vec<f64> = items
                    .iter()
                    .map(|i| self.number_literal(field, i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Option<_>>()?;
                let (check, fact) = match op {
                    Op::In | Op::NotIn => (
                        Check::NumberIn(nums.clone().into_boxed_slice()),
                        FactValue::Nums(nums),
                    ),
                    _ => {
                        let num_op = match op {
                            Op::Greater => NumOp::Greater,
                            Op::AtLeast => NumOp::AtLeast,
                            Op::Less => NumOp::Less,
                            Op::AtMost => NumOp::AtMost,
                            _ => NumOp::Eq,
                        };
                        (Check::Number(num_op, nums[0]), FactValue::Num(nums[0]))
                    }
                };
                Some((check, negated, fact))
            }
            FieldType::Flag => {
                let Literal::Bool(b) = items[0].node else {
                    self.error(
                        Code::LiteralType,
                        items[0].span,
                        format!("{}, not `true` or `false`", items[0].node.describe()),
                        format!("`{field}` is a flag; compare it with `true` or `false`"),
                    )
                    .help = Some(format!(
                        "or write `{field}` alone, meaning `{field} == true`"
                    ));
                    return None;
                };
                let want = b != negated;
                Some((Check::Flag(want), false, FactValue::Flag(want)))
            }
            FieldType::Text | FieldType::Id => {
                let texts: Vec<(String, Span, Option<&StringLit>)> = items
                    .iter()
                    .map(|i| self.text_literal(field, i))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Option<_>>()?;
                if field.ignores_case()
                    && matches!(op, Op::Equals | Op::NotEquals | Op::In | Op::NotIn)
                {
                    for (t, span, _) in &texts {
                        if !is_iso_alpha2(t) {
                            self.error(
                                Code::CountryCode,
                                *span,
                                "not an ISO 3166-1 alpha-2 code",
                                format!("\"{t}\" is not a country code the tracker sends"),
                            )
                            .help = Some(match t.as_str() {
                                "UK" | "uk" => "the United Kingdom is \"GB\"".into(),
                                _ => "countries are two-letter ISO codes such as \"US\", \"DE\", \"GB\"".into(),
                            });
                        }
                    }
                }
                // `in []` has no first value (and needs none); every other operator has one.
                let single = texts.first().map(|t| t.0.clone()).unwrap_or_default();
                let check = match op {
                    Op::Equals | Op::NotEquals => Check::TextEq(single.clone().into_boxed_str()),
                    Op::Contains | Op::NotContains => Check::Contains(Box::new(
                        memmem::Finder::new(single.as_bytes()).into_owned(),
                    )),
                    Op::StartsWith => Check::StartsWith(single.clone().into_boxed_str()),
                    Op::EndsWith => Check::EndsWith(single.clone().into_boxed_str()),
                    Op::Matches => Check::Matches(self.regex(&texts[0], field.ignores_case())?),
                    Op::In | Op::NotIn => {
                        let ignore_case = field.ignores_case();
                        Check::TextIn(TextSet::new(texts.iter().map(|t| t.0.clone()), ignore_case))
                    }
                    _ => unreachable!("{op:?} passed op_applies for text"),
                };
                let fact = match op {
                    Op::In | Op::NotIn => {
                        FactValue::Texts(texts.into_iter().map(|t| t.0).collect())
                    }
                    Op::Equals | Op::NotEquals => FactValue::Text(single),
                    _ => FactValue::Other(single),
                };
                Some((check, negated, fact))
            }
        }
    }

    fn number_literal(&mut self, field: FieldRef, lit: &Spanned<Literal>) -> Option<f64> {
        let n = match &lit.node {
            Literal::Number(n, _) => *n,
            Literal::Str(s) => {
                let mut d = Diagnostic::new(
                    Code::LiteralType,
                    self.source,
                    lit.span,
                    "a string, not a number",
                    format!("`{field}` is a number; compare it with a number"),
                );
                if s.value.trim().parse::<f64>().is_ok() {
                    d = d.with_help(format!("write `{}` without quotes", s.value.trim()));
                }
                self.diags.push(d);
                return None;
            }
            other => {
                self.error(
                    Code::LiteralType,
                    lit.span,
                    format!("{}, not a number", other.describe()),
                    format!("`{field}` is a number; compare it with a number"),
                );
                return None;
            }
        };
        if field == FieldRef::Number(NumberField::EventNumber)
            && !(n.fract() == 0.0 && (1.0..=f64::from(EventKind::MAX_CUSTOM)).contains(&n))
        {
            self.error(
                Code::EventNumberRange,
                lit.span,
                "outside 1..10",
                format!(
                    "`eventNumber` is 1 to 10, so it is never {}",
                    self.text(lit.span)
                ),
            )
            .help = Some("custom events are numbered 1 to 10".into());
            return None;
        }
        Some(n)
    }

    fn text_literal<'l>(
        &mut self,
        field: FieldRef,
        lit: &'l Spanned<Literal>,
    ) -> Option<(String, Span, Option<&'l StringLit>)> {
        let ty = field.field().ty();
        match &lit.node {
            Literal::Str(s) => Some((s.value.clone(), lit.span, Some(s))),
            Literal::Number(n, text)
                if ty == FieldType::Id && n.fract() == 0.0 && !text.starts_with('-') =>
            {
                Some((text.clone(), lit.span, None))
            }
            other => {
                let wrote = self.text(lit.span).to_owned();
                self.error(
                    Code::LiteralType,
                    lit.span,
                    format!("{}, not text", other.describe()),
                    format!(
                        "`{field}` is {}; compare it with a quoted string",
                        ty.describe()
                    ),
                )
                .help = Some(format!("write `\"{wrote}\"`"));
                None
            }
        }
    }

    /// Compiles a `matches` pattern; `ignore_case` for `country`, which compares ignoring case.
    fn regex(
        &mut self,
        (pattern, span, lit): &(String, Span, Option<&StringLit>),
        ignore_case: bool,
    ) -> Option<regex::Regex> {
        if let Err(err) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
            let e = err.span();
            let at = lit.map_or(*span, |l| {
                l.inner_span(e.start.offset..e.end.offset.max(e.start.offset + 1))
            });
            self.error(
                Code::InvalidRegex,
                at,
                err.kind().to_string(),
                "invalid regular expression",
            )
            .help = Some(
                "the syntax is Rust's `regex` crate (no look-around or back-references)".into(),
            );
            return None;
        }
        match regex::RegexBuilder::new(pattern)
            .case_insensitive(ignore_case)
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => Some(re),
            Err(err) => {
                self.error(
                    Code::InvalidRegex,
                    *span,
                    "cannot compile",
                    "invalid regular expression",
                )
                .help = Some(err.to_string());
                None
            }
        }
    }

    // === The request ===

    fn url(&mut self, url: &StringLit) -> Option<UrlTemplate> {
        match UrlTemplate::parse(&url.value) {
            Ok(t) => {
                if t.is_insecure() && !is_loopback(&url.value) {
                    self.error(
                        Code::InsecureUrl,
                        url.span,
                        "plain http",
                        "this webhook sends over plain `http://`",
                    )
                    .help = Some("use an `https://` endpoint, so event data and secrets are encrypted in transit".into());
                }
                Some(t)
            }
            Err(problems) => {
                for p in problems {
                    match p {
                        UrlProblem::UnknownToken { range, name } => {
                            let names = Token::all_names();
                            let label = suggestion(&name, names.iter().map(String::as_str))
                                .unwrap_or_else(|| "not a token".into());
                            self.error(
                                Code::UnknownToken,
                                url.inner_span(range),
                                label,
                                format!("unknown URL token `[{name}]`"),
                            )
                            .help = Some("tokens are [revenue], [transaction], any field such as [utm_source] or [first.utm_source], and [event], [eventNumber], [visitor], [timestamp], [webhook], [delivery]".into());
                        }
                        UrlProblem::TokenInHost { range, name } => {
                            self.error(
                                Code::TokenInHost,
                                url.inner_span(range),
                                "a token in the host",
                                format!("`[{name}]` would let event data choose where the request goes"),
                            )
                            .help = Some("tokens may appear in the path, the query or the fragment, never in the scheme, host or port".into());
                        }
                        UrlProblem::Invalid { reason, .. } => {
                            self.error(Code::InvalidUrl, url.span, "invalid URL", reason);
                        }
                    }
                }
                None
            }
        }
    }

    fn header(&mut self, name: &StringLit, value: &ValueSource) -> Option<Header> {
        let mut ok = true;
        if http::HeaderName::from_bytes(name.value.as_bytes()).is_err() {
            self.error(
                Code::InvalidHeader,
                name.span,
                "not a valid header name",
                format!("`{}` is not a valid HTTP header name", name.value),
            )
            .help = Some("header names are letters, digits and `-`".into());
            ok = false;
        } else if RESERVED_HEADERS.contains(&name.value.to_ascii_lowercase().as_str()) {
            self.error(Code::InvalidHeader, name.span, "set by whc", format!("whc sets `{}` itself", name.value))
                .help = Some("remove this header; whc sends Content-Type, User-Agent, Idempotency-Key and the webhook-* signature headers on every attempt".into());
            ok = false;
        }
        let value = match value {
            ValueSource::Literal(v) => {
                if http::HeaderValue::from_str(&v.value).is_err() {
                    self.error(
                        Code::InvalidHeader,
                        v.span,
                        "not a valid header value",
                        "a header value cannot hold line breaks or control characters",
                    );
                    ok = false;
                }
                Secretish::Literal(v.value.clone())
            }
            ValueSource::Env(var) => self.env_value(var, "the header will be left out"),
        };
        ok.then(|| Header {
            name: name.value.clone(),
            value,
        })
    }

    fn env_value(&mut self, var: &StringLit, consequence: &str) -> Secretish {
        let value = self.env.var(&var.value);
        if value.is_none() {
            self.error(
                Code::EnvUnset,
                var.span,
                "not set",
                format!("environment variable `{}` is not set", var.value),
            )
            .help = Some(format!("set it where whc runs; until then {consequence}"));
        }
        Secretish::Env {
            var: var.value.clone(),
            value,
        }
    }

    fn secret(&mut self, value: &ValueSource, span: Span) -> Option<Secretish> {
        match value {
            ValueSource::Env(var) => Some(self.env_value(
                var,
                "deliveries of this webhook fail rather than go out unsigned",
            )),
            ValueSource::Literal(_) => {
                self.error(
                    Code::SecretLiteral,
                    span,
                    "a secret written in the file",
                    "a signing secret cannot be written in a rule file",
                )
                .help = Some("rule files live in version control; put the secret in an environment variable and write `secret env(\"NAME\")`".into());
                None
            }
        }
    }

    fn duration(&mut self, text: &Spanned<String>) -> Option<Duration> {
        let digits_end = text
            .node
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.node.len());
        let (digits, unit) = text.node.split_at(digits_end);
        let n: u64 = digits.parse().unwrap_or(u64::MAX);
        let d = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => n.checked_mul(1000).map(Duration::from_millis),
            "m" => n.checked_mul(60_000).map(Duration::from_millis),
            other => {
                let label = match other {
                    "" => "no unit".to_owned(),
                    u => suggestion(u, ["ms", "s", "m"])
                        .unwrap_or_else(|| format!("unknown unit `{u}`")),
                };
                self.error(
                    Code::InvalidDuration,
                    text.span,
                    label,
                    format!("`{}` is not a duration", text.node),
                )
                .help = Some("write a number with a unit: `500ms`, `5s` or `1m`".into());
                return None;
            }
        };
        match d {
            Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Some(d),
            _ => {
                self.error(
                    Code::InvalidDuration,
                    text.span,
                    "out of range",
                    "a timeout must be between 1ms and 60s",
                )
                .help = Some(
                    "the product's advice is that endpoints answer within 5s, the default".into(),
                );
                None
            }
        }
    }

    fn retries(&mut self, text: &Spanned<String>) -> Option<u32> {
        match text.node.parse::<u32>() {
            Ok(n) if n <= MAX_RETRIES => Some(n),
            _ => {
                self.error(
                    Code::InvalidRetries,
                    text.span,
                    "too many",
                    format!("`retries` is at most {MAX_RETRIES}"),
                );
                None
            }
        }
    }

    // === Warnings about the whole webhook ===

    fn reachability(&mut self, events: EventSet, decl: &WebhookDecl) {
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

trait LabelMut {
    fn with_label_mut(&mut self, span: Span, text: impl Into<String>) -> &mut Self;
}

impl LabelMut for Diagnostic {
    fn with_label_mut(&mut self, span: Span, text: impl Into<String>) -> &mut Self {
        self.labels.push(super::diagnostic::Label {
            span,
            text: text.into(),
        });
        self
    }
}

fn flatten_and<'a>(expr: &'a Spanned<Expr>, out: &mut Vec<&'a Spanned<Expr>>) {
    match &expr.node {
        Expr::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        _ => out.push(expr),
    }
}

fn op_applies(ty: FieldType, op: &Op) -> bool {
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

fn ops_for(ty: FieldType) -> String {
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

fn example_for(ty: FieldType, field: FieldRef) -> String {
    match ty {
        FieldType::Number => format!("for example `{field} > 50` or `{field} is set`"),
        FieldType::Flag => format!("for example `{field}` or `{field} == false`"),
        FieldType::Text | FieldType::Id => {
            format!("for example `{field} equals \"value\"` or `{field} is set`")
        }
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    ["localhost", "127.", "[::1]"]
        .iter()
        .any(|p| rest.starts_with(p))
}
