//! Event posts: reading a bounded body and parsing one event or an array of them.

use std::collections::VecDeque;
use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Value as Json, json};

use crate::event::{Event, describe};

/// Why a post was refused, in the form the client gets back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", if key.is_empty() { "body" } else { key.as_str() },
    index.map(|i| format!(" (event {i})")).unwrap_or_default())]
pub struct IngestError {
    /// The HTTP status to answer: 400, or 413 for a body over the limit.
    pub status: u16,
    /// The JSON key at fault, such as `revenue` or `firstClick.country`; empty for the body.
    pub key: String,
    /// In an array, the position of the event at fault, from 0.
    pub index: Option<usize>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl IngestError {
    fn bad(key: impl Into<String>, index: Option<usize>, message: impl Into<String>) -> Self {
        IngestError {
            status: 400,
            key: key.into(),
            index,
            message: message.into(),
        }
    }

    /// The answer's body: `{"error": "...", "key": "revenue", "index": 2}` (no `index` for a
    /// single event).
    pub fn to_json(&self) -> Json {
        let mut body = json!({ "error": self.message, "key": self.key });
        if let Some(i) = self.index {
            body["index"] = json!(i);
        }
        body
    }
}

/// Parses a post's body: one event object, or a non-empty JSON array of them. All or nothing:
/// the first bad event rejects the whole post, named by its index.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, IngestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::bad("", None, "the body is empty"));
    }
    let value: Json = serde_json::from_slice(body)
        .map_err(|e| IngestError::bad("", None, format!("not valid JSON: {e}")))?;
    match value {
        Json::Array(items) if items.is_empty() => Err(IngestError::bad(
            "",
            None,
            "the array holds no events; post at least one",
        )),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Event::from_json(item).map_err(|e| IngestError::bad(e.key, Some(i), e.message))
            })
            .collect(),
        Json::Object(_) => Event::from_json(&value)
            .map(|event| vec![event])
            .map_err(|e| IngestError::bad(e.key, None, e.message)),
        other => Err(IngestError::bad(
            "",
            None,
            format!(
                "expected an event object or an array of events, found {}",
                describe(&other)
            ),
        )),
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the limit (answer 413); reading stopped there.
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection failed or the client stopped sending.
    #[error("cannot read the body: {0}")]
    Read(Box<dyn Error + Send + Sync>),
}

impl BodyError {
    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            BodyError::Read(_) => 400,
        }
    }
}

impl From<BodyError> for IngestError {
    fn from(e: BodyError) -> IngestError {
        IngestError {
            status: e.status(),
            key: String::new(),
            index: None,
            message: e.to_string(),
        }
    }
}

/// Reads a whole body (such as hyper's `Incoming`) of at most `limit` bytes. A body announced
/// or found to be longer fails with [`BodyError::TooLarge`], having read no more than the
/// limit and the chunk that crossed it.
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    match read_bounded(body, limit).await? {
        Bounded::Whole(bytes) => Ok(bytes),
        Bounded::Over(_) => Err(BodyError::TooLarge { limit }),
    }
}

/// A body read up to a limit: whole, or, when longer, what was read and the rest unread.
#[derive(Debug)]
pub enum Bounded<B> {
    /// The whole body, at most the limit.
    Whole(Bytes),
    /// Longer than the limit: the same bytes, still streaming, for a caller that passes the
    /// body on without reading it (the proxy forwards it).
    Over(Prefixed<B>),
}

/// Reads a body of at most `limit` bytes whole; a longer one comes back unconsumed as
/// [`Bounded::Over`], holding no more than about `limit` bytes. Trailers are dropped.
pub async fn read_bounded<B>(mut body: B, limit: usize) -> Result<Bounded<B>, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let mut read: VecDeque<Bytes> = VecDeque::new();
    let mut len = 0usize;
    let mut over = body.size_hint().lower() > limit as u64;
    while !over {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        if let Ok(data) = frame.into_data() {
            len += data.len();
            read.push_back(data);
            over = len > limit;
        }
    }
    if over {
        return Ok(Bounded::Over(Prefixed { read, rest: body }));
    }
    let mut whole = BytesMut::with_capacity(len);
    read.iter().for_each(|chunk| whole.extend_from_slice(chunk));
    Ok(Bounded::Whole(whole.freeze()))
}

/// A body whose first chunks were already read: they are sent again, then the rest.
#[derive(Debug)]
pub struct Prefixed<B> {
    read: VecDeque<Bytes>,
    rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.read.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self.read.iter().map(|c| c.len() as u64).sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body_util::Full;
    use hyper::body::Frame;

    use super::*;
    use crate::event::EventKind;

