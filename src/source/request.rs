//! An inbound postback as a source reads it: method, query, headers and body, with the query,
//! form and JSON parts decoded on first use.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use http::HeaderMap;
use percent_encoding::percent_decode_str;
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
    query_pairs: OnceLock<Vec<(String, String)>>,
    form_pairs: OnceLock<Vec<(String, String)>>,
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

    /// Every value of a query parameter.
    pub fn query_values(&self, name: &str) -> Vec<&str> {
        values(
            self.query_pairs.get_or_init(|| decode_pairs(&self.query)),
            name,
        )
    }

    /// Every value of a form field (an empty list when the body is not a form).
    pub fn form_values(&self, name: &str) -> Vec<&str> {
        let pairs = self.form_pairs.get_or_init(|| {
            if self.is_form() {
                decode_pairs(&String::from_utf8_lossy(&self.body))
            } else {
                Vec::new()
            }
        });
        values(pairs, name)
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

fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `a=1&b=x+y` into pairs, `+` as a space and `%XX` decoded (invalid UTF-8 replaced).
fn decode_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let spaced: Cow<str> = if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_get_with_its_query_decoded() {
        let r = Request::from_url("https://whc.example/in/voluum?cid=a%20b&payout=1.5&x=c+d#frag");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/in/voluum");
        assert_eq!(r.query_values("cid"), ["a b"]);
        assert_eq!(r.query_values("x"), ["c d"]);
        assert!(r.query_values("none").is_empty());
    }

    #[test]
    fn a_raw_request_has_headers_and_a_body() {
        let r = Request::from_http_text(
            "POST /in/x?t=1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ncid=7&sum=2",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.query_values("t"), ["1"]);
        assert_eq!(r.form_values("cid"), ["7"]);
        assert_eq!(r.json().unwrap(), &Json::Null);
        let j = Request::from_http_text("POST /in/x\n\n{\"a\":1,\"a\":2}").unwrap();
        assert!(j.json().unwrap_err().contains("twice"));
        assert!(Request::from_http_text("").is_err());
        assert!(Request::from_http_text("POST /x\nbad header\n\n").is_err());
    }
}
