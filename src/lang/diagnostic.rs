//! Problems found in rule files, as data that renders through miette or as JSON.

use std::fmt;
use std::sync::{Arc, OnceLock};

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

use super::ast::Span;
use super::codes::Code;

/// One rule file's name and text, shared by every diagnostic that points into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user gave it (relative paths stay relative).
    pub name: String,
    /// The file's contents.
    pub text: String,
    /// Where each line starts, built on the first [`SourceFile::line_column`]: a lookup is a
    /// binary search, not a count of the newlines before it (10,000 webhooks listed by line
    /// took seconds).
    lines: OnceLock<Box<[usize]>>,
}

impl PartialEq for SourceFile {
    fn eq(&self, other: &SourceFile) -> bool {
        self.name == other.name && self.text == other.text
    }
}

impl Eq for SourceFile {}

impl SourceFile {
    /// A named source.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
            lines: OnceLock::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let starts = self.line_starts();
        // The last line starting at or before `offset`; the first always starts at 0.
        let line = starts.partition_point(|&start| start <= offset);
        let line_start = starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// The byte offset where each line starts (the first is 0), built once.
    pub fn line_starts(&self) -> &[usize] {
        self.lines.get_or_init(|| {
            #[cfg(test)]
            tests::LINE_INDEXES_BUILT.with(|n| n.set(n.get() + 1));
            std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', self.text.as_bytes()).map(|i| i + 1))
                .collect()
        })
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rules cannot load.
    Error,
    /// The rules load, but something is likely wrong.
    Warning,
    /// A note attached to another diagnostic.
    Advice,
}

/// A labelled place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say there.
    pub text: String,
}

/// One problem in the rules: a code, a message, labelled places, and help.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence saying what is wrong.
    pub message: String,
    /// The file the labels point into.
    pub source: Arc<SourceFile>,
    /// The primary place first, then secondary places in the same file.
    pub labels: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
    /// Problems in other files that belong to this one (such as the other copy of a duplicate).
    pub related: Vec<Diagnostic>,
}

