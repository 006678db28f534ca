//! The parser, checker and event reader never panic, whatever they are given.

use std::collections::HashMap;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme};
use proptest::prelude::*;
use whc::engine::explain::explain;
use whc::event::Event;
use whc::lang::{self, SourceFile};

/// Pieces of the language, valid and almost valid, to assemble into near-miss rule files.
const FRAGMENTS: &[&str] = &[
    "webhook",
    "on",
    "when",
    "post",
    "get",
    "header",
    "timeout",
    "retries",
    "secret",
    "disabled",
    "and",
    "or",
    "not",
    "equals",
    "==",
    "!=",
    "not equals",
    "contains",
    "not contains",
    "starts with",
    "ends with",
    "greater than",
    ">",
    "at least",
    ">=",
    "less than",
    "<",
    "at most",
    "<=",
    "in",
    "not in",
    "matches",
    "is set",
    "is not set",
    "is",
    "set",
    "=",
    "!",
    "~",
    "env(\"CRM_TOKEN\")",
    "env(",
    "conversion",
    "refund",
    "event",
    "event 3",
    "event3",
    "event 11",
    "event 0",
    "utm_source",
    "first.utm_source",
    "last.country",
    "first.revenue",
    "frist.utm_source",
    "country",
    "deviceType",
    "referrer",
    "isFromGoogleAds",
    "revenue",
    "qualityScore",
    "eventNumber",
    "linkId",
    "targetId",
    "utm_sorce",
    "first.",
    ".",
    "\"x\"",
    "\"\"",
    "\"US\"",
    "\"UK\"",
    "\"\\\"\"",
    "\"\\",
    "\"unclosed",
    "\"(\"",
    "\"[a-\"",
    "12",
    "-3.5",
    "0",
    "11",
    "99999999999999999999999",
    "1e5",
    "true",
    "false",
    "\"https://api.example.com/t?a=[revenue]&t=[transaction]\"",
    "\"https://[utm_source].example.com/\"",
    "\"http://x.test/[revenu]\"",
    "\"ftp://x\"",
    "\"https://[::1]:8080/[first.country]\"",
    "\"https://x.test/[\"",
    "5s",
    "500ms",
    "0s",
    "90s",
    "5sec",
    "1000",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "# comment\n",
    "\n",
    "\t",
    " ",
    "é",
    "日本",
    "\u{0}",
    "\r\n",
    "webhook w {",
    "webhook \"quoted name\" {",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(FRAGMENTS), prop::bool::ANY), 0..48).prop_map(
        |parts| {
            let mut out = String::new();
            for (part, glue) in parts {
                out.push_str(part);
                if !glue {
                    out.push(' ');
                }
            }
            out
        },
    )
}

