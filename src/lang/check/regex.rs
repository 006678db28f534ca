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
        let key = (pattern.to_string(), case == Case::Ignored);
        if let Some(re) = self.regexes.get(&key) {
            return Some(re); // shares the compiled program
        }
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
            Ok(re) => Some(self.regexes.keep(key, re)),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use crate::lang::predicate::{Check, Predicate};
    use crate::lang::{SourceFile, compile};

    /// A pattern written on many webhooks, across files, is compiled once: every copy shares
    /// the compiled program (its pattern text is one allocation). A differing case is not the
    /// same regex.
    #[test]
    fn one_pattern_is_compiled_once_per_compilation() {
        let hook = |name: &str, field: &str| {
            format!(
                "webhook {name} {{\n on conversion\n when {field} matches \"^ad-[0-9]+$\"\n post \"https://x.test/\"\n}}\n"
            )
        };
        let files = [
            Arc::new(SourceFile::new(
                "a.whc",
                hook("a", "utm_content") + &hook("b", "utm_term"),
            )),
            Arc::new(SourceFile::new(
                "b.whc",
                hook("c", "utm_content") + &hook("d", "country"),
            )),
        ];
        let compiled = compile(&files, &HashMap::new());
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let patterns: Vec<*const u8> = compiled
            .webhooks
            .iter()
            .map(|w| match &w.conditions[0].predicate {
                Predicate::Test(t) => match &t.check {
                    Check::Matches(re) => re.as_str().as_ptr(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(patterns[0], patterns[1]);
        assert_eq!(patterns[0], patterns[2], "across files");
        assert_ne!(
            patterns[0], patterns[3],
            "country ignores case: another regex"
        );
    }
}
