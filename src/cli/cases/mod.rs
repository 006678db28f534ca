//! `whc cases`: rule test cases kept beside the rules (`*.cases.json`), with JUnit output and
//! coverage, like `promtool test rules`.
//!
//! A cases file is `{"cases": [CASE, ...]}`; a case is
//! `{"name", "event" | "event_file" | "source" + "request", "fires", "would_fire"?, "urls"?,
//! "mapped"?, "refused"?, "ignored"?, "description"?}`.
//! `fires` is the exact set of webhooks that send for the event; `would_fire` the exact set of
//! `disabled` webhooks whose conditions hold (default: none); `urls` the exact rendered URL of
//! some of them (the `[delivery]` token renders as `DELIVERY-ID`). A case with `source` and
//! `request` (`{"method"?, "url", "headers"?, "body"?}`) maps the raw request with that source
//! first; `mapped` is a part of the event it must make, `refused` the parameter a refusal must
//! name, `ignored` the parameter whose value the source ignores (`"pending" -> ignore`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::explain::{Explanation, explain};
use crate::event::Event;
use crate::lang::Webhook;
use crate::lang::diagnostic::did_you_mean;
use crate::source::{Mapped, Source, SourceError};

use super::output::paint;
use super::{Format, default_rules};

mod coverage;
mod junit;

use coverage::Coverage;
use junit::junit;

/// The suffix of cases files.
pub const CASES_SUFFIX: &str = ".cases.json";

/// Arguments of `whc cases`.
#[derive(Debug, Args)]
pub struct CasesArgs {
    /// The rules directory or files.
    #[arg(long, default_value_os_t = default_rules())]
    rules: PathBuf,
    /// Cases files, or directories searched for `*.cases.json` (default: the rules directory).
    #[arg(value_name = "CASES")]
    cases: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Report coverage: webhooks no case fires, conditions no case makes both true and false.
    #[arg(long)]
    coverage: bool,
    /// Fail (exit 1) when webhook or condition coverage is below PCT percent; implies
    /// `--coverage`.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    min_coverage: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let n: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if (0.0..=100.0).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{text} is not between 0 and 100"))
    }
}

// === the file format ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    event_file: Option<PathBuf>,
    fires: Vec<String>,
    #[serde(default)]
    would_fire: Vec<String>,
    #[serde(default)]
    urls: BTreeMap<String, String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    request: Option<RawRequest>,
    #[serde(default)]
    mapped: Option<Value>,
    #[serde(default)]
    refused: Option<String>,
    #[serde(default)]
    ignored: Option<String>,
}

/// A raw request as a tracker sends it, for a case that goes through a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

// === results ===

/// One case's result.
#[derive(Debug)]
pub(super) struct CaseResult {
    name: String,
    /// The event, when it could be read.
    event: Option<Event>,
    /// The source the case's request went through.
    source: Option<String>,
    /// Why the case could not run (bad event, unreadable event file).
    error: Option<String>,
    /// What did not match, one item each.
    failures: Vec<String>,
    expected_fires: BTreeSet<String>,
    expected_would: BTreeSet<String>,
    actual_fires: BTreeSet<String>,
    actual_would: BTreeSet<String>,
    /// The explanations of the webhooks that differ from the expectation.
    explanations: Vec<Explanation>,
    elapsed: Duration,
}

impl CaseResult {
    fn ok(&self) -> bool {
        self.error.is_none() && self.failures.is_empty()
    }
}

/// One cases file's results.
#[derive(Debug)]
pub(super) struct SuiteResult {
    file: String,
    /// Why the file could not be read at all.
    error: Option<String>,
    cases: Vec<CaseResult>,
}

