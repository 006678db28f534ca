//! The request URL: its `[tokens]`, its shape, plain `http://`.

use crate::lang::ast::StringLit;
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;
use crate::lang::url::{Token, UrlProblem, UrlTemplate};

use crate::event::{ClickField, NumberField};

use super::Checker;

impl Checker<'_> {
    pub(super) fn url(&mut self, url: &StringLit) -> Option<UrlTemplate> {
        match UrlTemplate::parse(&url.value) {
            Ok(t) => {
                if t.is_insecure() && !is_loopback(&url.value) {
                    self.error(
                        Code::InsecureUrl,
                        url.span,
                        "plain http",
                        "this webhook sends over plain `http://`",
                    )
                    .help = Some("use an `https://` endpoint, so event data and secrets are encrypted in transit".into());
                }
                Some(t)
            }
            Err(problems) => {
                for p in problems {
                    match p {
                        UrlProblem::UnknownToken { range, name } => {
                            let names = Token::all_names();
                            let label = suggestion(&name, names.iter().map(String::as_str))
                                .unwrap_or_else(|| "not a token".into());
                            self.error(
                                Code::UnknownToken,
                                url.inner_span(range),
                                label,
                                format!("unknown URL token `[{name}]`"),
                            )
                            .help = Some(tokens_help());
                        }
                        UrlProblem::TokenInHost { range, name } => {
                            self.error(
                                Code::TokenInHost,
                                url.inner_span(range),
                                "a token in the host",
                                format!("`[{name}]` would let event data choose where the request goes"),
                            )
                            .help = Some("tokens may appear in the path, the query or the fragment, never in the scheme, host or port".into());
                        }
                        UrlProblem::Invalid { reason, .. } => {
                            self.error(
                                Code::InvalidUrl,
                                url.span,
                                "invalid URL",
                                reason.to_string(),
                            );
                        }
                    }
                }
                None
            }
        }
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    ["localhost", "127.", "[::1]"]
        .iter()
        .any(|p| rest.starts_with(p))
}

/// The help listing the tokens, from the token and field tables.
fn tokens_help() -> String {
    let (number, click) = (NumberField::ALL[0].name(), ClickField::ALL[0].name());
    let others: Vec<String> = Token::other_names().map(|n| format!("[{n}]")).collect();
    format!(
        "tokens are any field such as [{number}] or [{click}], a click's field such as \
         [first.{click}] or [last.{click}], and {}",
        others.join(", ")
    )
}
