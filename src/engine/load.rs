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

/// Collects the `.whc` files under each path (a file stands for itself), sorted by path.
pub fn find_rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ReadError {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let err = |source| ReadError {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue; // editors' swap and backup files
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "whc") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads rule files into sources named by their path as given.
pub fn read_sources(files: &[PathBuf]) -> Result<Vec<Arc<SourceFile>>, ReadError> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|source| ReadError {
                path: path.clone(),
                source,
            })?;
            Ok(Arc::new(SourceFile::new(path.display().to_string(), text)))
        })
        .collect()
}

/// The outcome of loading a rules directory: the compilation and the sources it read.
#[derive(Debug)]
pub struct Loaded {
    /// Webhooks and diagnostics.
    pub compiled: Compiled,
    /// The files read.
    pub sources: Vec<Arc<SourceFile>>,
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
    let sources = read_sources(&files)?;
    let mut compiled = lang::compile(&sources, env);
    if sources.is_empty() {
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
    Ok(Loaded { compiled, sources })
}
