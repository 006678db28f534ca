//! `whc explain`: which webhooks fire for one event, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::engine::explain::{Explanation, explain};
use crate::event::Event;
use crate::lang::Webhook;

use super::output::paint;
use super::{Format, default_rules};

/// Arguments of `whc explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The rules directory or files.
    #[arg(long, default_value_os_t = default_rules())]
    rules: PathBuf,
    /// A JSON file holding one event, in the tracker's wire format.
    event: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Runs the explanation; exit 0 unless the rules or the event cannot be read.
pub fn run(args: ExplainArgs, color: bool) -> Result<ExitCode, String> {
    if args.format == Format::Github {
        return Err("`--format github` is only for `whc check`; use human or json".into());
    }
    let text = std::fs::read_to_string(&args.event)
        .map_err(|e| format!("cannot read {}: {e}", args.event.display()))?;
    let event = Event::from_json_str(&text)
        .map_err(|e| format!("{} is not a valid event: {e}", args.event.display()))?;
    let loaded = super::load_rules(&args.rules, color)?;
    let reports: Vec<_> = loaded
        .compiled
        .webhooks
        .iter()
        .map(|w| explain(w, &event))
        .collect();
    match args.format {
        Format::Json | Format::Github => {
            println!(
                "{}",
                serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?
            );
        }
        Format::Human => {
            println!(
                "event {} ({})",
                event.id.as_deref().unwrap_or("without id"),
                event.kind
            );
            for (w, r) in loaded.compiled.webhooks.iter().zip(&reports) {
                print!("\n{}", human(w, r, color, ""));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One webhook's explanation for people: the verdict, each condition with the value it read,
/// and the URL; every line starts with `indent`. Shared with `whc cases`.
pub(super) fn human(w: &Webhook, r: &Explanation, color: bool, indent: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = if r.fires {
        paint("fires", "32", color)
    } else if r.disabled && r.url.is_some() {
        paint("would fire, but is disabled", "33", color)
    } else if !r.listens {
        let kinds: Vec<String> = w.events.kinds().map(|k| k.to_string()).collect();
        format!("does not fire: listens to {}", kinds.join(", "))
    } else {
        paint("does not fire", "31", color)
    };
    let _ = writeln!(out, "{indent}{}: {verdict}", paint(&r.webhook, "1", color));
    for c in &r.conditions {
        let mark = if c.holds {
            paint("✓", "32", color)
        } else {
            paint("✗", "31", color)
        };
        let _ = writeln!(
            out,
            "{indent}  {mark} {}    (read {})",
            c.condition, c.value
        );
    }
    if let Some(url) = &r.url {
        let _ = writeln!(out, "{indent}  → {} {url}", w.request.method.as_http());
    }
    out
}
