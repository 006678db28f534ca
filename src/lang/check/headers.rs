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
