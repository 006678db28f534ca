//! JUnit XML for `whc cases`, for CI systems.

use std::fmt::Write as _;

use crate::lang::Webhook;

use super::SuiteResult;

/// Escapes text for XML attribute values and character data; characters XML 1.0 cannot hold
/// (most control characters) become U+FFFD.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Text inside an element: as [`xml_escape`] but keeping line breaks readable.
fn xml_text(text: &str) -> String {
    xml_escape(text).replace("&#10;", "\n")
}

/// JUnit XML: one `<testsuite>` per cases file, one `<testcase>` per case; a case whose
/// expectation does not hold has a `<failure>`, one that could not run an `<error>`, and an
/// unreadable cases file is a suite with one erroring case.
pub(super) fn junit(suites: &[SuiteResult], webhooks: &[Webhook]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = suites.iter().map(|s| s.cases.len().max(1)).sum();
    let failures = suites
        .iter()
        .flat_map(|s| &s.cases)
        .filter(|c| c.error.is_none() && !c.failures.is_empty())
        .count();
    let errors = suites
        .iter()
        .flat_map(|s| &s.cases)
        .filter(|c| c.error.is_some())
        .count()
        + suites.iter().filter(|s| s.error.is_some()).count();
    let time: f64 = suites
        .iter()
        .flat_map(|s| &s.cases)
        .map(|c| c.elapsed.as_secs_f64())
        .sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"whc cases\" tests=\"{total}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.6}\">"
    );
    for suite in suites {
        let name = xml_escape(&suite.file);
        if let Some(error) = &suite.error {
            let _ = writeln!(
                out,
                "  <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\" time=\"0\">\n    <testcase classname=\"{name}\" name=\"(cases file)\" time=\"0\">\n      <error message=\"{}\">{}</error>\n    </testcase>\n  </testsuite>",
                xml_escape(error),
                xml_text(error)
            );
            continue;
        }
        let failures = suite
            .cases
            .iter()
            .filter(|c| c.error.is_none() && !c.failures.is_empty())
            .count();
        let errors = suite.cases.iter().filter(|c| c.error.is_some()).count();
        let time: f64 = suite.cases.iter().map(|c| c.elapsed.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.6}\">",
            suite.cases.len()
        );
        for case in &suite.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{name}\" name=\"{}\" time=\"{:.6}\"",
                xml_escape(&case.name),
                case.elapsed.as_secs_f64()
            );
            if let Some(error) = &case.error {
                let _ = writeln!(
                    out,
                    ">\n      <error message=\"{}\">{}</error>\n    </testcase>",
                    xml_escape(error),
                    xml_text(error)
                );
            } else if !case.failures.is_empty() {
                let first = case.failures[0].lines().next().unwrap_or("failed");
                let mut body = case.failures.join("\n");
                for r in &case.explanations {
                    if let Some(w) = webhooks.iter().find(|w| w.name == r.webhook) {
                        body.push('\n');
                        body.push_str(super::super::explain::human(w, r, false, "").trim_end());
                    }
                }
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"mismatch\">{}</failure>\n    </testcase>",
                    xml_escape(first.trim_end_matches(':')),
                    xml_text(&body)
                );
            } else {
                let _ = writeln!(out, "/>");
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\n\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;&#10;\u{FFFD}"
        );
        assert_eq!(xml_text("x\ny"), "x\ny");
    }
}
