//! Reads a response body without buffering more than a cap of it.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Body;

/// Bytes of the body kept as the excerpt the delivery log and `whc test` show.
pub const EXCERPT_LIMIT: usize = 4 * 1024;

/// Bytes of the body read at most. Reading a short body to its end lets the connection go back
/// to the pool; past this the rest is dropped with the connection, so a target streaming
/// gigabytes costs nothing.
pub const READ_LIMIT: usize = 64 * 1024;

/// The start of a body and whether there was more.
pub(crate) struct Excerpt {
    pub bytes: Bytes,
    pub truncated: bool,
}

/// Reads up to [`READ_LIMIT`] bytes of `body`, keeping the first [`EXCERPT_LIMIT`].
///
/// A body that breaks off mid-way is not an error here: the status already arrived and decides
/// the verdict; the excerpt is just marked truncated.
pub(crate) async fn excerpt<B>(mut body: B) -> Excerpt
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    let mut truncated = false;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => {
                truncated = true;
                break;
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers carry nothing for the excerpt
                };
                seen = seen.saturating_add(data.len());
                let room = EXCERPT_LIMIT - kept.len();
                if data.len() > room {
                    truncated = true;
                }
                kept.extend_from_slice(&data[..data.len().min(room)]);
                if seen >= READ_LIMIT {
                    truncated = truncated || !body.is_end_stream();
                    break;
                }
            }
        }
    }
    Excerpt {
        bytes: kept.freeze(),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn keeps_short_bodies_whole() {
        let read = excerpt(Full::new(Bytes::from_static(b"ok"))).await;
        assert_eq!(read.bytes, "ok");
        assert!(!read.truncated);
    }

    #[tokio::test]
    async fn cuts_long_bodies_at_the_excerpt_limit() {
        let exact = excerpt(Full::new(Bytes::from(vec![b'a'; EXCERPT_LIMIT]))).await;
        assert_eq!(exact.bytes.len(), EXCERPT_LIMIT);
        assert!(!exact.truncated);
        let long = excerpt(Full::new(Bytes::from(vec![b'a'; EXCERPT_LIMIT + 1]))).await;
        assert_eq!(long.bytes.len(), EXCERPT_LIMIT);
        assert!(long.truncated);
    }
}
