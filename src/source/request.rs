//! An inbound postback as a source reads it: method, query, headers and body, with the query,
//! form and JSON parts decoded on first use.

use std::sync::OnceLock;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value as Json;

use crate::event::strict;

/// One request on a source's route.
#[derive(Debug, Default)]
pub struct Request {
    /// `GET` or `POST` (any other is refused before mapping).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    query_pairs: OnceLock<Pairs>,
    form_pairs: OnceLock<Pairs>,
    json: OnceLock<Result<Json, String>>,
}

/// Why a raw request text or URL could not be read (for `whc explain` and the cases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestTextError(pub String);

impl Request {
    /// A request from its parts.
    pub fn new(method: &str, path_and_query: &str, headers: HeaderMap, body: Bytes) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body,
            ..Request::default()
        }
    }

    /// A GET request for a URL as a tracker would call it (`https://host/in/x?cid=1` or
    /// `/in/x?cid=1`); the scheme and host are ignored.
    pub fn from_url(url: &str) -> Request {
        let rest = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
        let rest = rest.split('#').next().unwrap_or(rest);
        Request::new("GET", rest, HeaderMap::new(), Bytes::new())
    }

    /// A raw HTTP/1 request as text: `METHOD TARGET [HTTP/1.1]`, header lines, a blank line,
    /// the body.
    pub fn from_http_text(text: &str) -> Result<Request, RequestTextError> {
        let text = text.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
        let mut lines = head.lines();
        let first = lines
            .next()
            .ok_or_else(|| RequestTextError("the request is empty".into()))?;
        let mut words = first.split_whitespace();
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            return Err(RequestTextError(format!(
                "the first line must be `METHOD /path?query`, found {first:?}"
            )));
        };
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                RequestTextError(format!(
                    "a header line must be `Name: value`, found {line:?}"
                ))
            })?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| RequestTextError(format!("{:?} is not a header name", name.trim())))?;
            let value = http::HeaderValue::from_str(value.trim())
                .map_err(|_| RequestTextError(format!("the value of {name} is not valid")))?;
            headers.append(name, value);
        }
        let url = Request::from_url(target);
        let target = if url.query.is_empty() {
            url.path
        } else {
            format!("{}?{}", url.path, url.query)
        };
        Ok(Request::new(
            method,
            &target,
            headers,
            Bytes::from(body.to_owned()),
        ))
    }

    /// Every value of a query parameter, in the order sent.
    pub fn query_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query_pairs
            .get_or_init(|| Pairs::decode(&self.query))
            .values(name)
    }

    /// Every value of a form field, in the order sent (none when the body is not a form).
    pub fn form_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.form_pairs
            .get_or_init(|| {
                if self.is_form() {
                    Pairs::decode(&String::from_utf8_lossy(&self.body))
                } else {
                    Pairs::default()
                }
            })
            .values(name)
    }

    /// The JSON body, parsed strictly (a repeated key is an error); `Ok(Null)` for no body or a
    /// body that is a form.
    pub fn json(&self) -> Result<&Json, &str> {
        self.json
            .get_or_init(|| {
                if self.body.iter().all(u8::is_ascii_whitespace) || self.is_form() {
                    return Ok(Json::Null);
                }
                strict::from_slice(&self.body).map_err(|e| match e {
                    strict::StrictJsonError::Syntax(e) => format!("not valid JSON ({e})"),
                    strict::StrictJsonError::DuplicateKey(path) => format!(
                        "{} appears twice in the same object; send each key once",
                        strict::dotted(&path)
                    ),
                })
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Whether the body is `application/x-www-form-urlencoded`.
    fn is_form(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
    }
}

/// `a=1&b=x+y` decoded once (`+` as a space, `%XX` decoded, invalid UTF-8 replaced) into one
/// text, every name and value a span of it, each name with a short hash: a few allocations
/// per request, not two per pair, and a field's lookup compares integers, not names
/// (measured with `benches/sources-callgrind.sh`).
#[derive(Debug, Default)]
struct Pairs {
    text: String,
    /// Per pair, in the order sent: its name's hash, where its name starts, where its value
    /// starts, where its value ends.
    spans: Vec<(u64, [usize; 3])>,
}

impl Pairs {
    fn decode(query: &str) -> Pairs {
        let mut pairs = Pairs {
            text: String::with_capacity(query.len()),
            spans: Vec::with_capacity(query.bytes().filter(|&b| b == b'&').count() + 1),
        };
        // One pass over the bytes: where each pair's `=` is, and whether its name or value
        // needs decoding at all.
        let (mut start, mut equals, mut escaped) = (0, None, [false; 2]);
        for (i, byte) in query.bytes().chain([b'&']).enumerate() {
            match byte {
                b'&' => {
                    if i > start {
                        let (name, value) = match equals {
                            Some(e) => (&query[start..e], &query[e + 1..i]),
                            None => (&query[start..i], ""),
                        };
                        pairs.push(name, value, escaped);
                    }
                    (start, equals, escaped) = (i + 1, None, [false; 2]);
                }
                b'=' if equals.is_none() => equals = Some(i),
                b'+' | b'%' => escaped[usize::from(equals.is_some())] = true,
                _ => {}
            }
        }
        pairs
    }

    fn push(&mut self, name: &str, value: &str, escaped: [bool; 2]) {
        let start = self.text.len();
        decode_into(name, escaped[0], &mut self.text);
        let value_start = self.text.len();
        decode_into(value, escaped[1], &mut self.text);
        let hash = name_hash(&self.text[start..value_start]);
        self.spans
            .push((hash, [start, value_start, self.text.len()]));
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let hash = name_hash(name);
        self.spans
            .iter()
            .filter(move |(h, [start, value, _])| *h == hash && &self.text[*start..*value] == name)
            .map(|(_, [_, value, end])| &self.text[*value..*end])
    }
}

/// FNV-1a: names are short, and a collision only costs a comparison of the names.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Appends `text` decoded: `+` as a space, `%XX` as its byte (a `%` not followed by two hex
/// digits stays as sent), invalid UTF-8 replaced. Copied as it is when it holds neither
/// (`escaped` false), as trackers' values mostly do.
fn decode_into(text: &str, escaped: bool, out: &mut String) {
    if !escaped {
        out.push_str(text);
        return;
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'+' => b' ',
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    i += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            other => other,
        };
        decoded.push(byte);
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&decoded));
}

