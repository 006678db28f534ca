//! `whc fmt`: rewrite rule files in the canonical layout, or check that they are.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::engine::load;
use crate::lang::format::format_source;
use crate::lang::{Code, Diagnostic, SourceFile};

use super::default_rules;
use super::output::{paint, render};

/// Arguments of `whc fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Rule files or directories (default `rules/`).
    paths: Vec<PathBuf>,
    /// Write nothing; show a diff of each file that is not formatted and exit 1 if any.
    #[arg(long)]
    check: bool,
}

/// What happened to one file.
enum Outcome {
    Formatted,
    Changed,
    Failed,
}

/// Formats the files; exit 0 when all are (now) formatted, 1 when `--check` found one that is
/// not, 2 when a file cannot be read or written or does not parse (it is left untouched).
pub fn run(args: FmtArgs, color: bool) -> Result<ExitCode, String> {
    let paths = if args.paths.is_empty() {
        vec![default_rules()]
    } else {
        args.paths
    };
    let files = load::find_rule_files(&paths).map_err(|e| e.to_string())?;
    let (mut changed, mut failed) = (0, 0);
    for path in &files {
        match fmt_file(path, args.check, color) {
            Outcome::Formatted => {}
            Outcome::Changed => changed += 1,
            Outcome::Failed => failed += 1,
        }
    }
    if failed > 0 {
        return Ok(ExitCode::from(2));
    }
    if args.check && changed > 0 {
        let s = if changed == 1 { "" } else { "s" };
        let text = format!("{changed} file{s} not formatted; run `whc fmt` to fix");
        eprintln!("{}", paint(&text, "31", color));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_file(path: &Path, check: bool, color: bool) -> Outcome {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return Outcome::Failed;
        }
    };
    let formatted = match format_source(&text) {
        Ok(formatted) => formatted,
        Err(errors) => {
            let source = Arc::new(SourceFile::new(name.clone(), text));
            for e in errors {
                let d = Diagnostic::new(Code::Syntax, &source, e.span, e.label, e.message);
                eprintln!("{}", render(&d, color));
            }
            eprintln!("error: {name} not formatted: it has syntax errors");
            return Outcome::Failed;
        }
    };
    if formatted == text {
        return Outcome::Formatted;
    }
    if check {
        print!("{}", diff(&name, &text, &formatted, color));
        return Outcome::Changed;
    }
    match write_atomically(path, &formatted) {
        Ok(()) => {
            println!("formatted {name}");
            Outcome::Changed
        }
        Err(e) => {
            eprintln!("error: cannot write {name}: {e}");
            Outcome::Failed
        }
    }
}

/// A unified diff from the file as it is to the file formatted.
fn diff(name: &str, old: &str, new: &str, color: bool) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(name, &format!("{name} (formatted)"))
        .to_string();
    if !color {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let code = if body.starts_with("+++") || body.starts_with("---") {
            "1"
        } else if body.starts_with('+') {
            "32"
        } else if body.starts_with('-') {
            "31"
        } else if body.starts_with("@@") {
            "36"
        } else {
            ""
        };
        if code.is_empty() {
            out.push_str(line);
        } else {
            out.push_str(&paint(body, code, true));
            out.push_str(nl);
        }
    }
    out
}

/// Writes a temporary file beside the target and renames it over the target, so a reader (the
/// sidecar's reloader) sees the old file or the new one, never half of one. The temporary name
/// starts with a dot, which rule-directory walks skip.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "rules".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{file_name}.fmt-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
