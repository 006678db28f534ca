//! `whc check`: the linter.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::engine::load;
use crate::lang::ProcessEnv;
use crate::lang::diagnostic::Diagnostic;

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
        Format::Github => {
            for d in &compiled.diagnostics {
                println!("{}", github_annotation(d));
            }
            eprintln!(
                "{errors} error{}, {warnings} warning{}",
                if errors == 1 { "" } else { "s" },
                if warnings == 1 { "" } else { "s" }
            );
        }
        Format::Human => {
            for d in &compiled.diagnostics {
                print!("{}", render(d, color));
                println!();
            }
            let files = loaded.files;
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

/// One GitHub Actions workflow command for a diagnostic:
/// `::error file=F,line=L,col=C,title=CODE::MESSAGE` (`::warning` for warnings). The help, and
/// where a related problem sits (the other copy of a duplicate), follow the message on their
/// own lines.
pub fn github_annotation(d: &Diagnostic) -> String {
    let (line, column) = d.line_column();
    let command = if d.is_error() { "error" } else { "warning" };
    let mut message = d.message.clone();
    for related in &d.related {
        let (l, c) = related.line_column();
        message.push_str(&format!(
            "\n{}:{l}:{c}: {}",
            related.source.name, related.message
        ));
    }
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!(
        "::{command} file={},line={line},col={column},title={}::{}",
        github_property(&d.source.name),
        github_property(d.code.as_str()),
        github_data(&message)
    )
}

/// Escapes a workflow command's message: `%`, CR and LF.
fn github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value: as the message, plus `:` and `,`.
fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_escaping() {
        assert_eq!(github_data("50% off\r\nnext"), "50%25 off%0D%0Anext");
        assert_eq!(github_property("whc::a,b%\n"), "whc%3A%3Aa%2Cb%25%0A");
    }
}
