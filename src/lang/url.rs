//! URL templates: `[tokens]` found and checked at compile time, rendered and encoded per event.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::event::{Attribution, ClickField, Event, Field, FieldRef, Value};

/// Everything except RFC 3986's unreserved characters (section 2.3) is encoded, so that a value
/// can never end a path segment, start a new query parameter or a fragment. Encoding the
/// sub-delimiters, `:` and `@` too (a path may hold them as data) costs nothing and keeps one set
/// for the path, the query and the fragment.
const TOKEN_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A `[token]` in a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// Any condition field, `[revenue]`, `[first.utm_source]`.
    Field(FieldRef),
    /// `[transaction]`: the conversion's transaction id.
    Transaction,
    /// `[visitor]`: the visitor's id.
    Visitor,
    /// `[event]`: the event type, such as `conversion` or `event3`.
    Event,
    /// `[timestamp]`: when the event happened, as the tracker sent it.
    Timestamp,
    /// `[webhook]`: the webhook's name.
    Webhook,
    /// `[delivery]`: the delivery's id (also its idempotency key).
    Delivery,
}

/// Names of the tokens that are not fields.
const OTHER_TOKENS: [(&str, Token); 6] = [
    ("transaction", Token::Transaction),
    ("visitor", Token::Visitor),
    ("event", Token::Event),
    ("timestamp", Token::Timestamp),
    ("webhook", Token::Webhook),
    ("delivery", Token::Delivery),
];

impl Token {
    /// Reads a token's name (what stands between the brackets).
    pub fn from_name(name: &str) -> Option<Token> {
        if let Some((_, t)) = OTHER_TOKENS.iter().find(|(n, _)| *n == name) {
            return Some(*t);
        }
        let (attribution, field) = match name.split_once('.') {
            Some(("first", f)) => (Some(Attribution::First), f),
            Some(("last", f)) => (Some(Attribution::Last), f),
            Some(_) => return None,
            None => (None, name),
        };
        FieldRef::resolve(Field::from_name(field)?, attribution).map(Token::Field)
    }

    /// The names of the tokens that are not fields: `transaction`, `visitor`, ...
    pub fn other_names() -> impl Iterator<Item = &'static str> {
        OTHER_TOKENS.iter().map(|(n, _)| *n)
    }

    /// Every token name a user may write, for suggestions.
    pub fn all_names() -> Vec<String> {
        let mut names: Vec<String> = Token::other_names().map(str::to_owned).collect();
        names.extend(Field::all().map(|f| f.name().to_owned()));
        for click in ClickField::ALL {
            names.push(format!("first.{}", click.name()));
            names.push(format!("last.{}", click.name()));
        }
        names
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Field(field) => write!(f, "[{field}]"),
            other => {
                let name = OTHER_TOKENS
                    .iter()
                    .find(|(_, t)| t == other)
                    .map_or("?", |(n, _)| n);
                write!(f, "[{name}]")
            }
        }
    }
}

/// The part of a URL a token lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Scheme, host and port: tokens are not allowed there.
    Authority,
    Path,
    Query,
    Fragment,
}

/// A piece of a URL template.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Text copied as written.
    Literal(String),
    /// A token replaced by its encoded value.
    Token(Token, Part),
}

/// A problem found in a URL template; `range` is a byte range of the URL string.
#[derive(Debug, Clone, PartialEq)]
pub enum UrlProblem {
    /// `[something]` that names no token.
    UnknownToken {
        range: std::ops::Range<usize>,
        name: String,
    },
    /// A token where the host or port goes.
    TokenInHost {
        range: std::ops::Range<usize>,
        name: String,
    },
    /// The URL does not parse, or is not http(s).
    Invalid {
        range: std::ops::Range<usize>,
        reason: InvalidUrl,
    },
}

/// Why a URL's shape is wrong (checked with its tokens replaced by harmless values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    /// Not `https://` or `http://`.
    #[error("a webhook URL must start with `https://` (or `http://`)")]
    Scheme,
    /// Whitespace or control characters.
    #[error("a URL cannot contain spaces or control characters")]
    Whitespace,
    /// The `http` crate does not parse it; its reason.
    #[error("not a valid URL: {0}")]
    Syntax(String),
    /// Nothing between `://` and the path.
    #[error("the URL has no host")]
    NoHost,
}

