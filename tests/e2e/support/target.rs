//! The one loopback receiver every test delivers to: a real server on `127.0.0.1:0` that
//! records what it saw and answers from a script, or misbehaves at the connection level.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{PATIENCE, tick};

/// How a target treats each connection.
#[derive(Debug, Clone, Copy)]
pub enum Wire {
    /// HTTP/1 or HTTP/2 (prior knowledge), answering from the script.
    Http,
    /// Accepts and holds the connection: never reads, never answers.
    Silent,
    /// Closes each connection as soon as it is accepted.
    HangUp,
    /// Reads once, writes these bytes (not HTTP), then holds the connection until the client
    /// closes it.
    Banner(&'static [u8]),
    /// Reads one whole request (headers and `Content-Length` body), writes these bytes as
    /// the answer, then closes: for answers hyper would never send, such as a body shorter
    /// than its `Content-Length`.
    Raw(&'static [u8]),
}

/// How a target answers one HTTP request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer at once with this status, headers and body.
    Answer {
        /// The status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
    },
    /// Wait, then answer with this status and an empty body: a slow target is the behaviour
    /// under test, so this sleep is not synchronisation.
    Delayed(Duration, u16),
    /// Never answer (until the client gives up and closes the connection).
    Hang,
    /// Status 200 and headers at once, then one chunk of body and neither more nor its end.
    Endless,
}

impl Reply {
    /// A bare status with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply::Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// A status and a body.
    pub fn with_body(status: u16, body: &str) -> Reply {
        Reply::Answer {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// A status and one header, with an empty body.
    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        Reply::Answer {
            status,
            headers: vec![(name.to_owned(), value.to_owned())],
            body: String::new(),
        }
    }
}

/// One request as a target received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// Path and query, as sent.
    pub path_and_query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the request (with its body) arrived, on the process-wide [`tick`] clock.
    pub at: u64,
    /// When the handler stopped: it answered, or the client went away before the answer
    /// (a `Hang`). `None` while it is still in flight.
    pub ended: Option<u64>,
}

impl Recorded {
    /// One header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "target got a body that is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The raw query string (empty when there is none).
    pub fn query(&self) -> &str {
        self.path_and_query.split_once('?').map_or("", |(_, q)| q)
    }

    /// The query, split into percent-decoded pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .expect("query is UTF-8")
                .into_owned()
        };
        self.query()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect()
    }
}

struct TargetState {
    wire: Wire,
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    connections: AtomicUsize,
    /// Bumped on every accepted connection, arrival and end, so waiters wake on each.
    changed: watch::Sender<u64>,
}

impl TargetState {
    fn requests(&self) -> MutexGuard<'_, Vec<Recorded>> {
        // A handler that panicked is reported by the accept loop; the records stay readable.
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The accept loop, which owns every connection's task: aborting it ends them all.
struct AcceptLoop(Mutex<Option<JoinHandle<()>>>);

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        if let Some(task) = self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// A real server on `127.0.0.1:0`. Over [`Wire::Http`] it records every request and answers
/// from a script: the queued replies first, one per request, then the default reply (200
/// unless changed). Clones share the server; dropping the last one stops it.
#[derive(Clone)]
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<TargetState>,
    accept: Arc<AcceptLoop>,
}

/// Marks a request's end when its handler finishes or is dropped (the client went away).
struct EndGuard {
    state: Arc<TargetState>,
    index: usize,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.state.requests()[self.index].ended = Some(tick());
        self.state.bump();
    }
}

impl Target {
    /// Starts an HTTP target answering 200 with an empty body.
    pub async fn start() -> Target {
        Target::speaking(Wire::Http).await
    }

