//! `whc fmt`: idempotent and meaning-preserving over generated rule files, and the command as a
//! user runs it.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use proptest::prelude::*;
use whc::lang::format::format_source;
use whc::lang::{self, SourceFile};

use super::support::{dir as rules, whc};

// === Generated rule files ===

/// A token of a generated file; separators (spaces, line breaks, comments) go between tokens.
type Tokens = Vec<String>;

fn one(s: &str) -> Tokens {
    vec![s.to_owned()]
}

fn words(s: &str) -> Tokens {
    s.split(' ').map(str::to_owned).collect()
}

/// A string literal for a decoded value, escaped in one of the ways the grammar allows.
fn string_lit() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 ]{1,4}",
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
        1 => Just("\\n".to_owned()),
        1 => Just("\\t".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("#".to_owned()),
        1 => Just("\\q".to_owned()),
        1 => Just("\\#".to_owned()),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

fn number_lit() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["0", "5", "50", "-3", "49.99", "007", "200", "1.5"])
        .prop_map(str::to_owned)
}

fn list_of(item: BoxedStrategy<String>) -> impl Strategy<Value = Tokens> {
    (prop::collection::vec(item, 0..4), any::<bool>()).prop_map(|(items, trailing_comma)| {
        let mut t = one("[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                t.push(",".into());
            }
            t.push(item.clone());
        }
        if trailing_comma && !items.is_empty() {
            t.push(",".into());
        }
        t.push("]".into());
        t
    })
}

fn text_comparison(valid: bool) -> impl Strategy<Value = Tokens> {
    let field = prop::sample::select(vec![
        "utm_source",
        "first.utm_source",
        "last.utm_campaign",
        "utm_term",
        "deviceType",
        "first.referrer",
        "country",
        "last.country",
    ]);
    let country = prop::sample::select(vec!["\"US\"", "\"de\"", "\"CA\"", "\"UK\""]);
    let value = prop_oneof![
        string_lit().boxed(),
        country.prop_map(str::to_owned).boxed()
    ]
    .boxed();
    let mut regexes = vec!["\"^spring\"", "\"a|b\"", "\"\\\\d+\"", "\"x\\\\.y$\""];
    if !valid {
        regexes.push("\"(\"");
    }
    let regex = prop::sample::select(regexes).prop_map(str::to_owned);
    let op_value = prop_oneof![
        (
            prop::sample::select(vec![
                "equals",
                "==",
                "not equals",
                "!=",
                "contains",
                "not contains",
                "starts with",
                "ends with",
            ]),
            value.clone()
        )
            .prop_map(|(op, v)| {
                let mut t = words(op);
                t.push(v);
                t
            }),
        (
            prop::sample::select(vec!["in", "not in"]),
            list_of(value.clone())
        )
            .prop_map(|(op, list)| [words(op), list].concat()),
        regex.prop_map(|r| vec!["matches".into(), r]),
        prop::sample::select(vec!["is set", "is not set"]).prop_map(words),
    ];
    (field, op_value).prop_map(|(f, rest)| [one(f), rest].concat())
}

fn number_comparison() -> impl Strategy<Value = Tokens> {
    let field = prop::sample::select(vec![
        "revenue",
        "qualityScore",
        "eventCount",
        "conversionCount",
    ]);
    let op_value = prop_oneof![
        (
            prop::sample::select(vec![
                "equals",
                "==",
                "not equals",
                "!=",
                "greater than",
                ">",
                "at least",
                ">=",
                "less than",
                "<",
                "at most",
                "<=",
            ]),
            number_lit()
        )
            .prop_map(|(op, v)| {
                let mut t = words(op);
                t.push(v);
                t
            }),
        (
            prop::sample::select(vec!["in", "not in"]),
            list_of(number_lit().boxed())
        )
            .prop_map(|(op, list)| [words(op), list].concat()),
        prop::sample::select(vec!["is set", "is not set"]).prop_map(words),
    ];
    (field, op_value).prop_map(|(f, rest)| [one(f), rest].concat())
}