/// The values a template reads besides the event's fields.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The event being delivered.
    pub event: &'a Event,
    /// The webhook's name.
    pub webhook: &'a str,
    /// The delivery's id.
    pub delivery: &'a str,
}

/// A parsed URL template.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlTemplate {
    /// The template as written.
    pub source: String,
    /// Literal text and tokens, in order.
    pub segments: Vec<Segment>,
}

impl UrlTemplate {
    /// Parses a URL template, returning every problem found.
    pub fn parse(url: &str) -> Result<UrlTemplate, Vec<UrlProblem>> {
        let mut problems = Vec::new();
        let mut segments = Vec::new();
        let authority_end = authority_end(url);
        let mut literal = String::new();
        let mut rest_start = 0;
        let mut i = 0;
        while let Some(open) = url[i..].find('[').map(|o| o + i) {
            let Some(close) = url[open..].find(']').map(|c| c + open) else {
                break;
            };
            let name = &url[open + 1..close];
            let range = open..close + 1;
            let part = part_at(url, open, authority_end);
            match Token::from_name(name) {
                Some(_) if part == Part::Authority => problems.push(UrlProblem::TokenInHost {
                    range,
                    name: name.to_owned(),
                }),
                Some(token) => {
                    literal.push_str(&url[rest_start..open]);
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Token(token, part));
                    rest_start = close + 1;
                }
                // Brackets in the host are an IPv6 address, not a token.
                None if part == Part::Authority => {}
                None => problems.push(UrlProblem::UnknownToken {
                    range,
                    name: name.to_owned(),
                }),
            }
            i = close + 1;
        }
        literal.push_str(&url[rest_start..]);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        if let Err(reason) = validate(url) {
            problems.push(UrlProblem::Invalid {
                range: 0..url.len(),
                reason,
            });
        }
        if problems.is_empty() {
            Ok(UrlTemplate {
                source: url.to_owned(),
                segments,
            })
        } else {
            Err(problems)
        }
    }

    /// Whether the URL is plain `http://`.
    pub fn is_insecure(&self) -> bool {
        self.source
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    }

    /// The tokens the template uses.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Token(t, _) => Some(*t),
            Segment::Literal(_) => None,
        })
    }

    /// The URL for one delivery, each value percent-encoded; missing values render empty, and so
    /// does a path segment that tokens made into `.` or `..` (see [`blank_dot_segment`]).
    pub fn render(&self, ctx: &RenderContext<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        // Where the path segment being written starts in `out`, once a token wrote into it.
        let mut tokened_segment: Option<usize> = None;
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => match tokened_segment {
                    Some(start) => match text.find(['/', '?', '#']) {
                        Some(end) => {
                            out.push_str(&text[..end]);
                            blank_dot_segment(&mut out, start);
                            tokened_segment = None;
                            out.push_str(&text[end..]);
                        }
                        None => out.push_str(text),
                    },
                    None => out.push_str(text),
                },
                Segment::Token(token, part) => {
                    if *part == Part::Path && tokened_segment.is_none() {
                        // An encoded value holds no `/`: the segment began after the last one.
                        tokened_segment = Some(out.rfind('/').map_or(0, |i| i + 1));
                    }
                    let value = token_value(*token, ctx);
                    out.extend(utf8_percent_encode(&value, TOKEN_VALUE));
                }
            }
        }
        if let Some(start) = tokened_segment {
            blank_dot_segment(&mut out, start);
        }
        out
    }
}

/// A token's raw value for one delivery: borrowed from the event or the context where it is
/// text there already.
pub fn token_value<'a>(token: Token, ctx: &RenderContext<'a>) -> Cow<'a, str> {
    let e = ctx.event;
    let text = |value: &'a Option<String>| Cow::Borrowed(value.as_deref().unwrap_or_default());
    match token {
        Token::Field(f) => match e.value(f) {
            Value::Text(value) => Cow::Borrowed(value),
            other => Cow::Owned(other.render()),
        },
        Token::Transaction => text(&e.transaction),
        Token::Visitor => text(&e.visitor),
        Token::Event => Cow::Owned(e.kind.wire_name()),
        Token::Timestamp => text(&e.occurred_at),
        Token::Webhook => Cow::Borrowed(ctx.webhook),
        Token::Delivery => Cow::Borrowed(ctx.delivery),
    }
}

