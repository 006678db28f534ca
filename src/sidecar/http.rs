//! HTTP plumbing shared by the sidecar's listeners: body type, JSON answers, the accept loop
//! with its connection limit and deadlines.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::deadline::{Deadlines, Guarded, Watch, Watched};

/// The body of every answer: our own JSON, or the upstream's streamed body in proxy mode.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// `application/json`, checked once: `from_static` outside a const context checks every call.
static APPLICATION_JSON: header::HeaderValue = header::HeaderValue::from_static("application/json");

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_text(status, value.to_string())
}

/// A JSON answer already written out.
pub fn json_text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    res
}

/// A JSON error answer: `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// A plain-text answer.
pub fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res
}

/// Both ends of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to (for a listener on `0.0.0.0`, the interface's).
    pub local: SocketAddr,
}

/// What a listener allows each connection, and how many at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The header-read and idle deadlines.
    pub deadlines: Deadlines,
    /// Connections served at once.
    pub max_connections: usize,
}

/// How often, at most, the log says that a listener is full.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serves connections from `listener` until `cancel` fires, then stops accepting and lets
/// in-flight requests finish for up to `grace`.
///
/// At most `limits.max_connections` are served at once: when all are taken, the listener stops
/// accepting until one closes, so new connections wait in the kernel's accept queue (and, past
/// its backlog, are refused by the kernel) instead of being accepted and dropped. Waiting suits
/// a burst from the tracker; the deadlines make sure a slot frees up, since no connection can
/// hold one without sending requests.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    cancel: CancellationToken,
    grace: Duration,
    limits: Limits,
) where
    F: Fn(Request<Incoming>, Conn) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut warned_full: Option<Instant> = None;
    loop {
        if slots.available_permits() == 0
            && warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY)
        {
            warned_full = Some(Instant::now());
            tracing::warn!(
                max = limits.max_connections,
                addr = ?listener.local_addr().ok(),
                "connection limit reached; new connections wait until one closes"
            );
        }
        // A slot first, then a connection: a full listener leaves new ones in the queue.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = cancel.cancelled() => break,
        };
        let Ok(slot) = slot else {
            // The semaphore is never closed.
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = cancel.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            // The socket is already gone.
            continue;
        };
        let conn = Conn { peer, local };
        let watch = Watch::new(limits.deadlines);
        let handler = handler.clone();
        let requests = watch.clone();
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            // In flight from its headers until its answer's body is sent: no deadline runs.
            let in_flight = requests.request();
            async move {
                let res = handler(req, conn).await;
                Ok::<_, Infallible>(res.map(|body| Guarded::new(body, in_flight)))
            }
        });
        let io = TokioIo::new(Watched::new(stream, watch.clone()));
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Released when the connection ends, however it ends.
            let _slot = slot;
            tokio::select! {
                // The connection first, and no random draw to pick: it is what usually woke.
                biased;
                ended = conn => {
                    if let Err(err) = ended {
                        tracing::debug!(%peer, %err, "connection ended with an error");
                    }
                }
                // Never while a request is in flight: dropping the connection cuts no answer.
                expired = watch.expired() => {
                    tracing::debug!(%peer, why = expired.as_str(), "connection closed");
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "connections still open after the grace period; closing them");
        }
    }
}