fn hex(digit: &u8) -> Option<u8> {
    (*digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_get_with_its_query_decoded() {
        let r = Request::from_url("https://whc.example/in/voluum?cid=a%20b&payout=1.5&x=c+d#frag");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/in/voluum");
        assert_eq!(r.query_values("cid").collect::<Vec<_>>(), ["a b"]);
        assert_eq!(r.query_values("x").collect::<Vec<_>>(), ["c d"]);
        assert_eq!(r.query_values("none").count(), 0);
    }

    #[test]
    fn every_pair_is_decoded_and_found_in_order() {
        let r = Request::from_url("/in/x?a=1&&b=%zz&a=2&c=x%3Dy=z&%62=4&d&e=%E2%82%AC+%FF");
        let all = |name| r.query_values(name).collect::<Vec<_>>();
        assert_eq!(all("a"), ["1", "2"]);
        // A name percent-encoded is the same name; a broken escape stays as sent.
        assert_eq!(all("b"), ["%zz", "4"]);
        // Only the first `=` splits; a name alone has an empty value.
        assert_eq!(all("c"), ["x=y=z"]);
        assert_eq!(all("d"), [""]);
        // UTF-8 decoded; an invalid byte replaced, not refused.
        assert_eq!(all("e"), ["\u{20ac} \u{fffd}"]);
        assert_eq!(all(""), Vec::<&str>::new());
        assert_eq!(Request::from_url("/in/x").query_values("a").count(), 0);
    }

    #[test]
    fn a_raw_request_has_headers_and_a_body() {
        let r = Request::from_http_text(
            "POST /in/x?t=1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ncid=7&sum=2",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.query_values("t").collect::<Vec<_>>(), ["1"]);
        assert_eq!(r.form_values("cid").collect::<Vec<_>>(), ["7"]);
        assert_eq!(r.json().unwrap(), &Json::Null);
        let j = Request::from_http_text("POST /in/x\n\n{\"a\":1,\"a\":2}").unwrap();
        assert!(j.json().unwrap_err().contains("twice"));
        assert!(Request::from_http_text("").is_err());
        assert!(Request::from_http_text("POST /x\nbad header\n\n").is_err());
    }
}
