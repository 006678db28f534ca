//! Diagnostic fixtures: one `.whc` file per diagnostic in `tests/diagnostics/`, its rendered
//! report checked in under `tests/it/snapshots/`, so a wording change is a reviewed change.
//!
//! A fixture's file name says which code it produces: `unknown_field.whc` and
//! `unknown_field-click_alone.whc` must both report `whc::unknown_field`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use whc::lang::diagnostic::render_report;
use whc::lang::{self, Code, Compiled, SourceFile};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diagnostics");

/// Every code in the registry. `produced_by_compile` is exhaustive, so a new code does not
/// compile here until someone decides whether it needs a fixture.
const ALL_CODES: [Code; 42] = [
    Code::Syntax,
    Code::UnknownField,
    Code::UnknownEvent,
    Code::UnknownOperator,
    Code::UnknownToken,
    Code::UnknownClause,
    Code::Attribution,
    Code::OperatorType,
    Code::LiteralType,
    Code::MissingValue,
    Code::EventNumberRange,
    Code::InvalidRegex,
    Code::InvalidUrl,
    Code::TokenInHost,
    Code::DuplicateWebhook,
    Code::MissingOn,
    Code::MissingUrl,
    Code::RepeatedClause,
    Code::InvalidDuration,
    Code::InvalidRetries,
    Code::SecretLiteral,
    Code::InvalidHeader,
    Code::ReadFile,
    Code::InsecureUrl,
    Code::NeverFires,
    Code::DuplicateCondition,
    Code::EventNumberOutsideEvent,
    Code::CountryCode,
    Code::EnvUnset,
    Code::DuplicateEvent,
    Code::NoRules,
    Code::SkippedLink,
    Code::CredentialLiteral,
    Code::CurrencyCode,
    Code::DuplicateSource,
    Code::DuplicateRoute,
    Code::MissingRoute,
    Code::InvalidRoute,
    Code::EmptyValueMap,
    Code::ValueMapField,
    Code::MissingSecret,
    Code::MissingId,
];

/// Whether `whc::lang::compile` can report the code (so that it must have a fixture).
fn produced_by_compile(code: Code) -> bool {
    match code {
        // Reported by the loader and the sidecar, not by the compiler.
        Code::ReadFile | Code::NoRules | Code::SkippedLink => false,
        Code::Syntax
        | Code::UnknownField
        | Code::UnknownEvent
        | Code::UnknownOperator
        | Code::UnknownToken
        | Code::UnknownClause
        | Code::Attribution
        | Code::OperatorType
        | Code::LiteralType
        | Code::MissingValue
        | Code::EventNumberRange
        | Code::InvalidRegex
        | Code::InvalidUrl
        | Code::TokenInHost
        | Code::DuplicateWebhook
        | Code::MissingOn
        | Code::MissingUrl
        | Code::RepeatedClause
        | Code::InvalidDuration
        | Code::InvalidRetries
        | Code::SecretLiteral
        | Code::InvalidHeader
        | Code::InsecureUrl
        | Code::NeverFires
        | Code::DuplicateCondition
        | Code::EventNumberOutsideEvent
        | Code::CountryCode
        | Code::EnvUnset
        | Code::DuplicateEvent
        | Code::CredentialLiteral
        | Code::CurrencyCode
        | Code::DuplicateSource
        | Code::DuplicateRoute
        | Code::MissingRoute
        | Code::InvalidRoute
        | Code::EmptyValueMap
        | Code::ValueMapField
        | Code::MissingSecret
        | Code::MissingId => true,
    }
}

/// Compiles fixture files (named relative to the fixtures directory) as one rules directory,
/// with an empty environment so that nothing depends on the machine.
fn compile(names: &[&str]) -> Compiled {
    let sources: Vec<Arc<SourceFile>> = names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
            Arc::new(SourceFile::new(*name, text))
        })
        .collect();
    lang::compile(&sources, &HashMap::<String, String>::new())
}

/// Every diagnostic rendered as whc draws it on a terminal without colour, 100 columns wide.
fn render(compiled: &Compiled) -> String {
    let mut out = String::new();
    for d in &compiled.diagnostics {
        out.push_str(&render_report(d, false).unwrap());
        out.push('\n');
    }
    out
}

/// The code a fixture's file name promises: `never_fires-country.whc` → `whc::never_fires`.
fn promised_code(path: &Path) -> String {
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let code = stem.split('-').next().unwrap();
    format!("whc::{code}")
}

