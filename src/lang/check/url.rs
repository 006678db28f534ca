//! The request URL: its `[tokens]`, its shape, plain `http://`.

use crate::lang::ast::StringLit;
use crate::lang::codes::Code;
use crate::lang::diagnostic::suggestion;
use crate::lang::url::{Token, UrlProblem, UrlTemplate};

use crate::event::{ClickField, NumberField};

use super::Checker;
use super::headers::is_credential_name;

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
                for (name, range) in literal_credentials(&url.value) {
                    self.error(
                        Code::CredentialLiteral,
                        url.inner_span(range),
                        "a credential written in the file",
                        format!("query parameter `{name}` holds a credential written as a literal"),
                    )
                    .help = Some(
                        "rule files live in version control and URLs end up in logs; a URL \
                         cannot read `env(...)`: if the receiver accepts the credential in a \
                         header, send it with `header \"NAME\" = env(\"VAR\")`; otherwise \
                         accept the risk"
                            .into(),
                    );
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

/// The query parameters whose name is a credential's (`api_key`, `token`, `sig`, ...) and whose
/// value is written out: each name and the byte range of its value. A value with a `[token]`
/// comes from the event, not from the file.
fn literal_credentials(url: &str) -> Vec<(&str, std::ops::Range<usize>)> {
    let Some(start) = url.find('?').map(|q| q + 1) else {
        return Vec::new();
    };
    let end = url[start..].find('#').map_or(url.len(), |f| f + start);
    let mut found = Vec::new();
    let mut offset = start;
    for pair in url[start..end].split('&') {
        if let Some((name, value)) = pair.split_once('=') {
            let lower = name.to_ascii_lowercase();
            let credential = matches!(lower.as_str(), "key" | "sig" | "pass" | "pwd" | "auth")
                || is_credential_name(&lower);
            if credential && !value.is_empty() && !value.contains('[') {
                let value_start = offset + name.len() + 1;
                found.push((name, value_start..value_start + value.len()));
            }
        }
        offset += pair.len() + 1;
    }
    found
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

#[cfg(test)]
mod tests {
    use super::literal_credentials;

    #[test]
    fn literal_credentials_in_the_query() {
        let url =
            "https://x.test/p?api_key=abc&v=1&token=[visitor]&sig=f00&access_token=&key=k#sig=x";
        let found: Vec<_> = literal_credentials(url)
            .into_iter()
            .map(|(name, range)| (name, &url[range]))
            .collect();
        assert_eq!(found, [("api_key", "abc"), ("sig", "f00"), ("key", "k")]);
        for quiet in [
            "https://x.test/track?amount=[revenue]&txn=[transaction]",
            "https://x.test/collect?v=1&t=transaction&ti=[transaction]",
            "https://x.test/?monkey=1&keyword=shoes&tokens=3",
            "https://x.test/api_key=abc",
        ] {
            assert!(literal_credentials(quiet).is_empty(), "{quiet}");
        }
    }
}
