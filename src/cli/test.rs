//! `whc test`: the Test button from the command line. One real request per named webhook, built
//! and sent exactly as the sidecar would (same client, headers, timeout and signing), marked
//! `Whc-Test: true`, disabled webhooks included.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::deliver::test::{self, TestMode, TestReport, TestResult, status_line};
use crate::deliver::{Client, EXCERPT_LIMIT, ExtraRoots};
use crate::event::Event;
use crate::lang::diagnostic::did_you_mean;
use crate::lang::{ProcessEnv, Webhook};

use super::output::paint;
use super::{Format, default_rules};

/// Arguments of `whc test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The rules directory or files.
    #[arg(long, default_value_os_t = default_rules())]
    rules: PathBuf,
    /// The webhooks to test, by name.
    #[arg(required = true, value_name = "WEBHOOK")]
    webhooks: Vec<String>,
    /// Send this event (a JSON file in the tracker's wire format) instead of the sample event.
    #[arg(long, value_name = "FILE")]
    event: Option<PathBuf>,
    /// Render and print the request without sending it.
    #[arg(long)]
    dry_run: bool,
    /// A PEM file of CA certificates to trust beside the Mozilla roots (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Runs the tests; exit 0 when every endpoint answered 2xx (or, in a dry run, every request
/// could be built), 1 otherwise, 2 when the rules, the event or a webhook name are wrong.
pub fn run(args: TestArgs, color: bool) -> Result<ExitCode, String> {
    if args.format == Format::Github {
        return Err("`--format github` is only for `whc check`; use human or json".into());
    }
    let event = match &args.event {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(
                Event::from_json_str(&text)
                    .map_err(|e| format!("{} is not a valid event: {e}", path.display()))?,
            )
        }
    };
    let loaded = super::load_rules(&args.rules, color)?;
    let webhooks = &loaded.compiled.webhooks;
    let mut chosen: Vec<&Webhook> = Vec::new();
    for name in &args.webhooks {
        match webhooks.iter().find(|w| &w.name == name) {
            Some(w) => chosen.push(w),
            None => {
                let hint = did_you_mean(name, webhooks.iter().map(|w| w.name.as_str()))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_else(|| {
                        let names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
                        format!("; the webhooks are: {}", names.join(", "))
                    });
                return Err(format!(
                    "no webhook named `{name}` in {}{hint}",
                    args.rules.display()
                ));
            }
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let roots = ExtraRoots::load(&args.ca_certs).map_err(|e| e.to_string())?;
    let client = Client::with_roots(&roots).map_err(|e| e.to_string())?;
    let mut reports = Vec::with_capacity(chosen.len());
    for webhook in &chosen {
        let event = event
            .clone()
            .unwrap_or_else(|| test::sample_event_for(webhook));
        let mode = if args.dry_run {
            TestMode::DryRun
        } else {
            TestMode::Send
        };
        let report = runtime.block_on(test::run(&client, webhook, &event, &ProcessEnv, mode));
        if args.format == Format::Human {
            print!("{}", human(webhook, &event, &report, color));
        }
        reports.push(report);
    }
    if args.format == Format::Json {
        let list: Vec<_> = reports.iter().map(TestReport::to_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
        );
    }
    let failed = reports.iter().any(|r| r.failure().is_some());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The human report of one test: the request (`>` lines), the answer (`<` lines), the verdict.
fn human(webhook: &Webhook, event: &Event, report: &TestReport, color: bool) -> String {
    let mut out = String::new();
    let mut title = format!("{} (event: {}", webhook.name, event.kind);
    if webhook.disabled {
        title.push_str(", webhook disabled: tested anyway");
    }
    title.push(')');
    let _ = writeln!(out, "{}", paint(&title, "1", color));
    if !webhook.events.contains(event.kind) {
        let _ = writeln!(
            out,
            "{}",
            paint(
                &format!(
                    "note: this webhook does not listen to {} events; sending it anyway",
                    event.kind
                ),
                "33",
                color
            )
        );
    }
    let _ = writeln!(out, "> {} {}", report.method, report.url);
    for (name, value) in &report.headers {
        let _ = writeln!(out, "> {name}: {value}");
    }
    if let Some(body) = &report.body {
        let _ = writeln!(out, ">");
        // The body goes out compact; it is shown indented for reading.
        let shown = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| body.clone());
        for line in shown.lines() {
            let _ = writeln!(out, "> {line}");
        }
    }
    let _ = writeln!(out);
    let ms = report.elapsed().as_secs_f64() * 1000.0;
    match &report.result {
        TestResult::Sent {
            answer: Ok(response),
            ..
        } => {
            let status = status_line(response.status);
            let painted = paint(&status, if report.ok() { "32" } else { "31" }, color);
            let _ = writeln!(out, "< {painted}    ({ms:.0} ms)");
            for (name, value) in &response.headers {
                let _ = writeln!(out, "< {name}: {value}");
            }
            if !response.body.is_empty() {
                let _ = writeln!(out, "<");
                for line in response.body.lines() {
                    let _ = writeln!(out, "< {line}");
                }
            }
            if response.truncated {
                let _ = writeln!(
                    out,
                    "(body cut: only the first {} KiB is shown)",
                    EXCERPT_LIMIT / 1024
                );
            }
        }
        TestResult::Rendered => {
            let _ = writeln!(out, "(dry run: not sent)");
        }
        TestResult::Sent { answer: Err(_), .. } | TestResult::Unprepared(_) => {}
    }
    let verdict = match report.failure() {
        None if report.mode == TestMode::DryRun => paint("ok: rendered (dry run)", "32", color),
        None => paint(&format!("ok: answered in {ms:.0} ms"), "32", color),
        Some(reason) => paint(&format!("failed: {reason}"), "31", color),
    };
    let _ = writeln!(out, "{verdict}\n");
    out
}
