//! `source` blocks: the route, the secret, every mapped field and the value maps, compiled into
//! [`Source`]s.

use std::sync::Arc;

use crate::event::{Attribution, EventKind, Field, FieldRef, NumberField};
use crate::lang::ast::{
    EventSpec, Literal, MapEntry, Place, SourceClause, SourceDecl, Span, Spanned, ValueFrom,
    ValueSource,
};
use crate::lang::codes::Code;
use crate::lang::diagnostic::{Diagnostic, SourceFile, suggestion};
use crate::lang::webhook::Env;
use crate::source::{
    From, HashPart, IdRule, KindMap, KindRule, Mapping, Outcome, Secret, Source, Target,
};

use super::{Checker, Regexes};

/// The words a source's mapping may fill besides condition fields.
const SPECIAL: [&str; 3] = ["type", "status", "id"];

/// Paths under this prefix belong to whc's own API.
const RESERVED_PREFIX: &str = "/v1/";

/// Checks and compiles the sources of one parsed file; problems go to `diags`.
/// A source with an error is left out of the result.
pub fn check_sources(
    file: &Arc<SourceFile>,
    decls: &[SourceDecl],
    env: &dyn Env,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Source> {
    let mut regexes = Regexes::default();
    let mut out = Vec::new();
    for decl in decls {
        let mut checker = Checker {
            source: file,
            env,
            regexes: &mut regexes,
            diags: Vec::new(),
            facts: Vec::new(),
        };
        let compiled = checker.source_block(decl);
        let failed = checker.diags.iter().any(Diagnostic::is_error);
        diags.append(&mut checker.diags);
        if let (Some(s), false) = (compiled, failed) {
            out.push(s);
        }
    }
    out
}

impl Checker<'_> {
    fn source_block(&mut self, decl: &SourceDecl) -> Option<Source> {
        let mut route: Option<(Vec<crate::lang::ast::Method>, String, Span)> = None;
        let mut secret = None;
        let mut kind = KindRule::default();
        // The last `type`/`status` map, where an error about both points.
        let mut last_kind_map: Option<Span> = None;
        let mut fields: Vec<Mapping> = Vec::new();
        let mut id = None;
        let mut seen: Vec<(String, Span)> = Vec::new();
        let mut ok = true;
        for clause in &decl.clauses {
            match &clause.node {
                SourceClause::Route { methods, path } => {
                    if route.is_some() {
                        self.repeated_in_source(clause.span, "route");
                        ok = false;
                        continue;
                    }
                    let p = &path.value;
                    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                        self.error(
                            Code::InvalidRoute,
                            path.span,
                            "not a path",
                            format!("`{p}` is not a route path"),
                        )
                        .help = Some(
                            "a route is a path on the events listener such as \"/in/voluum\", without a query"
                                .into(),
                        );
                        ok = false;
                    } else if p.starts_with(RESERVED_PREFIX) || p == "/v1" {
                        self.error(
                            Code::InvalidRoute,
                            path.span,
                            "whc's own API",
                            format!("`{p}` is under {RESERVED_PREFIX}, which whc's own API uses"),
                        )
                        .help = Some("pick another path, such as \"/in/NAME\"".into());
                        ok = false;
                    }
                    let mut ms: Vec<crate::lang::ast::Method> =
                        methods.iter().map(|m| m.node).collect();
                    ms.dedup();
                    route = Some((ms, p.clone(), path.span));
                }
                SourceClause::Secret { place, name, value } => {
                    if secret.is_some() {
                        self.repeated_in_source(clause.span, "secret");
                        ok = false;
                        continue;
                    }
                    match value {
                        ValueSource::Env(var) => {
                            self.env_value(var, "the source accepts no request");
                            secret = Some(Secret {
                                place: place.node,
                                name: name.value.clone(),
                                env: var.value.clone(),
                            });
                        }
                        ValueSource::Literal(lit) => {
                            self.error(
                                Code::SecretLiteral,
                                lit.span,
                                "a secret written in the file",
                                "a source's secret cannot be written in a rule file",
                            )
                            .help = Some("rule files live in version control; put the secret in an environment variable and write `= env(\"NAME\")`".into());
                            ok = false;
                        }
                    }
                }
                SourceClause::Negative { field, event } => {
                    if field.node != "revenue" {
                        let label = suggestion(&field.node, ["revenue"])
                            .unwrap_or_else(|| "only `revenue`".into());
                        self.error(
                            Code::UnknownField,
                            field.span,
                            label,
                            format!("`negative {}` is not supported", field.node),
                        )
                        .help = Some("write `negative revenue -> refund`".into());
                        ok = false;
                    }
                    match self.one_event(event) {
                        Some(k) => kind.negative_revenue = Some(k),
                        None => ok = false,
                    }
                }
                SourceClause::Mapping { target, from, map } => {
                    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == target.node) {
                        let first = *first;
                        self.error(
                            Code::RepeatedClause,
                            target.span,
                            "mapped again here",
                            format!("`{}` is mapped twice", target.node),
                        )
                        .with_label_mut_span(first, "first mapped here")
                        .help = Some("map each field once".into());
                        ok = false;
                        continue;
                    }
                    seen.push((target.node.clone(), target.span));
                    match target.node.as_str() {
                        "type" | "status" => {
                            let Some(m) = self.kind_map(target, from, map.as_ref()) else {
                                ok = false;
                                continue;
                            };
                            last_kind_map = Some(map.as_ref().map_or(from.span, |m| m.span));
                            if target.node == "type" {
                                kind.type_ = Some(m);
                            } else {
                                kind.status = Some(m);
                            }
                        }
                        _ if map.is_some() => {
                            let map = map.as_ref().map_or(target.span, |m| m.span);
                            self.error(
                                Code::ValueMapField,
                                map,
                                "a value map here",
                                format!("`{}` cannot take a value map", target.node),
                            )
                            .help = Some(
                                "value maps decide the event: only `type` and `status` take one"
                                    .into(),
                            );
                            ok = false;
                        }
                        "id" => match &from.node {
                            ValueFrom::Hash(parts) => match self.hash_parts(parts) {
                                Some(parts) => id = Some(IdRule::Hash(parts)),
                                None => ok = false,
                            },
                            _ => match self.value_from(from) {
                                Some(f) => id = Some(IdRule::From(f)),
                                None => ok = false,
                            },
                        },
                        _ => {
                            let (Some(t), Some(f)) =
                                (self.target(target), self.plain_from(target, from))
                            else {
                                ok = false;
                                continue;
                            };
                            fields.push(Mapping { target: t, from: f });
                        }
                    }
                }
                SourceClause::Unknown { word } => {
                    let label = suggestion(&word.node, ["route", "secret", "negative"])
                        .unwrap_or_else(|| "not a source clause".into());
                    self.error(
                        Code::UnknownClause,
                        word.span,
                        label,
                        format!("unknown source clause `{}`", word.node),
                    )
                    .help = Some("a source holds `route`, `secret`, `negative revenue -> refund` and `FIELD = VALUE` lines".into());
                    ok = false;
                }
            }
        }
        let Some((methods, path, _)) = route else {
            self.error(
                Code::MissingRoute,
                decl.name.span,
                "no route",
                format!("source `{}` has no route", decl.name.node),
            )
            .help = Some("add a line such as `route get \"/in/voluum\"`".into());
            return None;
        };
        if secret.is_none() {
            self.error(
                Code::MissingSecret,
                decl.name.span,
                "no secret",
                format!("source `{}` accepts requests from anyone", decl.name.node),
            )
            .help = Some("add `secret query \"token\" = env(\"NAME\")` and put `token=...` in the postback URL".into());
        }
        if let Some(span) = last_kind_map.filter(|_| ok && kind.negative_revenue.is_none()) {
            let maps = kind.type_.iter().chain(&kind.status);
            let mut outcomes = maps
                .clone()
                .flat_map(|m| m.entries.iter().map(|(_, o)| o).chain(&m.default));
            let own_names = maps
                .clone()
                .any(|m| m.entries.is_empty() && m.default.is_none());
            if !own_names && outcomes.all(|o| *o == Outcome::Ignore) {
                self.error(
                    Code::EmptyValueMap,
                    span,
                    "ignores every value",
                    format!("source `{}` cannot produce any event: its `type` and `status` maps ignore every value", decl.name.node),
                )
                .help = Some("map at least one value to an event: `{ \"sale\" -> conversion, \"pending\" -> ignore }`".into());
                ok = false;
            }
        }
        let id = match id {
            Some(id) => id,
            None => {
                self.error(
                    Code::MissingId,
                    decl.name.span,
                    "no id",
                    format!("source `{}` has no event id: a retried postback fires its webhooks again", decl.name.node),
                )
                .help = Some("map the tracker's id (`id = query \"txid\"`) or hash the fields that identify an event (`id = hash(type, transaction, last.clickId)`)".into());
                IdRule::None
            }
        };
        ok.then(|| Source {
            name: decl.name.node.clone(),
            file: self.source.name.clone(),
            span: decl.span,
            methods,
            path,
            secret,
            kind,
            fields,
            id,
        })
    }

    fn repeated_in_source(&mut self, span: Span, what: &str) {
        self.error(
            Code::RepeatedClause,
            span,
            "written again here",
            format!("a source has one `{what}`"),
        )
        .help = Some(format!("keep one `{what}` line"));
    }

    /// One event (`event` alone names no single event here).
    fn one_event(&mut self, spec: &Spanned<crate::lang::ast::EventSpec>) -> Option<EventKind> {
        let set = self.event_spec(spec)?;
        let mut kinds = set.kinds();
        match (kinds.next(), kinds.next()) {
            (Some(k), None) => Some(k),
            _ => {
                self.error(
                    Code::UnknownEvent,
                    spec.span,
                    "which custom event?",
                    "a value maps to one event",
                )
                .help = Some("write `event 1` to `event 10`".into());
                None
            }
        }
    }

    fn kind_map(
        &mut self,
        target: &Spanned<String>,
        from: &Spanned<ValueFrom>,
        map: Option<&Spanned<Vec<MapEntry>>>,
    ) -> Option<KindMap> {
        if let ValueFrom::Literal(Literal::Str(s)) = &from.node
            && map.is_none()
        {
            let kind = self.one_event(&Spanned::new(
                s.span,
                crate::lang::ast::EventSpec::Named(s.value.clone()),
            ));
            let kind = match (
                kind,
                s.value
                    .strip_prefix("event")
                    .and_then(|n| n.parse::<u8>().ok()),
            ) {
                (Some(k), _) => k,
                (None, Some(n)) if (1..=EventKind::MAX_CUSTOM).contains(&n) => {
                    self.diags.pop();
                    EventKind::Custom(n)
                }
                _ => return None,
            };
            return Some(KindMap {
                from: From::Literal(s.value.clone()),
                entries: Vec::new(),
                default: Some(Outcome::Event(kind)),
            });
        }
        let from_compiled = self.plain_from(target, from)?;
        let mut entries = Vec::new();
        let mut default = None;
        let mut ok = true;
        if let Some(map) = map {
            if map.node.is_empty() {
                self.error(
                    Code::EmptyValueMap,
                    map.span,
                    "maps nothing",
                    format!("the value map of `{}` cannot produce any event", target.node),
                )
                .help = Some("list the values the tracker sends: `{ \"sale\" -> conversion, \"refund\" -> refund }`".into());
                return None;
            }
            for entry in &map.node {
                let ignore =
                    matches!(&entry.event.node, EventSpec::Named(name) if name == "ignore");
                let kind = if ignore {
                    Outcome::Ignore
                } else if let Some(kind) = self.one_event(&entry.event) {
                    Outcome::Event(kind)
                } else {
                    ok = false;
                    continue;
                };
                match &entry.value {
                    None if default.is_some() => {
                        self.error(
                            Code::RepeatedClause,
                            entry.span,
                            "a second `else`",
                            "a value map has one `else`",
                        );
                        ok = false;
                    }
                    None => default = Some(kind),
                    Some(v)
                        if entries
                            .iter()
                            .any(|(e, _): &(String, Outcome)| *e == v.value) =>
                    {
                        self.error(
                            Code::RepeatedClause,
                            v.span,
                            "mapped again",
                            format!("the value \"{}\" is mapped twice", v.value),
                        );
                        ok = false;
                    }
                    Some(v) => entries.push((v.value.clone(), kind)),
                }
            }
        }
        ok.then_some(KindMap {
            from: from_compiled,
            entries,
            default,
        })
    }

    fn hash_parts(&mut self, parts: &[Spanned<String>]) -> Option<Vec<HashPart>> {
        let mut out = Vec::new();
        for p in parts {
            if p.node == "type" {
                out.push(HashPart::Type);
            } else {
                out.push(HashPart::Target(self.target(p)?));
            }
        }
        Some(out)
    }

    /// A value read from the request or a literal (not `hash(...)`).
    fn plain_from(&mut self, target: &Spanned<String>, from: &Spanned<ValueFrom>) -> Option<From> {
        if let ValueFrom::Hash(_) = from.node {
            self.error(
                Code::ValueMapField,
                from.span,
                "only for `id`",
                format!("`{}` cannot be a hash", target.node),
            )
            .help = Some("`hash(...)` makes an event id: write `id = hash(transaction)`".into());
            return None;
        }
        self.value_from(from)
    }

    fn value_from(&mut self, from: &Spanned<ValueFrom>) -> Option<From> {
        match &from.node {
            ValueFrom::Request(place, name) => {
                if name.value.is_empty() {
                    self.error(
                        Code::MissingValue,
                        name.span,
                        "empty",
                        format!("a {} name cannot be empty", place.keyword()),
                    );
                    return None;
                }
                if *place == Place::Header
                    && http::HeaderName::from_bytes(name.value.as_bytes()).is_err()
                {
                    self.error(
                        Code::InvalidHeader,
                        name.span,
                        "not a header name",
                        format!("`{}` is not a valid header name", name.value),
                    );
                    return None;
                }
                Some(From::Request(*place, name.value.clone()))
            }
            ValueFrom::Literal(Literal::Str(s)) => Some(From::Literal(s.value.clone())),
            ValueFrom::Literal(Literal::Number(_, text)) => Some(From::Literal(text.clone())),
            ValueFrom::Literal(Literal::Bool(b)) => Some(From::Literal(b.to_string())),
            ValueFrom::Literal(Literal::List(_)) | ValueFrom::Hash(_) => {
                self.error(
                    Code::LiteralType,
                    from.span,
                    "not a single value",
                    "a mapped value is one string, number or boolean",
                );
                None
            }
        }
    }

    /// The field a mapping fills: `transaction`, `revenue`, `last.clickId`, ...
    fn target(&mut self, target: &Spanned<String>) -> Option<Target> {
        if let Some(t) = Target::other(&target.node) {
            return Some(t);
        }
        let (attribution, name) = match target.node.split_once('.') {
            Some(("first", n)) => (Some(Attribution::First), n),
            Some(("last", n)) => (Some(Attribution::Last), n),
            Some((other, n)) => {
                let label = suggestion(other, ["first", "last"])
                    .unwrap_or_else(|| "not `first` or `last`".into());
                self.error(
                    Code::Attribution,
                    target.span,
                    label,
                    format!("unknown click `{other}` before `.{n}`"),
                );
                return None;
            }
            None => (None, target.node.as_str()),
        };
        let names = || {
            Field::all()
                .map(Field::name)
                .chain(Target::OTHER_NAMES)
                .chain(SPECIAL)
                .filter(|n| *n != NumberField::EventNumber.name())
                .collect::<Vec<&str>>()
        };
        let field =
            Field::from_name(name).filter(|f| *f != Field::Number(NumberField::EventNumber));
        let Some(field) = field else {
            let all = names();
            let label = suggestion(name, all.iter().copied())
                .unwrap_or_else(|| "not an event field".into());
            let help = if name == "eventNumber" {
                "the custom event number comes from the type: map it with `type = ... { \"lead\" -> event 2 }`".to_owned()
            } else {
                format!("a source fills: {}", all.join(", "))
            };
            self.error(
                Code::UnknownField,
                target.span,
                label,
                format!("unknown event field `{}`", target.node),
            )
            .help = Some(help);
            return None;
        };
        match FieldRef::resolve(field, attribution) {
            Some(f) => Some(Target::Field(f)),
            None => {
                self.error(
                    Code::Attribution,
                    target.span,
                    format!("`{field}` has no first or last click"),
                    format!(
                        "`{field}` is not read from a click, so it cannot take `first.` or `last.`"
                    ),
                );
                None
            }
        }
    }
}

/// Adds a secondary label by span to a diagnostic already pushed.
trait WithLabel {
    fn with_label_mut_span(&mut self, span: Span, text: &str) -> &mut Self;
}

impl WithLabel for Diagnostic {
    fn with_label_mut_span(&mut self, span: Span, text: &str) -> &mut Self {
        self.labels.push(crate::lang::diagnostic::Label {
            span,
            text: text.to_owned(),
        });
        self
    }
}