    fn err(body: &str) -> IngestError {
        parse_events(body.as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn one_event_object() {
        let events =
            parse_events(br#"{"type": "conversion", "id": "e1", "revenue": 12.5}"#).expect("valid");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Conversion);
        assert_eq!(events[0].id.as_deref(), Some("e1"));
    }

    #[test]
    fn array_of_events_in_order() {
        let events = parse_events(
            br#"[{"type": "refund", "id": 1}, {"type": "event", "eventNumber": 3, "id": 2}]"#,
        )
        .expect("valid");
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Refund, EventKind::Custom(3)]);
    }

    #[test]
    fn bad_json_says_where() {
        let e = err("{\"type\": \"conversion\",\n  \"revenue\": }");
        assert_eq!((e.status, e.key.as_str(), e.index), (400, "", None));
        assert!(e.message.contains("line 2 column"), "{}", e.message);
        assert_eq!(e.to_json()["key"], "");
    }

    #[test]
    fn wrong_type_names_key_and_index() {
        let e = err(r#"[{"type": "conversion"}, {"type": "refund"},
                        {"type": "conversion", "revenue": true}]"#);
        assert_eq!(
            (e.status, e.key.as_str(), e.index),
            (400, "revenue", Some(2))
        );
        assert!(e.message.contains("expected a number"), "{}", e.message);
        assert_eq!(
            e.to_json(),
            json!({"error": e.message, "key": "revenue", "index": 2})
        );
    }

    #[test]
    fn wrong_type_in_single_event_has_no_index() {
        let e = err(r#"{"type": "conversion", "firstClick": {"country": 7}}"#);
        assert_eq!((e.key.as_str(), e.index), ("firstClick.country", None));
        assert!(e.to_json().get("index").is_none());
    }

    #[test]
    fn unknown_event_type() {
        let e = err(r#"{"type": "purchase"}"#);
        assert_eq!((e.status, e.key.as_str()), (400, "type"));
    }

    #[test]
    fn empty_array_empty_body_and_scalars_are_refused() {
        for body in ["[]", "", "  \n", "42", "\"conversion\"", "null"] {
            let e = err(body);
            assert_eq!((e.status, e.key.as_str()), (400, ""), "{body:?}: {e}");
        }
        let e = err(r#"[{"type": "refund"}, 5]"#);
        assert_eq!(e.index, Some(1));
    }

    #[tokio::test]
    async fn body_within_limit_is_read_whole() {
        let bytes = read_limited(Full::new(Bytes::from_static(b"0123456789")), 10)
            .await
            .expect("at the limit");
        assert_eq!(&bytes[..], b"0123456789");
    }

    #[tokio::test]
    async fn announced_body_over_limit_is_too_large() {
        let e = read_limited(Full::new(Bytes::from_static(b"0123456789A")), 10)
            .await
            .expect_err("over");
        assert!(matches!(e, BodyError::TooLarge { limit: 10 }), "{e}");
        assert_eq!(IngestError::from(e).status, 413);
    }

    #[tokio::test]
    async fn streamed_body_over_limit_is_too_large() {
        // No length announced: the limit trips while reading, on the chunk that crosses it.
        let body = Chunked(
            (0..100)
                .map(|_| Bytes::from_static(b"0123456789"))
                .collect(),
        );
        let e = read_limited(body, 55).await.expect_err("over");
        assert!(matches!(e, BodyError::TooLarge { limit: 55 }), "{e}");
    }

    #[tokio::test]
    async fn a_bounded_read_under_the_limit_is_whole() {
        let body = Chunked((0..5).map(|_| Bytes::from_static(b"0123456789")).collect());
        match read_bounded(body, 50).await.expect("readable") {
            Bounded::Whole(bytes) => assert_eq!(bytes, "0123456789".repeat(5)),
            Bounded::Over(_) => panic!("50 bytes fit a limit of 50"),
        }
    }

    #[tokio::test]
    async fn a_bounded_read_over_the_limit_gives_back_every_byte() {
        let chunks: VecDeque<Bytes> = (0..100u8)
            .map(|i| Bytes::from(vec![b'a' + i % 26; 10]))
            .collect();
        let sent: Vec<u8> = chunks.iter().flatten().copied().collect();
        let Bounded::Over(prefixed) = read_bounded(Chunked(chunks), 55).await.expect("readable")
        else {
            panic!("1000 bytes are over 55");
        };
        // Only the chunks up to the one crossing the limit were read.
        assert_eq!(prefixed.read.len(), 6);
        assert!(!prefixed.is_end_stream());
        let forwarded = prefixed.collect().await.expect("infallible").to_bytes();
        assert_eq!(forwarded.as_ref(), sent.as_slice());
    }

    #[tokio::test]
    async fn a_bounded_read_of_an_announced_long_body_reads_nothing() {
        let body = Full::new(Bytes::from(vec![b'x'; 100]));
        let Bounded::Over(prefixed) = read_bounded(body, 10).await.expect("readable") else {
            panic!("100 bytes are over 10");
        };
        assert!(prefixed.read.is_empty());
        assert_eq!(prefixed.size_hint().exact(), Some(100));
        let forwarded = prefixed.collect().await.expect("infallible").to_bytes();
        assert_eq!(forwarded.len(), 100);
    }

    /// A body sent in chunks without a length, like a chunked HTTP/1.1 post.
    struct Chunked(VecDeque<Bytes>);

    impl Body for Chunked {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }
}