/// Compiles one file and uses everything that comes out: rendering each diagnostic (spans must
/// lie inside the file), its JSON form, and each webhook on a few events.
fn compile_and_use(text: &str) {
    let sources = vec![Arc::new(SourceFile::new("fuzz.whc", text))];
    let compiled = lang::compile(&sources, &HashMap::<String, String>::new());
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    for d in &compiled.diagnostics {
        let mut out = String::new();
        handler.render_report(&mut out, d).unwrap();
        for label in &d.labels {
            assert!(label.span.start <= label.span.end, "{d:?}");
            assert!(label.span.end <= text.len(), "{d:?}");
        }
        let _ = d.to_json();
    }
    let events = [
        r#"{"type":"conversion","revenue":60,"transaction":"a&b","firstClick":{"utm_source":"x","country":"us"}}"#,
        r#"{"type":"event","eventNumber":3}"#,
        r#"{"type":"refund"}"#,
    ];
    for w in &compiled.webhooks {
        for e in events {
            let e = Event::from_json_str(e).unwrap();
            let _ = w.fires_for(&e);
            let _ = explain(w, &e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn compile_never_panics_on_arbitrary_text(text in any::<String>()) {
        compile_and_use(&text);
    }

    #[test]
    fn compile_never_panics_on_grammar_fragments(text in fragments()) {
        compile_and_use(&text);
    }

    #[test]
    fn compile_never_panics_inside_a_webhook(body in fragments(), close in prop::bool::ANY) {
        let text = format!(
            "webhook w {{\n    on conversion\n    {body}\n    post \"https://x.test/\"{}\n",
            if close { "\n}" } else { "" }
        );
        compile_and_use(&text);
    }

    #[test]
    fn event_reading_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Event::from_json_str(&text);
    }

    #[test]
    fn event_reading_never_panics_on_json_shaped_input(
        pairs in prop::collection::vec(
            (
                prop::sample::select(&[
                    "type", "eventNumber", "id", "transaction", "revenue", "visitor", "linkId",
                    "targetId", "qualityScore", "conversionCount", "eventCount",
                    "isFromGoogleAds", "isFromFacebookAds", "isFromTikTokAds", "firstClick",
                    "lastClick", "occurredAt", "unknown",
                ][..]),
                prop::sample::select(&[
                    "\"conversion\"", "\"refund\"", "\"event\"", "\"event3\"", "\"event11\"",
                    "\"event0\"", "\"event-1\"", "3", "-1", "1.5", "1e400", "\"1e400\"", "\"NaN\"",
                    "\"inf\"", "18446744073709551616", "true", "0", "1", "2", "\"true\"", "null",
                    "[]", "{}", "{\"country\":\"US\"}", "{\"country\":3}", "\"\"", "\" 7 \"",
                ][..]),
            ),
            0..10,
        )
    ) {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let text = format!("{{{body}}}");
        if let Ok(e) = Event::from_json_str(&text) {
            // Whatever was accepted writes back out and reads back in as the same event.
            let again = Event::from_json(&e.to_json()).unwrap();
            prop_assert_eq!(again, e);
        }
    }
}

/// A webhook whose condition is `open` `depth` times, a comparison, then `close` as often.
fn nested(open: &str, close: &str, depth: usize) -> String {
    format!(
        "webhook w {{\n    on conversion\n    when {}revenue > 1{}\n    post \"https://x.test/\"\n}}\n",
        open.repeat(depth),
        close.repeat(depth)
    )
}

/// `text` compiled as one file, with its diagnostics' messages.
fn compile_messages(text: &str) -> (lang::Compiled, Vec<String>) {
    let sources = vec![Arc::new(SourceFile::new("rules.whc", text))];
    let compiled = lang::compile(&sources, &HashMap::<String, String>::new());
    let messages = compiled
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    (compiled, messages)
}

#[test]
fn a_condition_nested_past_the_limit_is_an_error_not_a_stack_overflow() {
    // Before the limit, 100,000 `not`s overflowed the stack (an abort, not even a panic).
    for (open, close) in [("(", ")"), ("not ", ""), ("not (", ")"), ("(not ", ")")] {
        let text = nested(open, close, 100_000);
        compile_and_use(&text);
        let (compiled, messages) = compile_messages(&text);
        assert_eq!(messages.len(), 1, "{open}: {messages:?}");
        assert!(
            messages[0].contains("nests more than 64 deep"),
            "{open}: {messages:?}"
        );
        assert!(compiled.webhooks.is_empty(), "{open}");
    }
}

/// A webhook whose condition joins `count` comparisons with `joiner`, inside `depth` parentheses.
fn joined(joiner: &str, count: usize, depth: usize) -> String {
    let comparisons: Vec<String> = (0..count)
        .map(|i| format!("utm_campaign equals \"c{i}\""))
        .collect();
    format!(
        "webhook w {{\n    on conversion\n    when {}{}{}\n    post \"https://x.test/\"\n}}\n",
        "(".repeat(depth),
        comparisons.join(&format!(" {joiner} ")),
        ")".repeat(depth)
    )
}

#[test]
fn a_condition_joined_past_the_limit_is_an_error_not_a_stack_overflow() {
    // Before the limit, 20,000 `or`s overflowed the stack (an abort, not even a panic).
    for joiner in ["or", "and"] {
        for count in [257, 20_000] {
            let text = joined(joiner, count, 0);
            compile_and_use(&text);
            let (compiled, messages) = compile_messages(&text);
            assert_eq!(messages.len(), 1, "{joiner} {count}: {messages:?}");
            assert!(
                messages[0].contains("joins more than 256 comparisons"),
                "{joiner} {count}: {messages:?}"
            );
            assert!(compiled.webhooks.is_empty(), "{joiner} {count}");
        }
    }
}

#[test]
fn a_condition_joined_to_the_limit_compiles_and_runs_on_a_small_stack() {
    // The sidecar matches events on tokio's workers, whose stacks are 2 MiB.
    let run = || {
        for joiner in ["or", "and"] {
            let text = joined(joiner, 256, 60);
            compile_and_use(&text);
            let sources = vec![Arc::new(SourceFile::new("long.whc", text.as_str()))];
            let compiled = lang::compile(&sources, &HashMap::<String, String>::new());
            assert_eq!(
                compiled.webhooks.len(),
                1,
                "{joiner}: {:?}",
                compiled.diagnostics
            );
            let formatted = whc::lang::format::format_source(&text).expect("formats");
            assert!(formatted.contains("c255"), "{joiner}");
        }
    };
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(run)
        .expect("a thread")
        .join()
        .expect("no overflow, no panic");
}

#[test]
fn a_condition_nested_to_the_limit_compiles() {
    for (open, close) in [("(", ")"), ("not ", ""), ("(not ", ")")] {
        let depth = if open == "(not " { 32 } else { 64 };
        let text = nested(open, close, depth);
        compile_and_use(&text);
        let sources = vec![Arc::new(SourceFile::new("deep.whc", text.as_str()))];
        let compiled = lang::compile(&sources, &HashMap::<String, String>::new());
        assert_eq!(
            compiled.webhooks.len(),
            1,
            "{open}: {:?}",
            compiled.diagnostics
        );
    }
}
