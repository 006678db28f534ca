//! Delivery settings: `timeout` durations and `retries` counts.

use std::time::Duration;

use crate::lang::ast::Spanned;
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;

use super::Checker;

/// The longest per-attempt deadline a rule may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The most retries a rule may ask for.
pub const MAX_RETRIES: u32 = 100;

impl Checker<'_> {
    pub(super) fn duration(&mut self, text: &Spanned<String>) -> Option<Duration> {
        let digits_end = text
            .node
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.node.len());
        let (digits, unit) = text.node.split_at(digits_end);
        let n: u64 = digits.parse().unwrap_or(u64::MAX);
        let d = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => n.checked_mul(1000).map(Duration::from_millis),
            "m" => n.checked_mul(60_000).map(Duration::from_millis),
            other => {
                let label = match other {
                    "" => "no unit".to_owned(),
                    u => suggestion(u, ["ms", "s", "m"])
                        .unwrap_or_else(|| format!("unknown unit `{u}`")),
                };
                self.error(
                    Code::InvalidDuration,
                    text.span,
                    label,
                    format!("`{}` is not a duration", text.node),
                )
                .help = Some("write a number with a unit: `500ms`, `5s` or `1m`".into());
                return None;
            }
        };
        match d {
            Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Some(d),
            _ => {
                self.error(
                    Code::InvalidDuration,
                    text.span,
                    "out of range",
                    "a timeout must be between 1ms and 60s",
                )
                .help = Some(
                    "the product's advice is that endpoints answer within 5s, the default".into(),
                );
                None
            }
        }
    }

    pub(super) fn retries(&mut self, text: &Spanned<String>) -> Option<u32> {
        match text.node.parse::<u32>() {
            Ok(n) if n <= MAX_RETRIES => Some(n),
            _ => {
                self.error(
                    Code::InvalidRetries,
                    text.span,
                    "too many",
                    format!("`retries` is at most {MAX_RETRIES}"),
                );
                None
            }
        }
    }
}
