//! Reading a request's body within a size limit and a deadline: whole, or, when longer, passed
//! on unread.

use std::collections::VecDeque;
use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Body, Frame, SizeHint};

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
    /// The body did not arrive within the deadline (answer 408); a client trickling a body
    /// holds a connection no longer than that.
    #[error("the body did not arrive within {} s", .within.as_secs_f64())]
    Slow {
        /// The deadline, from the end of the headers.
        within: Duration,
    },
}

impl BodyError {
    /// The status a request whose body failed this way is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
            BodyError::Slow { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// Reads a whole body (such as hyper's `Incoming`) of at most `limit` bytes within `within`. A
/// body announced or found to be longer fails with [`BodyError::TooLarge`], having read no more
/// than the limit and the chunk that crossed it; one still arriving after `within` fails with
/// [`BodyError::Slow`].
pub async fn read_limited<B>(body: B, limit: usize, within: Duration) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    match read_bounded(body, limit, within).await? {
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

/// Reads a body of at most `limit` bytes whole within `within`; a longer one comes back
/// unconsumed as [`Bounded::Over`], holding no more than about `limit` bytes. Trailers are
/// dropped.
pub async fn read_bounded<B>(
    mut body: B,
    limit: usize,
    within: Duration,
) -> Result<Bounded<B>, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut read: VecDeque<Bytes> = VecDeque::new();
    let mut len = 0usize;
    let mut over = body.size_hint().lower() > limit as u64;
    // A body that knows it is done (its announced length read) is not polled again for an end.
    while !over && !body.is_end_stream() {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| BodyError::Slow { within })?;
        let Some(frame) = frame else {
            break;
        };
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        if let Ok(data) = frame.into_data() {
            len += data.len();
            over = len > limit;
            // Usually the whole body comes in one chunk: that chunk is the body, no copy and
            // no list needed.
            if !over && read.is_empty() && body.is_end_stream() {
                return Ok(Bounded::Whole(data));
            }
            read.push_back(data);
        }
    }
    if over {
        return Ok(Bounded::Over(Prefixed { read, rest: body }));
    }
    if read.len() <= 1 {
        return Ok(Bounded::Whole(read.pop_front().unwrap_or_default()));
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

    /// A deadline no test here reaches but the slow one.
    const WITHIN: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn body_within_limit_is_read_whole() {
        let bytes = read_limited(Full::new(Bytes::from_static(b"0123456789")), 10, WITHIN)
            .await
            .expect("at the limit");
        assert_eq!(&bytes[..], b"0123456789");
    }

    #[tokio::test]
    async fn an_empty_body_is_read_whole() {
        let bytes = read_limited(Full::new(Bytes::new()), 10, WITHIN)
            .await
            .expect("empty");
        assert!(bytes.is_empty());
        let body = Chunked(VecDeque::from([Bytes::new(), Bytes::new()]));
        let bytes = read_limited(body, 10, WITHIN).await.expect("empty chunks");
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn announced_body_over_limit_is_too_large() {
        let e = read_limited(Full::new(Bytes::from_static(b"0123456789A")), 10, WITHIN)
            .await
            .expect_err("over");
        assert!(matches!(e, BodyError::TooLarge { limit: 10 }), "{e}");
    }

    #[tokio::test]
    async fn streamed_body_over_limit_is_too_large() {
        // No length announced: the limit trips while reading, on the chunk that crosses it.
        let body = Chunked(
            (0..100)
                .map(|_| Bytes::from_static(b"0123456789"))
                .collect(),
        );
        let e = read_limited(body, 55, WITHIN).await.expect_err("over");
        assert!(matches!(e, BodyError::TooLarge { limit: 55 }), "{e}");
    }

    #[tokio::test]
    async fn a_bounded_read_under_the_limit_is_whole() {
        let body = Chunked((0..5).map(|_| Bytes::from_static(b"0123456789")).collect());
        match read_bounded(body, 50, WITHIN).await.expect("readable") {
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
        let Bounded::Over(prefixed) = read_bounded(Chunked(chunks), 55, WITHIN)
            .await
            .expect("readable")
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
        let Bounded::Over(prefixed) = read_bounded(body, 10, WITHIN).await.expect("readable")
        else {
            panic!("100 bytes are over 10");
        };
        assert!(prefixed.read.is_empty());
        assert_eq!(prefixed.size_hint().exact(), Some(100));
        let forwarded = prefixed.collect().await.expect("infallible").to_bytes();
        assert_eq!(forwarded.len(), 100);
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_slow_after_the_deadline() {
        // Two chunks, then nothing for ever.
        let body = Stalling((0..2).map(|_| Bytes::from_static(b"01234")).collect());
        let within = Duration::from_millis(50);
        let e = read_limited(body, 100, within).await.expect_err("stalled");
        assert!(
            matches!(e, BodyError::Slow { within: w } if w == within),
            "{e}"
        );
        assert_eq!(e.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_body_whose_length_is_read_is_not_waited_on_for_its_end() {
        // Once its announced length is in, the end is not awaited: a client that keeps the
        // connection open after its body is answered at once, not at the deadline.
        let within = Duration::from_millis(50);
        for chunks in [vec!["0123456789"], vec!["01234", "56789"]] {
            let body = Announced(
                chunks
                    .iter()
                    .map(|c| Bytes::from_static(c.as_bytes()))
                    .collect(),
            );
            let bytes = read_limited(body, 100, within).await.expect("whole");
            assert_eq!(&bytes[..], b"0123456789");
        }
    }

    /// A body of a known length whose chunks arrive, then nothing more (not even its end):
    /// like hyper's `Incoming` with a `Content-Length`, which is at its end once that many bytes
    /// came.
    struct Announced(VecDeque<Bytes>);

    impl Body for Announced {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.0.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Poll::Pending,
            }
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.0.iter().map(|c| c.len() as u64).sum())
        }
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

    /// A body whose chunks arrive, then nothing more: its client stopped sending.
    struct Stalling(VecDeque<Bytes>);

    impl Body for Stalling {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.0.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Poll::Pending,
            }
        }
    }
}
