//! Helpers shared by the integration tests: temporary rule directories and the real binary.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// A temporary directory holding the given files (parent folders created).
pub fn dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The real `whc` binary with arguments, run in `dir`, colour off.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whc"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    cmd
}

/// Runs `whc` in `dir`, colour off.
pub fn whc(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}
