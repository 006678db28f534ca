//! The `whc` command line: clap subcommands wiring the layers together.

mod cases;
mod check;
mod explain;
mod fmt;
mod log;
mod output;
mod serve;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use output::ColorChoice;

/// Webhook rules for a click tracker: check them, explain them, serve them.
#[derive(Debug, Parser)]
#[command(name = "whc", version, about)]
pub struct Cli {
    /// When to use colour: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: source snippets, labels, help.
    Human,
    /// One JSON document, for scripts and CI.
    Json,
    /// GitHub Actions workflow commands (`::error file=...::message`); `whc check` only.
    Github,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse, type-check and compile rule files; report every problem.
    Check(check::CheckArgs),
    /// Show, for one event, which webhooks fire and why.
    Explain(explain::ExplainArgs),
    /// Rewrite rule files in the canonical layout; `--check` shows a diff instead.
    Fmt(fmt::FmtArgs),
    /// Run the sidecar: take events, store them durably, fan them out to webhooks.
    Serve(Box<serve::ServeArgs>),
    /// Send one real test request for webhooks (the Test button), disabled ones included.
    Test(test::TestArgs),
    /// Run the rule test cases (`*.cases.json`) and report coverage.
    Cases(cases::CasesArgs),
}

/// Loads the rules a command runs against; on errors, prints them and says to run `whc check`.
fn load_rules(path: &std::path::Path, color: bool) -> Result<crate::engine::load::Loaded, String> {
    let loaded = crate::engine::load::load(&[path.to_path_buf()], &crate::lang::ProcessEnv)
        .map_err(|e| e.to_string())?;
    if loaded.compiled.has_errors() {
        for d in loaded.compiled.diagnostics.iter().filter(|d| d.is_error()) {
            eprint!("{}", output::render(d, color));
        }
        return Err("the rules have errors; run `whc check` for the full report".into());
    }
    Ok(loaded)
}

/// Default rules directory.
pub fn default_rules() -> PathBuf {
    PathBuf::from("rules")
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = cli.color.resolve();
    let result = match cli.command {
        Command::Check(args) => check::run(args, color),
        Command::Explain(args) => explain::run(args, color),
        Command::Fmt(args) => fmt::run(args, color),
        Command::Serve(args) => serve::run(*args, color),
        Command::Test(args) => test::run(args, color),
        Command::Cases(args) => cases::run(args, color),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            // Not `eprintln!`: a closed stderr (`whc serve 2>&1 | head`) must not turn a
            // failure into a panic.
            log::stderr_line(&format!("error: {message}"));
            ExitCode::from(2)
        }
    }
}