    /// Starts a target that treats every connection as `wire` says.
    pub async fn speaking(wire: Wire) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("target address");
        let state = Arc::new(TargetState {
            wire,
            requests: Mutex::default(),
            script: Mutex::default(),
            default: Mutex::default(),
            connections: AtomicUsize::new(0),
            changed: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Target {
            addr,
            state,
            accept: Arc::new(AcceptLoop(Mutex::new(Some(task)))),
        }
    }

    /// A URL on this target.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// The reply once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = Some(reply);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.state.requests().len()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits until `cond` holds over the requests received so far, waking on each arrival
    /// and end rather than polling; fails the test after [`PATIENCE`].
    pub async fn wait(&self, what: &str, cond: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let mut changed = self.state.changed.subscribe();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // Subscribed before looking, so a change between the look and the wait wakes us.
            changed.borrow_and_update();
            let requests = self.requests();
            if cond(&requests) {
                return requests;
            }
            let woke = tokio::time::timeout_at(deadline, changed.changed()).await;
            assert!(
                woke.is_ok(),
                "timed out waiting for {what} at {}; it saw: {requests:#?}",
                self.addr
            );
        }
    }

    /// Waits until at least `n` requests arrived and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        self.wait(&format!("{n} request(s)"), |r| r.len() >= n)
            .await
    }

    /// Stops the server and joins its accept loop, failing the test if it or a connection's
    /// handler panicked.
    pub async fn stop(self) {
        let task = self.accept.0.lock().unwrap().take();
        let task = task.expect("the target is stopped once");
        task.abort();
        match task.await {
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
            Ok(()) => panic!("the target at {} stopped accepting early", self.addr),
        }
    }
}

/// Accepts connections until the last `Target` handle is dropped or stopped; a handler's panic ends the loop with
/// that panic, for [`Target::stop`] to report.
async fn accept_loop(listener: TcpListener, state: Arc<TargetState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted.expect("the target accepts");
                state.connections.fetch_add(1, Ordering::SeqCst);
                state.bump();
                connections.spawn(serve(Arc::clone(&state), stream));
            }
            Some(done) = connections.join_next() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

async fn serve(state: Arc<TargetState>, mut stream: TcpStream) {
    match state.wire {
        Wire::Http => {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(state, req).await) }
            });
            // A client that goes away mid-request is normal here (timeouts are under test).
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Wire::Silent => std::future::pending().await,
        Wire::HangUp => drop(stream),
        Wire::Banner(bytes) => {
            let mut buf = [0; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(bytes).await;
            // Hold the connection until the client has read the banner and closed its end.
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        Wire::Raw(bytes) => {
            read_request(&mut stream).await;
            let _ = stream.write_all(bytes).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Reads a request's head and its `Content-Length` body, so that closing after the answer
/// leaves nothing unread (unread bytes would make the close a reset).
async fn read_request(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    let mut wanted: Option<usize> = None;
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = *wanted.get_or_insert(end + 4 + length);
            if seen.len() >= total {
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
}

type ReplyBody = BoxBody<Bytes, Infallible>;

async fn answer(state: Arc<TargetState>, req: Request<Incoming>) -> Response<ReplyBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = {
        let next = state.script.lock().unwrap().pop_front();
        next.or_else(|| state.default.lock().unwrap().clone())
            .unwrap_or_else(|| Reply::status(200))
    };
    let index = {
        let mut requests = state.requests();
        requests.push(Recorded {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            headers: parts.headers,
            body,
            at: tick(),
            ended: None,
        });
        requests.len() - 1
    };
    state.bump();
    let _guard = EndGuard {
        state: Arc::clone(&state),
        index,
    };
    let (status, headers, body) = match reply {
        Reply::Answer {
            status,
            headers,
            body,
        } => (status, headers, Full::new(Bytes::from(body)).boxed()),
        Reply::Delayed(wait, status) => {
            tokio::time::sleep(wait).await;
            (status, Vec::new(), Full::new(Bytes::new()).boxed())
        }
        Reply::Hang => std::future::pending().await,
        Reply::Endless => (200, Vec::new(), Endless { sent: false }.boxed()),
    };
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).expect("valid status");
    for (name, value) in headers {
        res.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    res
}

/// A body that sends one chunk and then neither more nor its end.
struct Endless {
    sent: bool,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent {
            return Poll::Pending;
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
    }
}