/// Empties the path segment from `start` to the end of `out` when it is `.` or `..`.
///
/// `-._~` stay as they are in a token's value, so values such as `..` (or `.` next to `.`)
/// would make a dot segment, which every URL resolver removes together with the segment before
/// it (`/p/../end` is `/end`). Percent-encoding the dots does not prevent that: WHATWG URL
/// parsers (browsers, Node, Rust's `url`) treat `%2e` and `%2e%2e` as dot segments, and RFC 3986
/// normalisation (section 6.2.2) decodes them before removing dot segments, as proxies such as
/// nginx and Envoy do. No spelling of `..` is safe in a path, so the segment renders empty,
/// like a missing value: the path keeps its segments, and a receiver sees no value.
fn blank_dot_segment(out: &mut String, start: usize) {
    if matches!(&out[start..], "." | "..") {
        out.truncate(start);
    }
}

/// Where scheme, host and port end: the first `/`, `?` or `#` after `://`.
fn authority_end(url: &str) -> usize {
    let start = url.find("://").map_or(0, |i| i + 3);
    url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| i + start)
}

fn part_at(url: &str, pos: usize, authority_end: usize) -> Part {
    if pos < authority_end {
        return Part::Authority;
    }
    let before = &url[authority_end..pos];
    if before.contains('#') {
        Part::Fragment
    } else if before.contains('?') {
        Part::Query
    } else {
        Part::Path
    }
}