fn codes(compiled: &Compiled) -> Vec<&'static str> {
    compiled
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect()
}

#[test]
fn fixture() {
    insta::glob!("../diagnostics", "*.whc", |path| {
        let name = path.file_name().unwrap().to_str().unwrap();
        let compiled = compile(&[name]);
        let want = promised_code(path);
        assert!(
            codes(&compiled).contains(&want.as_str()),
            "{name} should report {want}, but reports {:?}",
            codes(&compiled)
        );
        insta::assert_snapshot!(render(&compiled));
    });
}

#[test]
fn duplicate_webhook_across_files() {
    let compiled = compile(&[
        "duplicate_webhook_across_files/a.whc",
        "duplicate_webhook_across_files/b.whc",
    ]);
    assert_eq!(codes(&compiled), ["whc::duplicate_webhook"]);
    let d = &compiled.diagnostics[0];
    assert_eq!(d.source.name, "duplicate_webhook_across_files/b.whc");
    assert_eq!(d.related.len(), 1, "the first definition is labelled too");
    assert_eq!(
        d.related[0].source.name,
        "duplicate_webhook_across_files/a.whc"
    );
    insta::assert_snapshot!(render(&compiled));
}

#[test]
fn every_code_the_compiler_reports_has_a_fixture() {
    let mut promised: Vec<String> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whc"))
        .map(|p| promised_code(&p))
        .collect();
    promised.sort();
    promised.dedup();
    for code in ALL_CODES {
        let has = promised.iter().any(|p| p == code.as_str());
        assert_eq!(
            has,
            produced_by_compile(code),
            "{}: a fixture in tests/diagnostics/ is {}",
            code.as_str(),
            if has {
                "present but the code is not produced by compile"
            } else {
                "missing"
            }
        );
    }
    let known: Vec<&str> = ALL_CODES.iter().map(|c| c.as_str()).collect();
    for p in &promised {
        assert!(
            known.contains(&p.as_str()),
            "fixture names unknown code {p}"
        );
    }
}

#[test]
fn warnings_and_errors_have_the_registry_severity() {
    for code in ALL_CODES {
        let warning = code.is_warning();
        let name = code.as_str();
        let expect_warning = matches!(
            name,
            "whc::insecure_url"
                | "whc::never_fires"
                | "whc::duplicate_condition"
                | "whc::event_number_outside_event"
                | "whc::country_code"
                | "whc::env_unset"
                | "whc::duplicate_event"
                | "whc::no_rules"
                | "whc::skipped_link"
                | "whc::credential_literal"
                | "whc::currency_code"
                | "whc::missing_secret"
                | "whc::missing_id"
        );
        assert_eq!(warning, expect_warning, "{name}");
    }
}

#[test]
fn warning_fixtures_still_compile_their_webhook() {
    for name in [
        "insecure_url.whc",
        "never_fires.whc",
        "never_fires-country.whc",
        "duplicate_condition.whc",
        "event_number_outside_event.whc",
        "country_code.whc",
        "env_unset.whc",
        "duplicate_event.whc",
    ] {
        let compiled = compile(&[name]);
        assert!(!compiled.has_errors(), "{name}: {:?}", codes(&compiled));
        assert_eq!(compiled.webhooks.len(), 1, "{name}");
    }
}

#[test]
fn rules_that_can_fire_get_no_warning() {
    for condition in [
        "revenue > 50 and revenue < 60",
        "revenue >= 10 and revenue <= 10",
        "revenue > 10 or revenue < 5",
        r#"country == "US" and country in ["us", "CA"]"#,
        r#"first.country == "US" and last.country == "CA""#,
        r#"utm_source != "a" and utm_source != "b""#,
        r#"country in ["US", "CA"] and country == "ca""#,
        r#"utm_source == "a" and utm_medium == "a""#,
        "isFromGoogleAds and not isFromFacebookAds",
        "not (revenue > 50) and revenue > 10",
        "qualityScore is set and qualityScore > 3",
    ] {
        let text = format!(
            "webhook w {{\n    on conversion\n    when {condition}\n    post \"https://x.test/\"\n}}\n"
        );
        let sources = vec![Arc::new(SourceFile::new("w.whc", text))];
        let compiled = lang::compile(&sources, &HashMap::<String, String>::new());
        assert_eq!(codes(&compiled), Vec::<&str>::new(), "{condition}");
    }
}
