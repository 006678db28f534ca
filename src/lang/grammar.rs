//! The pest parser generated from `grammar/rules.pest`.

/// The generated parser; its `Rule` enum has one variant per grammar rule.
#[derive(pest_derive::Parser)]
#[grammar = "grammar/rules.pest"]
pub struct RuleParser;
