//! `matches` patterns: parsed for a precise span, compiled with a size limit.

use crate::lang::ast::{Span, StringLit};
use crate::lang::codes::Code;

use super::Checker;

impl Checker<'_> {
    /// Compiles a `matches` pattern; `ignore_case` for `country`, which compares ignoring case.
    pub(super) fn regex(
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
}
