//! Reading a rules directory from disk and compiling it as one unit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
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
/// Every folder and file is taken once, however many links lead to it (see [`find`]).
pub fn find_rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReadError> {
    find_files(paths, RULE_SUFFIX)
}

/// Whether the loader reads this file: a `.whc` file that is not hidden.
pub fn is_rule_file(path: &Path) -> bool {
    !is_hidden(path) && has_suffix(path, RULE_SUFFIX)
}

/// Collects the files whose names end in `suffix` under each path (a file stands for itself),
/// sorted by path; hidden files and folders (editors' swap and backup files) are skipped.
/// Every folder and file is taken once, however many links lead to it (see [`find`]).
pub fn find_files(paths: &[PathBuf], suffix: &str) -> Result<Vec<PathBuf>, ReadError> {
    find(paths, suffix).map(|found| found.files)
}

/// The files a walk found, and the links it did not follow.
#[derive(Debug, Default)]
pub struct Found {
    /// The files, sorted by path, each file once.
    pub files: Vec<PathBuf>,
    /// Paths that lead to a folder or file already taken, in walk order.
    pub skipped: Vec<Skipped>,
}

/// A path not followed because it leads to a folder or file already taken: a symbolic link
/// back up the tree (`ln -s . a`, a loop), a second link to one folder, or a second name of
/// one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path not followed.
    pub path: PathBuf,
    /// The path the folder or file was taken at.
    pub first: PathBuf,
    /// Whether it is a folder.
    pub folder: bool,
}

impl Skipped {
    /// Whether following it would have gone round in a loop (it leads to a folder it is in).
    pub fn is_loop(&self) -> bool {
        self.folder && self.path.starts_with(&self.first)
    }
}

/// Walks each path like [`find_files`], following symbolic links, but enters each folder once
/// (known by its device and inode) and takes each file once: a link that loops (`ln -s . a`)
/// or leads to a folder or file already taken is skipped and listed in [`Found::skipped`], so
/// the walk always ends and no webhook is read twice. The sorted order decides which path of a
/// file is kept: the first; folders are taken at the first path the walk (in the order of
/// `paths`, then by name) reaches them by.
pub fn find(paths: &[PathBuf], suffix: &str) -> Result<Found, ReadError> {
    let mut walk = Walk {
        suffix,
        folders: HashMap::new(),
        files: Vec::new(),
        skipped: Vec::new(),
    };
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ReadError {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk.folder(path.clone(), &meta)?;
        } else {
            walk.files.push((path.clone(), Identity::of(path, &meta)));
        }
    }
    let Walk {
        mut files,
        mut skipped,
        ..
    } = walk;
    files.sort();
    files.dedup_by(|later, first| later.0 == first.0);
    // Each file once: the first path in sorted order that is not itself a link (the file's
    // own name rather than a second one), else the first.
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    let mut taken: HashMap<Identity, usize> = HashMap::new();
    let mut kept: Vec<PathBuf> = Vec::with_capacity(files.len());
    for (path, identity) in files {
        // A file that cannot be read (a dangling link) has no identity: kept, and reported
        // when it is read.
        match identity.map(|id| taken.entry(id)) {
            Some(Entry::Occupied(first)) => {
                let first = &mut kept[*first.get()];
                let path = if is_link(first) && !is_link(&path) {
                    std::mem::replace(first, path)
                } else {
                    path
                };
                skipped.push(Skipped {
                    path,
                    first: first.clone(),
                    folder: false,
                });
            }
            Some(Entry::Vacant(slot)) => {
                slot.insert(kept.len());
                kept.push(path);
            }
            None => kept.push(path),
        }
    }
    kept.sort();
    Ok(Found {
        files: kept,
        skipped,
    })
}

/// What a path leads to: its device and inode (on unix; elsewhere its canonical path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Identity(#[cfg(unix)] (u64, u64), #[cfg(not(unix))] PathBuf);

impl Identity {
    #[cfg(unix)]
    fn of(_path: &Path, meta: &std::fs::Metadata) -> Option<Identity> {
        use std::os::unix::fs::MetadataExt;
        Some(Identity((meta.dev(), meta.ino())))
    }

    #[cfg(not(unix))]
    fn of(path: &Path, _meta: &std::fs::Metadata) -> Option<Identity> {
        std::fs::canonicalize(path).ok().map(Identity)
    }
}

/// One walk over the rules paths.
struct Walk<'a> {
    suffix: &'a str,
    /// Each folder entered, and the path it was entered at.
    folders: HashMap<Identity, PathBuf>,
    files: Vec<(PathBuf, Option<Identity>)>,
    skipped: Vec<Skipped>,
}