/// Runs the cases; exit 0 when all pass (and coverage meets `--min-coverage`), 1 otherwise,
/// 2 when the rules cannot load or no cases file is found.
pub fn run(args: CasesArgs, color: bool) -> Result<ExitCode, String> {
    if args.format == Format::Github {
        return Err("`--format github` is only for `whc check`; use human or json".into());
    }
    let loaded = super::load_rules(&args.rules, color)?;
    let webhooks = &loaded.compiled.webhooks;
    let sources = &loaded.compiled.sources;
    let roots = if args.cases.is_empty() {
        if args.rules.is_file() {
            // `--rules sales.whc`: its sibling `sales.cases.json`
            let sibling = args.rules.with_extension("cases.json");
            if !sibling.is_file() {
                return Err(format!("no {} beside the rule file", sibling.display()));
            }
            vec![sibling]
        } else {
            vec![args.rules.clone()]
        }
    } else {
        args.cases.clone()
    };
    let files = find_cases_files(&roots)?;
    if files.is_empty() {
        let shown: Vec<String> = roots.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "no `*{CASES_SUFFIX}` files under {}",
            shown.join(", ")
        ));
    }
    let suites: Vec<SuiteResult> = files
        .iter()
        .map(|f| run_file(f, webhooks, sources))
        .collect();
    let coverage = Coverage::measure(webhooks, sources, &suites);

    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&suites, webhooks))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }

    let cases: Vec<&CaseResult> = suites.iter().flat_map(|s| &s.cases).collect();
    let failed_cases = cases.iter().filter(|c| !c.ok()).count();
    let broken_files = suites.iter().filter(|s| s.error.is_some()).count();
    let below = args
        .min_coverage
        .map(|min| coverage.below(min))
        .unwrap_or_default();
    let show_coverage = args.coverage || args.min_coverage.is_some();
    let ok = failed_cases == 0 && broken_files == 0 && below.is_empty();

    match args.format {
        Format::Json | Format::Github => {
            let doc = json!({
                "ok": ok,
                "passed": cases.len() - failed_cases,
                "failed": failed_cases,
                "files": suites.iter().map(suite_json).collect::<Vec<_>>(),
                "coverage": coverage.to_json(webhooks),
                "below_min_coverage": below,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
            );
        }
        Format::Human => {
            let mut out = String::new();
            for suite in &suites {
                out.push_str(&suite_human(suite, webhooks, color));
            }
            if show_coverage {
                out.push_str(&coverage.human(webhooks, color));
            }
            for reason in &below {
                let _ = writeln!(out, "{}", paint(reason, "31", color));
            }
            let summary = format!(
                "{} case{} in {} file{}: {} passed, {} failed",
                cases.len(),
                if cases.len() == 1 { "" } else { "s" },
                suites.len(),
                if suites.len() == 1 { "" } else { "s" },
                cases.len() - failed_cases,
                failed_cases
            );
            if !show_coverage && !ok {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{}",
                paint(&summary, if ok { "32" } else { "31" }, color)
            );
            print!("{out}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `*.cases.json` files under each path (a file stands for itself), sorted, dot-files
/// skipped.
fn find_cases_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    crate::engine::load::find_files(paths, CASES_SUFFIX).map_err(|e| e.to_string())
}

fn run_file(path: &Path, webhooks: &[Webhook], sources: &[Source]) -> SuiteResult {
    let file = path.display().to_string();
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {file}: {e}"))
        .and_then(|text| {
            serde_json::from_str::<CasesFile>(&text)
                .map_err(|e| format!("{file} is not a valid cases file: {e}"))
        });
    match parsed {
        Err(error) => SuiteResult {
            file,
            error: Some(error),
            cases: Vec::new(),
        },
        Ok(spec) => {
            let base = path.parent().unwrap_or(Path::new("."));
            let cases = spec
                .cases
                .into_iter()
                .map(|case| run_case(case, base, webhooks, sources))
                .collect();
            SuiteResult {
                file,
                error: None,
                cases,
            }
        }
    }
}

fn read_event(case: &CaseSpec, base: &Path) -> Result<Event, String> {
    match (&case.event, &case.event_file) {
        (Some(_), Some(_)) => Err("give either `event` or `event_file`, not both".into()),
        (None, None) => Err("the case has no `event` or `event_file`".into()),
        (Some(value), None) => {
            Event::from_json(value).map_err(|e| format!("`event` is not a valid event: {e}"))
        }
        (None, Some(file)) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read event file {}: {e}", path.display()))?;
            Event::from_json_str(&text)
                .map_err(|e| format!("{} is not a valid event: {e}", path.display()))
        }
    }
}

/// What a case's request became: an event, nothing (ignored), or the source's refusal.
fn map_request(case: &CaseSpec, sources: &[Source]) -> Result<Result<Mapped, SourceError>, String> {
    let (Some(name), Some(raw)) = (&case.source, &case.request) else {
        return Err("a case through a source gives both `source` and `request`".into());
    };
    if case.event.is_some() || case.event_file.is_some() {
        return Err("give either `event`/`event_file` or `source` + `request`, not both".into());
    }
    let source = sources
        .iter()
        .find(|s| s.name == *name)
        .ok_or_else(|| super::explain::no_source(name, sources))?;
    let mut headers = http::HeaderMap::new();
    for (k, v) in &raw.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`request.headers`: {k:?} is not a header name"))?;
        let value = http::HeaderValue::from_str(v)
            .map_err(|_| format!("`request.headers`: the value of {k} is not valid"))?;
        headers.insert(name, value);
    }
    let url = crate::source::Request::from_url(&raw.url);
    let target = if url.query.is_empty() {
        url.path
    } else {
        format!("{}?{}", url.path, url.query)
    };
    let request = crate::source::Request::new(
        raw.method.as_deref().unwrap_or("GET"),
        &target,
        headers,
        bytes::Bytes::from(raw.body.clone().unwrap_or_default()),
    );
    if !source.allows(&request.method) {
        return Err(format!(
            "source `{name}` answers {}, not {}",
            source.methods_text(),
            request.method
        ));
    }
    Ok(source.map(&request))
}

/// Whether every key of `part` is in `whole` with the same value (objects compared the same way).
fn contains_json(whole: &Value, part: &Value) -> bool {
    match (whole, part) {
        (Value::Object(w), Value::Object(p)) => p
            .iter()
            .all(|(k, v)| w.get(k).is_some_and(|wv| contains_json(wv, v))),
        (w, p) => w == p,
    }
}

fn run_case(case: CaseSpec, base: &Path, webhooks: &[Webhook], sources: &[Source]) -> CaseResult {
    let started = Instant::now();
    let expected_fires: BTreeSet<String> = case.fires.iter().cloned().collect();
    let expected_would: BTreeSet<String> = case.would_fire.iter().cloned().collect();
    let mut result = CaseResult {
        name: case.name.clone(),
        event: None,
        source: case.source.clone(),
        error: None,
        failures: Vec::new(),
        expected_fires,
        expected_would,
        actual_fires: BTreeSet::new(),
        actual_would: BTreeSet::new(),
        explanations: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let read = if case.source.is_some() || case.request.is_some() {
        map_request(&case, sources).map(|mapped| match (mapped, &case.refused, &case.ignored) {
            (Ok(Mapped::Event(event)), None, None) => Some(*event),
            (Ok(Mapped::Event(_)), refused, ignored) => {
                let (what, key) = match (refused, ignored) {
                    (Some(key), _) => ("refuse", key),
                    (None, key) => ("ignore", key.as_ref().expect("one of them")),
                };
                result.failures.push(format!(
                    "expected the source to {what} the request naming `{key}`, but it mapped it"
                ));
                None
            }
            (Ok(Mapped::Ignored(ignored)), _, Some(key)) if ignored.key == *key => None,
            (Ok(Mapped::Ignored(ignored)), _, _) => {
                result.failures.push(format!(
                    "the source ignored the request: {}",
                    ignored.reason()
                ));
                None
            }
            (Err(refusal), Some(key), _) if refusal.key == *key => None,
            (Err(refusal), _, _) => {
                result
                    .failures
                    .push(format!("the source refused the request: {refusal}"));
                None
            }
        })
    } else {
        read_event(&case, base).map(Some)
    };
    let event = match read {
        Ok(Some(event)) => event,
        Ok(None) => {
            result.elapsed = started.elapsed();
            return result;
        }
        Err(error) => {
            result.error = Some(error);
            result.elapsed = started.elapsed();
            return result;
        }
    };
    if let Some(part) = &case.mapped
        && !contains_json(&event.to_json(), part)
    {
        result.failures.push(format!(
            "mapped event:\n  expected to contain: {part}\n  actual:              {}",
            event.to_json()
        ));
    }

    // Names that are not webhooks at all: a typo or a rename the cases missed.
    let names = || webhooks.iter().map(|w| w.name.as_str());
    let listed = [
        ("fires", case.fires.iter().collect::<Vec<_>>()),
        ("would_fire", case.would_fire.iter().collect()),
        ("urls", case.urls.keys().collect()),
    ];
    for (key, list) in listed {
        for name in list {
            if !names().any(|n| n == name) {
                let hint = did_you_mean(name, names())
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                result.failures.push(format!(
                    "`{key}` names `{name}`, which is not a webhook{hint}"
                ));
            }
        }
    }
    for name in &case.would_fire {
        if webhooks.iter().any(|w| &w.name == name && !w.disabled) {
            result.failures.push(format!(
                "`would_fire` is for disabled webhooks, but `{name}` is enabled: list it in `fires`"
            ));
        }
    }

    let mut differing = BTreeSet::new();
    for w in webhooks {
        if w.fires_for(&event) {
            if w.disabled {
                result.actual_would.insert(w.name.clone());
            } else {
                result.actual_fires.insert(w.name.clone());
            }
        }
    }
    for (what, expected, actual) in [
        ("fires", &result.expected_fires, &result.actual_fires),
        (
            "would_fire (disabled webhooks whose conditions hold)",
            &result.expected_would,
            &result.actual_would,
        ),
    ] {
        if actual != expected {
            differing.extend(actual.symmetric_difference(expected).cloned());
            result.failures.push(set_difference(what, expected, actual));
        }
    }
    for (name, expected_url) in &case.urls {
        let Some(w) = webhooks.iter().find(|w| &w.name == name) else {
            continue; // reported above
        };
        let explanation = explain(w, &event);
        match &explanation.url {
            None => result.failures.push(format!(
                "URL of `{name}`: expected {expected_url}, but it does not fire"
            )),
            Some(url) if url != expected_url => {
                result.failures.push(format!(
                    "URL of `{name}`:\n  expected: {expected_url}\n  actual:   {url}"
                ));
                differing.insert(name.clone());
            }
            Some(_) => {}
        }
    }
    result.explanations = webhooks
        .iter()
        .filter(|w| differing.contains(&w.name))
        .map(|w| explain(w, &event))
        .collect();
    result.event = Some(event);
    result.elapsed = started.elapsed();
    result
}

fn set_difference(what: &str, expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> String {
    let list = |set: &BTreeSet<String>| {
        if set.is_empty() {
            "(none)".to_owned()
        } else {
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    let missing: BTreeSet<String> = expected.difference(actual).cloned().collect();
    let extra: BTreeSet<String> = actual.difference(expected).cloned().collect();
    let mut text = format!(
        "{what}:\n  expected: {}\n  actual:   {}",
        list(expected),
        list(actual)
    );
    if !missing.is_empty() {
        let _ = write!(text, "\n  missing:  {}", list(&missing));
    }
    if !extra.is_empty() {
        let _ = write!(text, "\n  extra:    {}", list(&extra));
    }
    text
}

// === output ===

fn suite_human(suite: &SuiteResult, webhooks: &[Webhook], color: bool) -> String {
    let mut out = String::new();
    if let Some(error) = &suite.error {
        let _ = writeln!(out, "{} {error}", paint("✗", "31", color));
        return out;
    }
    let failed = suite.cases.iter().filter(|c| !c.ok()).count();
    let line = format!(
        "{}: {} case{}, {}",
        suite.file,
        suite.cases.len(),
        if suite.cases.len() == 1 { "" } else { "s" },
        if failed == 0 {
            "all pass".to_owned()
        } else {
            format!("{failed} failed")
        }
    );
    let mark = if failed == 0 {
        paint("✓", "32", color)
    } else {
        paint("✗", "31", color)
    };
    let _ = writeln!(out, "{mark} {line}");
    for case in suite.cases.iter().filter(|c| !c.ok()) {
        let _ = writeln!(
            out,
            "\n  {} {}",
            paint("FAIL", "31;1", color),
            paint(&case.name, "1", color)
        );
        if let Some(error) = &case.error {
            let _ = writeln!(out, "    error: {error}");
        }
        for failure in &case.failures {
            for line in failure.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        if !case.explanations.is_empty() {
            let _ = writeln!(out, "    why:");
            for r in &case.explanations {
                if let Some(w) = webhooks.iter().find(|w| w.name == r.webhook) {
                    out.push_str(&super::explain::human(w, r, color, "      "));
                }
            }
        }
    }
    out
}

fn suite_json(suite: &SuiteResult) -> Value {
    let cases: Vec<Value> = suite
        .cases
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "ok": c.ok(),
                "error": c.error,
                "failures": c.failures,
                "expected": { "fires": c.expected_fires, "would_fire": c.expected_would },
                "actual": { "fires": c.actual_fires, "would_fire": c.actual_would },
                "explain": c.explanations,
            })
        })
        .collect();
    json!({ "file": suite.file, "error": suite.error, "cases": cases })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentages_parse() {
        assert_eq!(super::parse_percent("100").unwrap(), 100.0);
        assert_eq!(super::parse_percent("80%").unwrap(), 80.0);
        assert!(super::parse_percent("101").is_err());
    }
}
