//! Headers and the signing secret: names, values, reserved names, environment variables.

use crate::lang::ast::{Span, StringLit, ValueSource};
use crate::lang::codes::Code;
use crate::lang::headers::{reserved, reserved_names};
use crate::lang::webhook::{Header, Secretish};

use super::Checker;

impl Checker<'_> {
    pub(super) fn header(&mut self, name: &StringLit, value: &ValueSource) -> Option<Header> {
        let mut ok = true;
        if http::HeaderName::from_bytes(name.value.as_bytes()).is_err() {
            self.error(
                Code::InvalidHeader,
                name.span,
                "not a valid header name",
                format!("`{}` is not a valid HTTP header name", name.value),
            )
            .help = Some("header names are letters, digits and `-`".into());
            ok = false;
        } else if let Some(header) = reserved(&name.value) {
            self.error(
                Code::InvalidHeader,
                name.span,
                "set by whc",
                format!("whc sets `{}` itself", name.value),
            )
            .help = Some(format!(
                "remove this header: {}; whc sets these itself: {}",
                header.why,
                reserved_names()
            ));
            ok = false;
        }
        let value = match value {
            ValueSource::Literal(v) => {
                if http::HeaderValue::from_str(&v.value).is_err() {
                    self.error(
                        Code::InvalidHeader,
                        v.span,
                        "not a valid header value",
                        "a header value cannot hold line breaks or control characters",
                    );
                    ok = false;
                }
                if !v.value.is_empty()
                    && (is_credential_header(&name.value) || is_credential_value(&v.value))
                {
                    self.error(
                        Code::CredentialLiteral,
                        v.span,
                        "a credential written in the file",
                        format!(
                            "header `{}` holds a credential written as a literal",
                            name.value
                        ),
                    )
                    .help = Some(format!(
                        "rule files live in version control; put the value in an environment \
                         variable and write `header \"{}\" = env(\"NAME\")`",
                        name.value
                    ));
                }
                Secretish::Literal(v.value.clone())
            }
            ValueSource::Env(var) => self.env_value(var, "the header will be left out"),
        };
        ok.then(|| Header {
            name: name.value.clone(),
            value,
        })
    }

    pub(super) fn env_value(&mut self, var: &StringLit, consequence: &str) -> Secretish {
        let value = self.env.var(&var.value);
        if value.is_none() {
            self.error(
                Code::EnvUnset,
                var.span,
                "not set",
                format!("environment variable `{}` is not set", var.value),
            )
            .help = Some(format!("set it where whc runs; until then {consequence}"));
        }
        Secretish::Env {
            var: var.value.clone(),
            value,
        }
    }

    pub(super) fn secret(&mut self, value: &ValueSource, span: Span) -> Option<Secretish> {
        match value {
            ValueSource::Env(var) => Some(self.env_value(
                var,
                "deliveries of this webhook fail rather than go out unsigned",
            )),
            ValueSource::Literal(_) => {
                self.error(
                    Code::SecretLiteral,
                    span,
                    "a secret written in the file",
                    "a signing secret cannot be written in a rule file",
                )
                .help = Some("rule files live in version control; put the secret in an environment variable and write `secret env(\"NAME\")`".into());
                None
            }
        }
    }
}

/// Words that make a header or query parameter name a credential's (`X-Api-Key`,
/// `access_token`, `client_secret`); names are split into words at `-` and `_`.
const CREDENTIAL_WORDS: [&str; 9] = [
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "credential",
    "credentials",
    "signature",
    "authorization",
];

/// Whether a header with this name carries a credential: `Authorization`, `Cookie`,
/// `X-Api-Key`, `Api-Key`, `X-Auth-Token`, `*-Token`, `*-Secret`, ...
pub(super) fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "cookie" | "proxy-authorization" | "x-auth" | "x-key"
    ) || is_credential_name(&name)
}

/// Whether a (lower-case) name is a credential's by its words: one of [`CREDENTIAL_WORDS`], or
/// `api`, `access`, `private`, `secret` or `auth` followed by `key` (`api_key`, `X-Access-Key`).
pub(super) fn is_credential_name(lower: &str) -> bool {
    let words: Vec<&str> = lower.split(['-', '_']).collect();
    words.iter().any(|w| CREDENTIAL_WORDS.contains(w))
        || words.windows(2).any(|pair| {
            matches!(pair[0], "api" | "access" | "private" | "secret" | "auth") && pair[1] == "key"
        })
}

/// Whether a header value reads as a credential whatever the header: an HTTP authentication
/// scheme and its parameter (`Bearer abc...`, `Basic dXNlcjpwYXNz`, `Token abc`).
pub(super) fn is_credential_value(value: &str) -> bool {
    let Some((scheme, rest)) = value.trim_start().split_once(' ') else {
        return false;
    };
    ["bearer", "basic", "token", "digest"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        && !rest.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_header_names() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "X-Api-Key",
            "Api-Key",
            "X-API-KEY",
            "ApiKey",
            "X-Auth-Token",
            "X-Shopify-Access-Token",
            "X-Client-Secret",
            "X-Access-Key",
            "X-Webhook-Signature",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        for name in [
            "X-Source",
            "Accept",
            "X-Request-Id",
            "X-Campaign",
            "X-Keyword",
            "X-Tokenizer-Mode",
            "X-Monkey",
        ] {
            assert!(!is_credential_header(name), "{name}");
        }
    }

    #[test]
    fn credential_header_values() {
        for value in ["Bearer abc.def", "basic dXNlcjpwYXNz", "Token 123"] {
            assert!(is_credential_value(value), "{value}");
        }
        for value in [
            "Bearer",
            "Bearer ",
            "whc",
            "application/json",
            "Tokenised text",
        ] {
            assert!(!is_credential_value(value), "{value}");
        }
    }
}
