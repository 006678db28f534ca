//! `matches` patterns: parsed for a precise span, compiled with a size limit.

use crate::lang::codes::Code;

use super::Checker;
use super::literals::{Case, TextLiteral};

impl Checker<'_> {
    /// Compiles a `matches` pattern, ignoring case for a field that does (`country`).
    pub(super) fn regex(&mut self, text: &TextLiteral<'_>, case: Case) -> Option<regex::Regex> {
        let TextLiteral {
            value: pattern,
            span,
            string: lit,
        } = text;
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
            .case_insensitive(case == Case::Ignored)
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
}
