//! `whc explain`: which webhooks fire for one event, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::engine::explain::{Explanation, explain};
use crate::event::Event;
use crate::lang::Webhook;
use crate::source::Mapped;

use super::output::paint;
use super::{Format, default_rules};

/// Arguments of `whc explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The rules directory or files.
    #[arg(long, default_value_os_t = default_rules())]
    rules: PathBuf,
    /// A JSON file holding one event, in the tracker's wire format; with `--source`, the
    /// postback URL the tracker would call, or `@FILE` holding a raw HTTP request.
    event: String,
    /// Map the request with this source first, then explain the event it makes.
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Runs the explanation; exit 0 unless the rules or the event cannot be read.
pub fn run(args: ExplainArgs, color: bool) -> Result<ExitCode, String> {
    if args.format == Format::Github {
        return Err("`--format github` is only for `whc check`; use human or json".into());
    }
    let loaded = super::load_rules(&args.rules, color)?;
    let event = match &args.source {
        None => {
            let text = std::fs::read_to_string(&args.event)
                .map_err(|e| format!("cannot read {}: {e}", args.event))?;
            Event::from_json_str(&text)
                .map_err(|e| format!("{} is not a valid event: {e}", args.event))?
        }
        Some(name) => {
            let source = loaded
                .compiled
                .sources
                .iter()
                .find(|s| s.name == *name)
                .ok_or_else(|| no_source(name, &loaded.compiled.sources))?;
            let request = read_request(&args.event)?;
            let mapped = source
                .map(&request)
                .map_err(|e| format!("source `{name}` refuses the request: {e}"))?;
            let event = match mapped {
                Mapped::Event(event) => *event,
                Mapped::Ignored(ignored) => {
                    if args.format == Format::Human {
                        println!(
                            "source {name} ignores the request: {}. The tracker gets 200; nothing is stored and no webhook fires.",
                            ignored.reason()
                        );
                    } else {
                        let out = serde_json::json!({
                            "source": name,
                            "ignored": { "key": ignored.key, "value": ignored.value },
                        });
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
                        );
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if args.format == Format::Human {
                println!(
                    "source {name} maps the request to:\n{}\n",
                    serde_json::to_string_pretty(&event.to_json()).map_err(|e| e.to_string())?
                );
            }
            event
        }
    };
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

/// The request `whc explain --source` maps: a URL (a GET), or `@FILE` with a raw request.
pub(super) fn read_request(arg: &str) -> Result<crate::source::Request, String> {
    match arg.strip_prefix('@') {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            crate::source::Request::from_http_text(&text)
                .map_err(|e| format!("{path} is not a raw HTTP request: {e}"))
        }
        None => Ok(crate::source::Request::from_url(arg)),
    }
}

/// The error for a source name the rules do not have.
pub(super) fn no_source(name: &str, sources: &[crate::source::Source]) -> String {
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    match crate::lang::diagnostic::suggestion(name, names.iter().copied()) {
        Some(hint) => format!("there is no source `{name}`; {hint}"),
        None if names.is_empty() => format!("there is no source `{name}`: the rules declare none"),
        None => format!(
            "there is no source `{name}`; the sources are: {}",
            names.join(", ")
        ),
    }
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
