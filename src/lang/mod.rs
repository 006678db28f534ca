//! The rule language: grammar, syntax tree, checker, compiler and diagnostics. Pure, no I/O.

pub mod ast;
pub mod grammar;
pub mod parse;