fn other_comparison(valid: bool) -> impl Strategy<Value = Tokens> {
    let mut choices = vec![
        "isFromGoogleAds",
        "isFromTikTokAds",
        "isFromFacebookAds equals false",
        "isFromGoogleAds == true",
        "linkId equals 12",
        "targetId not equals \"7\"",
    ];
    if !valid {
        // Mistakes the checker reports: the diagnostics must survive formatting too.
        choices.extend([
            "revenue contains \"5\"",
            "first.revenue > 5",
            "utm_sorce equals \"x\"",
            "revenue bigger 5",
            "country >",
        ]);
    }
    prop::sample::select(choices).prop_map(|s| {
        let mut t = Vec::new();
        let mut rest = s;
        // Keep a quoted literal whole.
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('"') {
                let end = r.find('"').unwrap() + 2;
                t.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            } else {
                let end = rest.find(' ').unwrap_or(rest.len());
                t.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            }
        }
        t
    })
}

fn condition(valid: bool) -> impl Strategy<Value = Tokens> {
    let leaf = prop_oneof![
        3 => text_comparison(valid),
        3 => number_comparison(),
        2 => other_comparison(valid),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| [a, one("and"), b].concat()),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| [a, one("or"), b].concat()),
            inner.clone().prop_map(|a| [one("not"), a].concat()),
            inner.prop_map(|a| [one("("), a, one(")")].concat()),
        ]
    })
}

fn on_clause(valid: bool) -> impl Strategy<Value = Tokens> {
    let mut events = vec![
        "conversion",
        "refund",
        "event",
        "event 1",
        "event  3",
        "event\t10",
    ];
    if !valid {
        events.extend(["event 11", "sale"]);
    }
    prop::collection::vec(prop::sample::select(events), 1..4).prop_map(|events| {
        let mut t = one("on");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                t.push(",".into());
            }
            t.push((*e).to_owned());
        }
        t
    })
}

fn request_clause(valid: bool) -> impl Strategy<Value = Tokens> {
    let mut urls = vec![
        "\"https://api.example.com/t?amount=[revenue]&txn=[transaction]\"",
        "\"https://x.example.com/[first.utm_source]/e\"",
        "\"http://plain.example.com/\"",
    ];
    if !valid {
        urls.push("\"https://[revenue].example.com/\"");
    }
    (
        prop::sample::select(vec!["post", "get"]),
        prop::sample::select(urls),
    )
        .prop_map(|(m, u)| vec![m.to_owned(), u.to_owned()])
}

/// `header`, `secret` and the settings.
fn setting_clauses(valid: bool) -> impl Strategy<Value = Vec<Tokens>> {
    let env = |var: &str| words(&format!("env ( \"{var}\" )"));
    let fixed = vec![
        words("header \"X-Source\" = \"whc\""),
        [words("header \"X-Token\" ="), env("TOKEN")].concat(),
        [words("header \"X-Other\" ="), env("UNSET_VAR")].concat(),
        [one("secret"), env("TOKEN")].concat(),
        words("timeout 500ms"),
        words("retries 3"),
        one("disabled"),
    ];
    let invalid = vec![
        words("timeout 99h"),
        words("retries 1000"),
        words("secret \"literal\""),
        words("retries 2"),
    ];
    let header = string_lit().prop_map(|v| [words("header \"X-Value\" ="), one(&v)].concat());
    let chosen = if valid {
        prop::sample::subsequence(fixed.clone(), 0..4).boxed()
    } else {
        let all = [fixed.clone(), invalid].concat();
        prop::collection::vec(prop::sample::select(all), 0..4).boxed()
    };
    (chosen, prop::option::of(header)).prop_map(|(mut clauses, header)| {
        clauses.extend(header);
        clauses
    })
}