impl Walk<'_> {
    /// Enters a folder unless it was entered before.
    fn folder(&mut self, dir: PathBuf, meta: &std::fs::Metadata) -> Result<(), ReadError> {
        if let Some(id) = Identity::of(&dir, meta) {
            match self.folders.entry(id) {
                Entry::Occupied(first) => {
                    // The same path twice (overlapping arguments) is no news.
                    if *first.get() != dir {
                        self.skipped.push(Skipped {
                            path: dir,
                            first: first.get().clone(),
                            folder: true,
                        });
                    }
                    return Ok(());
                }
                Entry::Vacant(slot) => {
                    slot.insert(dir.clone());
                }
            }
        }
        let err = |source| ReadError {
            path: dir.clone(),
            source,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            if !is_hidden(&path) {
                entries.push(path);
            }
        }
        entries.sort(); // the same walk, and the same path kept, on every run
        for path in entries {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => self.folder(path, &meta)?,
                Ok(meta) => {
                    if has_suffix(&path, self.suffix) {
                        let id = Identity::of(&path, &meta);
                        self.files.push((path, id));
                    }
                }
                // A dangling link: reported when read.
                Err(_) => {
                    if has_suffix(&path, self.suffix) {
                        self.files.push((path, None));
                    }
                }
            }
        }
        Ok(())
    }
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

/// The warning for a path the walk did not follow.
fn skipped_link(skipped: &Skipped) -> Diagnostic {
    let place = Arc::new(SourceFile::new(skipped.path.display().to_string(), ""));
    let (path, first) = (skipped.path.display(), skipped.first.display());
    let message = if skipped.is_loop() {
        format!("skipped {path}: a link back to {first}, which it is in (a loop)")
    } else if skipped.folder {
        format!("skipped {path}: it leads to the folder {first}, already read")
    } else {
        format!("skipped {path}: it is the file {first}, already read")
    };
    let mut diagnostic = Diagnostic::new(Code::SkippedLink, &place, Span::default(), "", message)
        .with_help(
            "every folder and file is read once, however many symbolic links lead to it; \
             remove the link to silence this",
        );
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
        (!self.compiled.has_errors()).then(|| {
            RuleSet::new(self.compiled.webhooks.clone(), &self.sources)
                .with_sources(self.compiled.sources.clone())
        })
    }

    /// The rule set, when there were no errors, without copying the webhooks; otherwise the
    /// diagnostics back.
    pub fn into_rule_set(self) -> Result<RuleSet, Vec<Diagnostic>> {
        if self.compiled.has_errors() {
            Err(self.compiled.diagnostics)
        } else {
            Ok(RuleSet::new(self.compiled.webhooks, &self.sources)
                .with_sources(self.compiled.sources))
        }
    }
}

/// The rule files under the rules paths, read but not compiled (see [`read`]).
#[derive(Debug)]
pub struct Read {
    /// The files read, in path order.
    pub sources: Vec<Arc<SourceFile>>,
    /// The files that could not be read.
    pub unreadable: Vec<ReadError>,
    /// The paths the walk did not follow.
    pub skipped: Vec<Skipped>,
    /// Every rule file found, including those that could not be read.
    pub files: usize,
}

impl Read {
    /// Whether this is the same reading as `other`: the same files under the same names with
    /// the same text, every one read, and the same links skipped.
    pub fn same_as(&self, other: &Read) -> bool {
        self.unreadable.is_empty()
            && other.unreadable.is_empty()
            && self.files == other.files
            && self.skipped == other.skipped
            && self.sources.len() == other.sources.len()
            && self.sources.iter().zip(&other.sources).all(|(a, b)| a == b)
    }
}

/// Finds and reads every rule file under `paths`.
pub fn read(paths: &[PathBuf]) -> Result<Read, ReadError> {
    let Found { files, skipped } = find(paths, RULE_SUFFIX)?;
    let (sources, unreadable) = read_sources(&files);
    Ok(Read {
        sources,
        unreadable,
        skipped,
        files: files.len(),
    })
}

/// Reads and compiles every rule file under `paths`.
pub fn load(paths: &[PathBuf], env: &dyn Env) -> Result<Loaded, ReadError> {
    Ok(compile(&read(paths)?, paths, env))
}

/// Compiles rule files read from `paths` with [`read`].
pub fn compile(read: &Read, paths: &[PathBuf], env: &dyn Env) -> Loaded {
    let Read {
        sources,
        unreadable,
        skipped,
        files,
    } = read;
    let mut compiled = lang::compile(sources, env);
    compiled
        .diagnostics
        .extend(unreadable.iter().map(unreadable_file));
    compiled
        .diagnostics
        .extend(skipped.iter().map(skipped_link));
    if *files == 0 {
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
    Loaded {
        compiled,
        sources: sources.clone(),
        files: *files,
    }
}
