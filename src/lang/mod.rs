//! The rule language: grammar, syntax tree, checker, compiler and diagnostics. Pure, no I/O.

pub mod ast;
pub mod check;
pub mod codes;
mod country;
mod currency;
pub mod diagnostic;
pub mod escape;
pub mod format;
pub mod grammar;
pub mod headers;
pub mod parse;
pub mod predicate;
pub mod reach;
pub mod url;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;

pub use ast::Span;
pub use codes::Code;
pub use diagnostic::{Diagnostic, Severity, SourceFile};
pub use webhook::{Env, ProcessEnv, Webhook};

/// The result of compiling a set of rule files: the webhooks that compiled, and every problem.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// Webhooks without errors, in file then source order.
    pub webhooks: Vec<Webhook>,
    /// Tracker sources without errors, in file then source order.
    pub sources: Vec<crate::source::Source>,
    /// Every error and warning, in file then source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// Whether any diagnostic is an error (the rules must not be loaded).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The number of errors and of warnings.
    pub fn counts(&self) -> (usize, usize) {
        let errors = self.diagnostics.iter().filter(|d| d.is_error()).count();
        (errors, self.diagnostics.len() - errors)
    }
}

/// Parses, checks and compiles rule files, as one rules directory (names are unique across it).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use whc::event::Event;
/// use whc::lang::{compile, SourceFile};
///
/// let rules = r#"
/// webhook big_sales {
///     on conversion
///     when first.utm_source equals "facebook" and revenue > 50
///     post "https://api.example.com/track?amount=[revenue]"
/// }"#;
/// let compiled = compile(&[Arc::new(SourceFile::new("sales.whc", rules))], &HashMap::new());
/// assert!(!compiled.has_errors());
/// let event = Event::from_json_str(
///     r#"{"type": "conversion", "revenue": 80, "firstClick": {"utm_source": "facebook"}}"#,
/// )
/// .unwrap();
/// assert!(compiled.webhooks[0].fires_for(&event));
/// ```
pub fn compile(files: &[Arc<SourceFile>], env: &dyn Env) -> Compiled {
    let mut out = Compiled::default();
    let mut seen: HashMap<String, (Arc<SourceFile>, Span)> = HashMap::new();
    let mut regexes = check::Regexes::default();
    let mut source_names: HashMap<String, (Arc<SourceFile>, Span)> = HashMap::new();
    let mut routes: HashMap<String, (Arc<SourceFile>, Span)> = HashMap::new();
    for source in files {
        let (file, syntax_errors) = parse::parse_file(&source.text);
        for e in syntax_errors {
            let mut d = Diagnostic::new(Code::Syntax, source, e.span, e.label, e.message);
            if e.expected.len() > 1 {
                d = d.with_help(format!("expected one of: {}", e.expected.join("; ")));
            }
            out.diagnostics.push(d);
        }
        for decl in &file.webhooks {
            let name = &decl.name;
            if let Some((first_src, first_span)) = seen.get(&name.node) {
                let mut d = Diagnostic::new(
                    Code::DuplicateWebhook,
                    source,
                    name.span,
                    "defined again here",
                    format!("there are two webhooks named `{}`", name.node),
                )
                .with_help("webhook names are unique across the rules directory; rename one");
                if Arc::ptr_eq(first_src, source) {
                    d = d.with_label(*first_span, "first defined here");
                } else {
                    let mut first = Diagnostic::new(
                        Code::DuplicateWebhook,
                        first_src,
                        *first_span,
                        "first defined here",
                        format!("`{}` is first defined in {}", name.node, first_src.name),
                    );
                    first.severity = Severity::Advice;
                    d = d.with_related(first);
                }
                out.diagnostics.push(d);
            } else {
                seen.insert(name.node.clone(), (Arc::clone(source), name.span));
            }
        }
        let webhooks = check::check_webhooks(
            source,
            &file.webhooks,
            env,
            &mut regexes,
            &mut out.diagnostics,
        );
        out.webhooks.extend(webhooks);
        for decl in &file.sources {
            duplicate(
                &mut source_names,
                source,
                &decl.name,
                Code::DuplicateSource,
                "source",
                &mut out.diagnostics,
            );
            for clause in &decl.clauses {
                if let ast::SourceClause::Route { path, .. } = &clause.node {
                    duplicate(
                        &mut routes,
                        source,
                        &ast::Spanned::new(path.span, path.value.clone()),
                        Code::DuplicateRoute,
                        "route",
                        &mut out.diagnostics,
                    );
                }
            }
        }
        let sources = check::check_sources(source, &file.sources, env, &mut out.diagnostics);
        out.sources.extend(sources);
    }
    // Report in reading order: file by file, top to bottom (the sort is stable).
    let order: HashMap<*const SourceFile, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (Arc::as_ptr(f), i))
        .collect();
    out.diagnostics.sort_by_key(|d| {
        let file = order
            .get(&Arc::as_ptr(&d.source))
            .copied()
            .unwrap_or(usize::MAX);
        (file, d.labels.first().map_or(0, |l| l.span.start))
    });
    if out.has_errors() {
        // A broken directory yields no webhooks at all: loading is all-or-nothing.
        out.webhooks.clear();
        out.sources.clear();
    }
    out
}

/// Reports a name (or route) already taken in the rules directory; records it when it is new.
fn duplicate(
    seen: &mut HashMap<String, (Arc<SourceFile>, Span)>,
    source: &Arc<SourceFile>,
    name: &ast::Spanned<String>,
    code: Code,
    what: &str,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let Some((first_src, first_span)) = seen.get(&name.node) else {
        seen.insert(name.node.clone(), (Arc::clone(source), name.span));
        return;
    };
    let mut d = Diagnostic::new(
        code,
        source,
        name.span,
        "defined again here",
        format!("there are two {what}s `{}`", name.node),
    )
    .with_help(format!(
        "{what}s are unique across the rules directory; change one"
    ));
    if Arc::ptr_eq(first_src, source) {
        d = d.with_label(*first_span, "first defined here");
    } else {
        let mut first = Diagnostic::new(
            code,
            first_src,
            *first_span,
            "first defined here",
            format!("`{}` is first defined in {}", name.node, first_src.name),
        );
        first.severity = Severity::Advice;
        d = d.with_related(first);
    }
    diagnostics.push(d);
}