/// A webhook: when `valid`, one `on`, one URL and clauses that compile; otherwise anything.
fn webhook(index: usize, valid: bool) -> impl Strategy<Value = Tokens> {
    let name = prop_oneof![
        "[a-z_]{0,4}".prop_map(move |s| format!("w{index}{s}")),
        Just(format!("\"hook {index}\"")),
    ];
    let (ons, requests) = if valid { (1..2, 1..2) } else { (0..3, 0..3) };
    let clauses = (
        prop::collection::vec(on_clause(valid), ons),
        prop::collection::vec(request_clause(valid), requests),
        prop::collection::vec(
            condition(valid).prop_map(|c| [one("when"), c].concat()),
            0..4,
        ),
        setting_clauses(valid),
    )
        .prop_flat_map(|(a, b, c, d)| Just([a, b, c, d].concat()).prop_shuffle());
    (name, clauses).prop_map(|(name, clauses)| {
        [
            vec!["webhook".into(), name, "{".into()],
            clauses.concat(),
            one("}"),
        ]
        .concat()
    })
}

/// What goes between two tokens: nothing (where the grammar allows it), spacing, or a comment.
fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(" ".to_owned()),
        1 => Just(String::new()),
        1 => Just("  \t".to_owned()),
        2 => Just("\n    ".to_owned()),
        1 => Just("\n\n".to_owned()),
        1 => Just("\r\n".to_owned()),
        2 => "[a-zA-Z\"#() ]{0,10}".prop_map(|c| format!(" #{c}\n  ")),
        1 => "[a-z ]{0,8}".prop_map(|c| format!("\n\n# {c}\n\n")),
    ]
}

/// Whether two tokens may touch without whitespace.
fn may_touch(left: &str, right: &str) -> bool {
    let punct = |c: char| "()[],{}=!<>\"".contains(c);
    left.ends_with(punct) || right.starts_with(punct)
}

fn rule_file() -> impl Strategy<Value = String> {
    // Mostly files that compile, so that the compiled rule sets are compared, not just errors.
    let webhooks = (0..4usize, prop::bool::weighted(0.8)).prop_flat_map(|(n, valid)| {
        (0..n)
            .map(|i| webhook(i, valid).boxed())
            .collect::<Vec<_>>()
            .prop_map(|w| w.concat())
    });
    webhooks.prop_flat_map(|tokens| {
        let n = tokens.len() + 1;
        (Just(tokens), prop::collection::vec(separator(), n..=n)).prop_map(|(tokens, seps)| {
            let mut text = String::new();
            for (i, token) in tokens.iter().enumerate() {
                let mut sep = seps[i].as_str();
                if sep.is_empty() && (i == 0 || !may_touch(&tokens[i - 1], token)) {
                    sep = " ";
                }
                text.push_str(sep);
                text.push_str(token);
            }
            text.push_str(&seps[tokens.len()]);
            text
        })
    })
}

// === What must not change ===

