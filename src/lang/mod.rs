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
mod parallel;
pub mod parse;
pub mod predicate;
mod quick;
pub mod reach;
pub mod url;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;

pub use ast::Span;
pub use codes::Code;
pub use diagnostic::{Diagnostic, Severity, SourceFile};
pub use webhook::{Env, ProcessEnv, Webhook};

/// How many webhooks one thread checks at a time (see [`parallel::map`]).
const CHECK_GROUP: usize = 256;

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
    let mut parsed = parse_files(files);
    // Names first (unique across the directory), so that the syntax trees can go to the
    // threads that check them, and be dropped there.
    let mut seen: HashMap<String, (Arc<SourceFile>, Span)> = HashMap::new();
    let duplicates: Vec<Vec<Diagnostic>> = files
        .iter()
        .zip(&parsed)
        .map(|(source, (file, _))| duplicate_webhooks(&mut seen, source, &file.webhooks))
        .collect();
    // Each file's webhooks checked in groups, the groups spread over the cores.
    let mut groups = Vec::new();
    for (f, (file, _)) in parsed.iter_mut().enumerate() {
        let mut decls = std::mem::take(&mut file.webhooks).into_iter();
        loop {
            let group: Vec<ast::WebhookDecl> = decls.by_ref().take(CHECK_GROUP).collect();
            if group.is_empty() {
                break;
            }
            groups.push((f, group));
        }
    }
    let regexes = check::Regexes::default();
    let mut source_names: HashMap<String, (Arc<SourceFile>, Span)> = HashMap::new();
    let mut routes: HashMap<String, (Arc<SourceFile>, Span)> = HashMap::new();
    let mut checked = parallel::map_owned(groups, |(f, decls)| {
        let mut diagnostics = Vec::new();
        let webhooks = check::check_webhooks(&files[f], &decls, env, &regexes, &mut diagnostics);
        (f, webhooks, diagnostics)
    })
    .into_iter()
    .peekable();
    for (f, ((source, (file, syntax_errors)), mut duplicates)) in
        files.iter().zip(parsed).zip(duplicates).enumerate()
    {
        for e in syntax_errors {
            let mut d = Diagnostic::new(Code::Syntax, source, e.span, e.label, e.message);
            if e.expected.len() > 1 {
                d = d.with_help(format!("expected one of: {}", e.expected.join("; ")));
            }
            out.diagnostics.push(d);
        }
        out.diagnostics.append(&mut duplicates);
        while let Some((_, webhooks, mut diagnostics)) = checked.next_if(|(of, ..)| *of == f) {
            out.webhooks.extend(webhooks);
            out.diagnostics.append(&mut diagnostics);
        }
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

/// Parses every file, the pieces of every file (see [`parse::pieces`]) spread over the cores;
/// a file with a syntax error is parsed again whole, for errors worded as one parse words them.
fn parse_files(files: &[Arc<SourceFile>]) -> Vec<(ast::File, Vec<parse::SyntaxError>)> {
    let pieces: Vec<(usize, std::ops::Range<usize>)> = files
        .iter()
        .enumerate()
        .flat_map(|(f, source)| parse::pieces(&source.text).into_iter().map(move |p| (f, p)))
        .collect();
    let parsed = parallel::map(&pieces, |(f, piece)| {
        parse::parse_piece(&files[*f].text, piece.clone())
    });
    let mut whole: Vec<Option<ast::File>> = vec![Some(ast::File::default()); files.len()];
    for ((f, _), piece) in pieces.iter().zip(parsed) {
        match (&mut whole[*f], piece) {
            (Some(file), Some(piece)) => {
                file.webhooks.extend(piece.webhooks);
                file.sources.extend(piece.sources);
            }
            (slot, _) => *slot = None,
        }
    }
    let broken: Vec<usize> = (0..files.len()).filter(|f| whole[*f].is_none()).collect();
    let mut reparsed = parallel::map(&broken, |f| parse::parse_file(&files[*f].text)).into_iter();
    whole
        .into_iter()
        .map(|file| match file {
            Some(file) => (file, Vec::new()),
            None => reparsed.next().expect("one parse per broken file"),
        })
        .collect()
}

/// The diagnostics for webhooks of one file named like one before them in the directory; the
/// names not seen before are recorded.
fn duplicate_webhooks(
    seen: &mut HashMap<String, (Arc<SourceFile>, Span)>,
    source: &Arc<SourceFile>,
    decls: &[ast::WebhookDecl],
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for decl in decls {
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
            diagnostics.push(d);
        } else {
            seen.insert(name.node.clone(), (Arc::clone(source), name.span));
        }
    }
    diagnostics
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{SourceFile, parse, parse_files};

    /// A file of many pieces parses, piece by piece on several threads, into what one parse
    /// of the whole text gives; so does a file whose pieces do not parse on their own.
    #[test]
    fn pieces_parse_as_the_whole_file_does() {
        let mut big = String::from("# a header comment\n\n");
        for i in 0..1000 {
            big.push_str(&format!(
                "webhook w{i} {{\n  on conversion, event {}\n  when (first.utm_source equals \"a{i}\" or not revenue > {i}) and utm_content matches \"^(x|y)#\"\n  header \"X-N\" = \"{i}\" # trailing\n  post \"https://x.test/{i}\"\n}}\n",
                1 + i % 10
            ));
            if i % 50 == 0 {
                big.push_str("  webhook \"quoted name\" { on refund post \"https://x.test/q\" }\n");
                big.push_str(&format!(
                    "source s{i} {{\n    route get \"/in/{i}\"\n    revenue = query \"payout\"\n}}\n"
                ));
                big.push_str(&format!(
                    "webhook\nwebhook{i} {{ on refund post \"https://x.test/n\" }}\n"
                ));
            }
        }
        assert!(parse::pieces(&big).len() > 4, "several pieces");
        let broken = big.replace("webhook w700 {", "webhook w700 {{");
        let files: Vec<Arc<SourceFile>> = [big, broken, String::new(), "junk".into()]
            .into_iter()
            .enumerate()
            .map(|(i, text)| Arc::new(SourceFile::new(format!("{i}.whc"), text)))
            .collect();
        let parsed = parse_files(&files);
        for (source, (file, errors)) in files.iter().zip(&parsed) {
            let (whole, whole_errors) = parse::parse_file(&source.text);
            assert_eq!(*file, whole, "{}", source.name);
            assert_eq!(*errors, whole_errors, "{}", source.name);
        }
        assert!(parsed[0].1.is_empty() && !parsed[1].1.is_empty() && !parsed[3].1.is_empty());
    }
}
