//! Reading a rules directory from disk and compiling it as one unit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lang::{self, Code, Compiled, Diagnostic, Env, SourceFile, Span};

use super::RuleSet;

/// A rule path that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// How rule files' names end.
pub const RULE_SUFFIX: &str = ".whc";

/// Collects the `.whc` files under each path (a file stands for itself), sorted by path.
pub fn find_rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReadError> {
    find_files(paths, RULE_SUFFIX)
}

/// Whether the loader reads this file: a `.whc` file that is not hidden.
pub fn is_rule_file(path: &Path) -> bool {
    !is_hidden(path) && has_suffix(path, RULE_SUFFIX)
}

/// Collects the files whose names end in `suffix` under each path (a file stands for itself),
/// sorted by path; hidden files and folders (editors' swap and backup files) are skipped.
pub fn find_files(paths: &[PathBuf], suffix: &str) -> Result<Vec<PathBuf>, ReadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ReadError {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, suffix, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let err = |source| ReadError {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk(&path, suffix, out)?;
        } else if has_suffix(&path, suffix) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(suffix))
}

/// Reads rule files into sources named by their path as given; a file that cannot be read
/// (permissions, not UTF-8) comes back as its error, so the others are still checked.
pub fn read_sources(files: &[PathBuf]) -> (Vec<Arc<SourceFile>>, Vec<ReadError>) {
    let mut sources = Vec::with_capacity(files.len());
    let mut unreadable = Vec::new();
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push(Arc::new(SourceFile::new(path.display().to_string(), text))),
            Err(source) => unreadable.push(ReadError {
                path: path.clone(),
                source,
            }),
        }
    }
    (sources, unreadable)
}

/// The error diagnostic for a rule file that could not be read.
fn unreadable_file(err: &ReadError) -> Diagnostic {
    let place = Arc::new(SourceFile::new(err.path.display().to_string(), ""));
    let help = if err.source.kind() == std::io::ErrorKind::InvalidData {
        "rule files are UTF-8 text; re-save the file as UTF-8"
    } else {
        "check that the file exists and that whc may read it"
    };
    let mut diagnostic = Diagnostic::new(
        Code::ReadFile,
        &place,
        Span::default(),
        "",
        format!(
            "cannot read the rule file {}: {}",
            err.path.display(),
            err.source
        ),
    )
    .with_help(help);
    diagnostic.labels.clear(); // there is no text to point into
    diagnostic
}

/// The outcome of loading a rules directory: the compilation and the sources it read.
#[derive(Debug)]
pub struct Loaded {
    /// Webhooks and diagnostics.
    pub compiled: Compiled,
    /// The files read.
    pub sources: Vec<Arc<SourceFile>>,
    /// Every rule file found, including those that could not be read.
    pub files: usize,
}

impl Loaded {
    /// The rule set, when there were no errors.
    pub fn rule_set(&self) -> Option<RuleSet> {
        (!self.compiled.has_errors())
            .then(|| RuleSet::new(self.compiled.webhooks.clone(), &self.sources))
    }
}

/// Reads and compiles every rule file under `paths`.
pub fn load(paths: &[PathBuf], env: &dyn Env) -> Result<Loaded, ReadError> {
    let files = find_rule_files(paths)?;
    let (sources, unreadable) = read_sources(&files);
    let mut compiled = lang::compile(&sources, env);
    compiled
        .diagnostics
        .extend(unreadable.iter().map(unreadable_file));
    if files.is_empty() {
        // Most likely a wrong path: say so rather than serve nothing in silence.
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let place = Arc::new(SourceFile::new(names.join(", "), ""));
        let mut warning = Diagnostic::new(
            Code::NoRules,
            &place,
            Span::default(),
            "",
            format!("no `.whc` rule files under {}", names.join(", ")),
        )
        .with_help("rule files end in `.whc`; nothing will ever fire");
        warning.labels.clear(); // there is no text to point into
        compiled.diagnostics.push(warning);
    }
    Ok(Loaded {
        compiled,
        sources,
        files: files.len(),
    })
}