/// The comments of a file, in order: `#` outside strings to the end of the line.
fn comments(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'#' => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                out.push(text[i..end].trim_end());
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// The compiled rule set and its diagnostic codes, without anything that says where.
fn meaning(text: &str) -> Vec<String> {
    let env: HashMap<String, String> = [("TOKEN".to_owned(), "t".to_owned())].into();
    let compiled = lang::compile(&[Arc::new(SourceFile::new("r.whc", text))], &env);
    super::fuzz_harness::meaning(&compiled)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fmt_is_idempotent_and_keeps_meaning_and_comments(text in rule_file()) {
        let once = format_source(&text).unwrap_or_else(|e| panic!("{e:#?}\n---\n{text}"));
        let twice = format_source(&once).unwrap_or_else(|e| panic!("{e:#?}\n---\n{once}"));
        prop_assert_eq!(&twice, &once, "not idempotent; input:\n{}", text);
        prop_assert_eq!(meaning(&once), meaning(&text), "meaning changed:\n{}\n---\n{}", text, once);
        prop_assert_eq!(comments(&once), comments(&text), "comments changed:\n{}\n---\n{}", text, once);
        prop_assert!(once.is_empty() || (once.ends_with('\n') && !once.ends_with("\n\n")));
    }
}

// === The command ===

const UNFORMATTED: &str = "# Big sales\nwebhook big_sales {\n  on conversion,refund\n  when revenue > 50 # dollars\n  post \"https://x.example.com/\"\n}\n";
const FORMATTED: &str = "# Big sales\nwebhook big_sales {\n    on conversion, refund\n    when revenue greater than 50 # dollars\n    post \"https://x.example.com/\"\n}\n";
const BROKEN: &str = "webhook broken {\n  when (revenue > 5\n}\n";

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_shows_a_diff_and_exits_1_on_an_unformatted_file() {
    let dir = rules(&[("rules/a.whc", UNFORMATTED), ("rules/b.whc", FORMATTED)]);
    let out = whc(dir.path(), &["fmt", "--check"]);
    assert_exit(&out, 1);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("--- rules/a.whc\n"), "{stdout}");
    assert!(stdout.contains("+++ rules/a.whc (formatted)\n"), "{stdout}");
    assert!(
        stdout.contains("\n-  when revenue > 50 # dollars\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n+    when revenue greater than 50 # dollars\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n # Big sales\n"),
        "context line: {stdout}"
    );
    assert!(!stdout.contains("b.whc"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when NO_COLOR is set");
    assert_eq!(
        read(dir.path(), "rules/a.whc"),
        UNFORMATTED,
        "--check writes nothing"
    );
}

#[test]
fn check_exits_0_when_everything_is_formatted() {
    let dir = rules(&[("rules/b.whc", FORMATTED)]);
    let out = whc(dir.path(), &["fmt", "--check"]);
    assert_exit(&out, 0);
    assert!(out.stdout.is_empty());
}

#[test]
fn check_colours_the_diff_when_asked() {
    let dir = rules(&[("a.whc", UNFORMATTED)]);
    let out = whc(
        dir.path(),
        &["--color", "always", "fmt", "--check", "a.whc"],
    );
    assert_exit(&out, 1);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("\x1b[32m+    on conversion, refund\x1b[0m"),
        "{stdout:?}"
    );
    assert!(
        stdout.contains("\x1b[31m-  on conversion,refund\x1b[0m"),
        "{stdout:?}"
    );
}

#[test]
fn fmt_rewrites_files_in_place() {
    let dir = rules(&[("rules/a.whc", UNFORMATTED), ("rules/sub/b.whc", FORMATTED)]);
    let out = whc(dir.path(), &["fmt"]);
    assert_exit(&out, 0);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, "formatted rules/a.whc\n");
    assert_eq!(read(dir.path(), "rules/a.whc"), FORMATTED);
    assert_eq!(read(dir.path(), "rules/sub/b.whc"), FORMATTED);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("rules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left behind: {names:?}");
    assert_exit(&whc(dir.path(), &["fmt", "--check"]), 0);
}

#[test]
fn a_syntax_error_exits_2_and_leaves_the_file_untouched() {
    let dir = rules(&[("rules/a.whc", UNFORMATTED), ("rules/broken.whc", BROKEN)]);
    let out = whc(dir.path(), &["fmt"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("expected `)`"), "{stderr}");
    assert!(stderr.contains("rules/broken.whc"), "{stderr}");
    assert_eq!(read(dir.path(), "rules/broken.whc"), BROKEN);
    // The other files are still formatted.
    assert_eq!(read(dir.path(), "rules/a.whc"), FORMATTED);

    let out = whc(dir.path(), &["fmt", "--check", "rules/broken.whc"]);
    assert_exit(&out, 2);
}

#[test]
fn a_missing_path_exits_2() {
    let dir = rules(&[]);
    let out = whc(dir.path(), &["fmt", "nowhere"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}