impl Diagnostic {
    /// A problem of the code's default severity at one place.
    pub fn new(
        code: Code,
        source: &Arc<SourceFile>,
        span: Span,
        label: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity: if code.is_warning() {
                Severity::Warning
            } else {
                Severity::Error
            },
            message: message.into(),
            source: Arc::clone(source),
            labels: vec![Label {
                span,
                text: label.into(),
            }],
            help: None,
            related: Vec::new(),
        }
    }

    /// Adds help text.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary label in the same file.
    pub fn with_label(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    /// Adds a related problem, typically in another file.
    pub fn with_related(mut self, related: Diagnostic) -> Diagnostic {
        self.related.push(related);
        self
    }

    /// Where the primary label starts: 1-based line and column.
    pub fn line_column(&self) -> (usize, usize) {
        let offset = self.labels.first().map_or(0, |l| l.span.start);
        self.source.line_column(offset)
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The flat form printed by `--format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let (line, column) = self.line_column();
        serde_json::json!({
            "severity": self.severity,
            "code": self.code.as_str(),
            "message": self.message,
            "file": self.source.name,
            "line": line,
            "column": column,
            "help": self.help,
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Advice => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&*self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().enumerate().map(|(i, l)| {
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            if i == 0 {
                LabeledSpan::new_primary_with_span(text, l.span)
            } else {
                LabeledSpan::new_with_span(text, l.span)
            }
        })))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|d| d as &dyn miette::Diagnostic),
        ))
    }
}

/// Width of rendered diagnostics, fixed so that terminals, logs and `/v1/rules` read the same.
pub const RENDER_WIDTH: usize = 100;

/// miette's graphical report of a diagnostic, [`RENDER_WIDTH`] columns wide, with or without
/// colour: the one renderer of `whc check`, the other commands and the sidecar.
pub fn render_report(diagnostic: &Diagnostic, color: bool) -> Result<String, fmt::Error> {
    if touches_long_line(diagnostic) {
        return Err(fmt::Error);
    }
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    GraphicalReportHandler::new_themed(theme)
        .with_width(RENDER_WIDTH)
        .render_report(&mut out, diagnostic)?;
    Ok(out)
}

/// The longest line miette is given to draw: it panics on a highlight past column 65,535
/// (a width it formats as a `u16`), and a line that long is unreadable drawn anyway.
const LONGEST_DRAWN_LINE: usize = 10_000;

/// Whether a label of the diagnostic, or of a related one, is on a line (or next to one, as
/// the report shows a line of context each side) longer than [`LONGEST_DRAWN_LINE`].
fn touches_long_line(diagnostic: &Diagnostic) -> bool {
    let source = &diagnostic.source;
    let starts = source.line_starts();
    let line_len = |line: usize| -> usize {
        let start = starts[line];
        let end = starts.get(line + 1).copied().unwrap_or(source.text.len());
        end - start
    };
    let near_long_line = |label: &Label| {
        let (first, _) = source.line_column(label.span.start);
        let (last, _) = source.line_column(label.span.end);
        // `line_column` counts lines from 1; `starts` from 0.
        let lines = first.saturating_sub(2)..last.min(starts.len());
        lines.into_iter().any(|l| line_len(l) > LONGEST_DRAWN_LINE)
    };
    diagnostic.labels.iter().any(near_long_line) || diagnostic.related.iter().any(touches_long_line)
}

/// [`render_report`], or `file:line:column: message` on the rare report miette cannot draw
/// (a label on a line longer than 10,000 characters).
pub fn render(diagnostic: &Diagnostic, color: bool) -> String {
    render_report(diagnostic, color).unwrap_or_else(|_| {
        let (line, column) = diagnostic.line_column();
        let mut flat = format!(
            "{}:{line}:{column}: {}\n",
            diagnostic.source.name, diagnostic.message
        );
        if let Some(help) = &diagnostic.help {
            flat.push_str(&format!("  help: {help}\n"));
        }
        flat
    })
}

/// The closest candidate to a misspelt word, when one is close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = strsim::jaro_winkler(&lower, &c.to_lowercase());
            (c, score)
        })
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// " (did you mean `x`?)" or nothing, for appending to a label.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn a_label_on_a_very_long_line_is_reported_flat_not_drawn() {
        let long = format!(
            "when utm_source equals \"{}\" and revenu > 2",
            "a".repeat(70_000)
        );
        let text = format!("webhook w {{\n    on conversion\n    {long}\n}}\n");
        let at = text.find("revenu").unwrap();
        let source = Arc::new(SourceFile::new("long.whc", text));
        let d = Diagnostic::new(
            Code::UnknownField,
            &source,
            Span::new(at, at + 6),
            "here",
            "unknown field",
        );
        assert!(render_report(&d, false).is_err());
        assert_eq!(render(&d, false), "long.whc:3:70035: unknown field\n");
        // Next to the long line, too (the report draws a line of context each side).
        let after = source.text.rfind('}').unwrap();
        let d = Diagnostic::new(
            Code::Syntax,
            &source,
            Span::new(after, after + 1),
            "here",
            "x",
        );
        assert!(render_report(&d, false).is_err());
        // A short line far from it is drawn as usual.
        let on = source.text.find("on").unwrap();
        let d = Diagnostic::new(Code::Syntax, &source, Span::new(on, on + 2), "here", "x");
        assert!(render_report(&d, false).is_ok());
    }

    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// How many line indexes this thread built (see [`SourceFile::line_starts`]).
        pub(crate) static LINE_INDEXES_BUILT: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn line_and_column_are_one_based() {
        let f = SourceFile::new("a.whc", "ab\ncdé\nf");
        assert_eq!(f.line_column(0), (1, 1));
        assert_eq!(f.line_column(3), (2, 1));
        assert_eq!(f.line_column(8), (3, 1));
    }

    /// The index gives what counting newlines gives, at every offset (inside a character too),
    /// and is built once however many lookups follow.
    #[test]
    fn the_line_index_agrees_with_counting_and_is_built_once() {
        let text = "\nab\ncdé\n\n  x\r\ny é\n";
        let f = SourceFile::new("a.whc", text);
        let before = LINE_INDEXES_BUILT.with(Cell::get);
        for offset in 0..=text.len() + 2 {
            let at = floor_char_boundary(text, offset.min(text.len()));
            let line = text[..at].matches('\n').count() + 1;
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let column = text[start..at].chars().count() + 1;
            assert_eq!(f.line_column(offset), (line, column), "offset {offset}");
        }
        assert_eq!(LINE_INDEXES_BUILT.with(Cell::get) - before, 1);
        assert_eq!(f.line_starts(), [0, 1, 4, 9, 10, 15, 20]);
        assert_eq!(
            f,
            SourceFile::new("a.whc", text),
            "the index is not part of equality"
        );
    }

    #[test]
    fn suggests_close_words_only() {
        let fields = ["utm_source", "utm_medium", "country"];
        assert_eq!(did_you_mean("utm_sorce", fields), Some("utm_source"));
        assert_eq!(did_you_mean("Country", fields), Some("country"));
        assert_eq!(did_you_mean("zzz", fields), None);
    }
}
