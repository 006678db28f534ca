//! Problems found in rule files, as data that renders through miette or as JSON.

use std::fmt;
use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

use super::ast::Span;
use super::codes::Code;

/// One rule file's name and text, shared by every diagnostic that points into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as the user gave it (relative paths stay relative).
    pub name: String,
    /// The file's contents.
    pub text: String,
}

impl SourceFile {
    /// A named source.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
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

/// [`render_report`], or `file:line:column: message` on the rare report miette cannot draw.
pub fn render(diagnostic: &Diagnostic, color: bool) -> String {
    render_report(diagnostic, color).unwrap_or_else(|_| {
        let (line, column) = diagnostic.line_column();
        format!(
            "{}:{line}:{column}: {}\n",
            diagnostic.source.name, diagnostic.message
        )
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
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let f = SourceFile::new("a.whc", "ab\ncdé\nf");
        assert_eq!(f.line_column(0), (1, 1));
        assert_eq!(f.line_column(3), (2, 1));
        assert_eq!(f.line_column(8), (3, 1));
    }

    #[test]
    fn suggests_close_words_only() {
        let fields = ["utm_source", "utm_medium", "country"];
        assert_eq!(did_you_mean("utm_sorce", fields), Some("utm_source"));
        assert_eq!(did_you_mean("Country", fields), Some("country"));
        assert_eq!(did_you_mean("zzz", fields), None);
    }
}