/// Checks the URL's shape with every token replaced by a harmless value.
fn validate(url: &str) -> Result<(), InvalidUrl> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(InvalidUrl::Scheme);
    }
    let spaced = if url.is_ascii() {
        // The same test byte by byte: ASCII's spaces and controls are the bytes up to ` `, and DEL.
        url.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        url.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if spaced {
        return Err(InvalidUrl::Whitespace);
    }
    let mut probe = String::with_capacity(url.len());
    let mut rest = url;
    let auth_end = authority_end(url);
    let mut consumed = 0;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        probe.push_str(&rest[..open]);
        if consumed + open < auth_end {
            probe.push_str(&rest[open..open + close + 1]);
        } else {
            probe.push('x');
        }
        consumed += open + close + 1;
        rest = &rest[open + close + 1..];
    }
    probe.push_str(rest);
    let uri: http::Uri = probe
        .parse()
        .map_err(|e: http::uri::InvalidUri| InvalidUrl::Syntax(e.to_string()))?;
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(InvalidUrl::NoHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn ctx(event: &Event) -> RenderContext<'_> {
        RenderContext {
            event,
            webhook: "w",
            delivery: "d-1",
        }
    }

    #[test]
    fn renders_tokens_percent_encoded() {
        let t = UrlTemplate::parse(
            "https://x.test/p/[visitor]?amount=[revenue]&txn=[transaction]#[webhook]",
        )
        .unwrap();
        let mut e = Event::new(EventKind::Conversion);
        e.transaction = Some("a&b=c d".into());
        e.visitor = Some("v/1?".into());
        e.numbers[0] = Some(49.5);
        assert_eq!(
            t.render(&ctx(&e)),
            "https://x.test/p/v%2F1%3F?amount=49.5&txn=a%26b%3Dc%20d#w"
        );
    }

    #[test]
    fn dot_segments_from_tokens_render_empty() {
        let t = UrlTemplate::parse("https://x.test/p/[utm_source]/end?s=[utm_source]#[utm_source]")
            .unwrap();
        let mut e = Event::new(EventKind::Conversion);
        for (value, path) in [("..", "/p//end"), (".", "/p//end"), ("...", "/p/.../end")] {
            e.last_click.set(ClickField::UtmSource, Some(value.into()));
            let url = t.render(&ctx(&e));
            assert_eq!(
                url,
                format!("https://x.test{path}?s={value}#{value}"),
                "only the path segment is blanked"
            );
        }
        // Two tokens, or a token and literal text, that together make a dot segment.
        let t =
            UrlTemplate::parse("https://x.test/p/[utm_source][utm_medium]/.[utm_term]").unwrap();
        e.last_click.set(ClickField::UtmSource, Some(".".into()));
        e.last_click.set(ClickField::UtmMedium, Some(".".into()));
        e.last_click.set(ClickField::UtmTerm, Some(".".into()));
        assert_eq!(t.render(&ctx(&e)), "https://x.test/p//");
        // A dot segment the author wrote is theirs; `%2E` in a value is encoded as text.
        let t = UrlTemplate::parse("https://x.test/a/../[utm_source]").unwrap();
        e.last_click
            .set(ClickField::UtmSource, Some("%2E%2E".into()));
        assert_eq!(t.render(&ctx(&e)), "https://x.test/a/../%252E%252E");
    }

    #[test]
    fn the_encode_set_keeps_only_unreserved_characters() {
        // RFC 3986 section 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~" are the only characters
        // that mean the same everywhere in a URL.
        for b in 0u8..=127 {
            let c = char::from(b);
            let kept = c.is_ascii_alphanumeric() || "-._~".contains(c);
            let encoded: String = utf8_percent_encode(&c.to_string(), TOKEN_VALUE).collect();
            assert_eq!(encoded == c.to_string(), kept, "{c:?} -> {encoded}");
        }
    }

    #[test]
    fn missing_values_render_empty() {
        let t = UrlTemplate::parse("https://x.test/?s=[first.utm_source]&c=[country]").unwrap();
        let e = Event::new(EventKind::Refund);
        assert_eq!(t.render(&ctx(&e)), "https://x.test/?s=&c=");
    }

    #[test]
    fn finds_problems() {
        let errs = UrlTemplate::parse("https://[webhook].x.test/?a=[revenu]").unwrap_err();
        assert!(matches!(errs[0], UrlProblem::TokenInHost { .. }));
        assert!(matches!(&errs[1], UrlProblem::UnknownToken { name, .. } if name == "revenu"));
        let invalid = |url| match UrlTemplate::parse(url).unwrap_err().pop() {
            Some(UrlProblem::Invalid { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(invalid("ftp://x.test/"), InvalidUrl::Scheme);
        assert_eq!(invalid("https://x.test/a b"), InvalidUrl::Whitespace);
        assert!(UrlTemplate::parse("https:///nohost").is_err());
        assert!(UrlTemplate::parse("https://[::1]:8080/?a=[revenue]").is_ok());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const TEMPLATES: [&str; 5] = [
            "https://x.test/p/[utm_source]/end",
            "https://x.test/[utm_source][utm_medium]/.[transaction]?a=[visitor]#[utm_source]",
            "https://x.test:8443/[visitor]",
            "http://127.0.0.1/a/[transaction]/[utm_medium]x/?q=[utm_source]&r=[transaction]",
            "https://x.test/[utm_source]?[utm_medium]",
        ];

        /// Values that look like URL syntax, and any text at all.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(".".to_owned()),
                Just("..".to_owned()),
                "[./%?#\\\\:@a2Ee]{0,6}",
                any::<String>(),
            ]
        }

        fn shape(url: &str) -> (String, String, usize) {
            let uri: hyper::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let segments = uri.path().split('/').count();
            (
                uri.scheme_str().unwrap_or_default().to_owned(),
                authority,
                segments,
            )
        }

        proptest! {
            #[test]
            fn token_values_never_change_the_urls_structure(
                template in 0..TEMPLATES.len(),
                values in proptest::collection::vec(value(), 4),
            ) {
                let source = TEMPLATES[template];
                let t = UrlTemplate::parse(source).unwrap();
                let mut e = Event::new(EventKind::Conversion);
                e.last_click.set(ClickField::UtmSource, Some(values[0].clone()));
                e.last_click.set(ClickField::UtmMedium, Some(values[1].clone()));
                e.transaction = Some(values[2].clone());
                e.visitor = Some(values[3].clone());
                let url = t.render(&ctx(&e));
                let probe = source.replace(['[', ']'], "");
                prop_assert_eq!(shape(&url), shape(&probe), "{}", url);
                let uri: hyper::Uri = url.parse().unwrap();
                for segment in uri.path().split('/').skip(1) {
                    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
                    prop_assert!(
                        !matches!(decoded.as_str(), "." | ".."),
                        "dot segment {:?} in {}", segment, url
                    );
                }
            }
        }
    }
}
