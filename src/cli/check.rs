//! `whc check`: the linter.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::engine::load;
use crate::lang::ProcessEnv;

use super::output::{paint, render};
use super::{Format, default_rules};

/// Arguments of `whc check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rule files or directories (default `rules/`).
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Exit 1 on warnings too.
    #[arg(long)]
    deny_warnings: bool,
}

/// Runs the check; exit 0 clean, 1 on errors (or warnings with `--deny-warnings`).
pub fn run(args: CheckArgs, color: bool) -> Result<ExitCode, String> {
    let paths = if args.paths.is_empty() {
        vec![default_rules()]
    } else {
        args.paths
    };
    let loaded = load::load(&paths, &ProcessEnv).map_err(|e| e.to_string())?;
    let compiled = &loaded.compiled;
    let (errors, warnings) = compiled.counts();
    match args.format {
        Format::Json => {
            let list: Vec<_> = compiled.diagnostics.iter().map(|d| d.to_json()).collect();
            println!("{}", serde_json::Value::Array(list));
        }
        Format::Human => {
            for d in &compiled.diagnostics {
                print!("{}", render(d, color));
                println!();
            }
            let files = loaded.sources.len();
            let summary = if errors + warnings == 0 {
                paint(
                    &format!(
                        "ok: {} webhooks in {files} file{}, no problems",
                        compiled.webhooks.len(),
                        if files == 1 { "" } else { "s" }
                    ),
                    "32",
                    color,
                )
            } else {
                let text = format!(
                    "{errors} error{}, {warnings} warning{} in {files} file{}",
                    if errors == 1 { "" } else { "s" },
                    if warnings == 1 { "" } else { "s" },
                    if files == 1 { "" } else { "s" }
                );
                paint(&text, if errors > 0 { "31" } else { "33" }, color)
            };
            println!("{summary}");
        }
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
