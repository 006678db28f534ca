//! The rule language's integration tests, in one binary: semantics, diagnostics, the CLI, and
//! robustness against arbitrary input.

mod authoring;
mod cli;
mod diagnostics;
mod fast_paths;
mod fmt;
mod fuzz_harness;
mod fuzz_replay;
mod never_panics;
mod semantics;
mod support;
