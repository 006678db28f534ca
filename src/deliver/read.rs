//! Reads the start of a response body, and no more: the status and headers are the target's
//! verdict, the body only an excerpt for the delivery log.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Body;
use tokio::time::Instant;

/// Bytes of the body kept as the excerpt the delivery log and `whc test` show, and the most
/// read: past it the rest is dropped with the connection, so a target streaming gigabytes, or
/// trickling forever, costs nothing.
pub const EXCERPT_LIMIT: usize = 4 * 1024;

/// How a response body ended, as far as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEnd {
    /// Read to its end: the excerpt is the whole body.
    Whole,
    /// The excerpt is full; the rest was not read.
    Cut,
    /// Still arriving at the attempt's deadline: the excerpt is what came by then. The status
    /// stands; a target slow to finish its answer has still given it.
    StillArriving,
    /// Ended before it was complete (the connection closed short of the declared length, or
    /// broke): the answer is incomplete. The reason says how.
    BrokeOff(String),
}

/// The start of a body and how it ended.
pub(crate) struct Excerpt {
    pub bytes: Bytes,
    pub end: BodyEnd,
    /// Bytes received, at most a frame past [`EXCERPT_LIMIT`].
    pub received: usize,
}

/// Reads `body` until its end, [`EXCERPT_LIMIT`] bytes or `deadline`, whichever comes first.
pub(crate) async fn excerpt<B>(mut body: B, deadline: Instant) -> Excerpt
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut kept = BytesMut::new();
    let mut received = 0usize;
    let end = loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break BodyEnd::StillArriving,
            Ok(None) => break BodyEnd::Whole,
            Ok(Some(Err(e))) => break BodyEnd::BrokeOff(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing for the excerpt
        };
        received = received.saturating_add(data.len());
        let room = EXCERPT_LIMIT - kept.len();
        kept.extend_from_slice(&data[..data.len().min(room)]);
        if data.len() > room {
            break BodyEnd::Cut;
        }
        if kept.len() == EXCERPT_LIMIT {
            break if body.is_end_stream() {
                BodyEnd::Whole
            } else {
                BodyEnd::Cut
            };
        }
    };
    Excerpt {
        bytes: kept.freeze(),
        end,
        received,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use http_body_util::Full;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn keeps_short_bodies_whole() {
        let read = excerpt(Full::new(Bytes::from_static(b"ok")), soon()).await;
        assert_eq!(read.bytes, "ok");
        assert_eq!(read.end, BodyEnd::Whole);
    }

    #[tokio::test]
    async fn cuts_long_bodies_at_the_excerpt_limit() {
        let exact = excerpt(Full::new(Bytes::from(vec![b'a'; EXCERPT_LIMIT])), soon()).await;
        assert_eq!(exact.bytes.len(), EXCERPT_LIMIT);
        assert_eq!(exact.end, BodyEnd::Whole);
        let long = excerpt(
            Full::new(Bytes::from(vec![b'a'; EXCERPT_LIMIT + 1])),
            soon(),
        )
        .await;
        assert_eq!(long.bytes.len(), EXCERPT_LIMIT);
        assert_eq!(long.end, BodyEnd::Cut);
    }
}
