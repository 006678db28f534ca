//! A connection's deadlines: a request's headers must arrive in time, and a connection with no
//! request in flight is closed after a while. Kept here, around hyper, rather than by hyper's
//! own `header_read_timeout`, because that one also runs while a keep-alive connection waits
//! for its next request (so the idle time could not be longer than it), and because hyper-util's
//! HTTP/1-or-HTTP/2 detection, which reads before hyper does, has no deadline at all.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long a connection may take, and wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From connecting, or from the first byte after a request, until a request's headers are
    /// read.
    pub header_read: Duration,
    /// How long a connection with no request in flight may stay open waiting for the next one.
    pub idle: Duration,
}

/// Why a connection was closed by its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request's headers did not arrive in time.
    HeaderRead,
    /// No request came in time.
    Idle,
}

impl Expired {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::HeaderRead => "the request headers did not arrive in time",
            Expired::Idle => "idle for too long",
        }
    }
}

/// One connection's clock: what the connection is doing, shared by its reads, its requests and
/// the watchdog that closes it.
///
/// The watchdog is never told of a change: it wakes no later than the earliest deadline the
/// connection could have by then ([`State::next_check`]) and looks. A request costs it nothing
/// (no wake-up of the connection's task, no new timer), an open connection a look every
/// `min(header_read, idle)`.
#[derive(Debug, Clone)]
pub struct Watch {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    deadlines: Deadlines,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Requests being answered (more than one with HTTP/2).
    in_flight: usize,
    /// When the connection last started waiting for a request (accepted, or the last answer
    /// done).
    waiting_since: Instant,
    /// The first byte read since then.
    first_byte: Option<Instant>,
    /// Whether a request was answered on this connection yet.
    served: bool,
}

impl State {
    /// When the connection is closed if nothing changes; `None` while a request is in flight.
    fn deadline(&self, deadlines: Deadlines) -> Option<(Instant, Expired)> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match (self.served, self.first_byte) {
            // The first request's headers are due from connecting, whatever trickles in.
            (false, _) => (
                self.waiting_since + deadlines.header_read,
                Expired::HeaderRead,
            ),
            (true, Some(first)) => (first + deadlines.header_read, Expired::HeaderRead),
            (true, None) => (self.waiting_since + deadlines.idle, Expired::Idle),
        })
    }

    /// When to look again, at `now`: no later than any deadline the connection can have by
    /// then, whatever happens meanwhile. Changes only move the deadline past this: a request
    /// ending at `t >= now` sets `t + idle`, a first byte at `t >= now` sets `t + header_read`,
    /// and a request starting sets none.
    fn next_check(&self, deadlines: Deadlines, now: Instant) -> Instant {
        let soonest_new = now + deadlines.header_read.min(deadlines.idle);
        match self.deadline(deadlines) {
            Some((at, _)) => at.min(soonest_new),
            None => soonest_new,
        }
    }
}

impl Watch {
    /// A connection accepted just now.
    pub fn new(deadlines: Deadlines) -> Watch {
        Watch {
            shared: Arc::new(Shared {
                deadlines,
                state: Mutex::new(State {
                    in_flight: 0,
                    waiting_since: Instant::now(),
                    first_byte: None,
                    served: false,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain numbers, whole after any panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers were read; it is in flight until the returned guard is dropped
    /// (with its answer's body, once that is sent or abandoned).
    pub fn request(&self) -> InFlight {
        self.state().in_flight += 1;
        InFlight(self.clone())
    }

    fn read_some(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && state.first_byte.is_none() {
            state.first_byte = Some(Instant::now());
        }
    }

    /// When to look again, and the deadline missed if one is.
    fn check(&self, now: Instant) -> Result<Instant, Expired> {
        let deadlines = self.shared.deadlines;
        let state = self.state();
        match state.deadline(deadlines) {
            Some((at, why)) if at <= now => Err(why),
            _ => Ok(state.next_check(deadlines, now)),
        }
    }

    /// Resolves when the connection has missed a deadline; never while a request is in flight.
    pub async fn expired(&self) -> Expired {
        let first = match self.check(Instant::now()) {
            Ok(next) => next,
            Err(why) => return why,
        };
        // One timer for the connection's life, moved at each look.
        let sleep = tokio::time::sleep_until(first);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            match self.check(Instant::now()) {
                Ok(next) => sleep.as_mut().reset(next),
                Err(why) => return why,
            }
        }
    }
}

/// A request in flight on a [`Watch`]ed connection.
#[derive(Debug)]
pub struct InFlight(Watch);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.waiting_since = Instant::now();
            state.first_byte = None;
            state.served = true;
        }
    }
}

/// An answer's body that keeps its request in flight until it is sent (or dropped).
#[derive(Debug)]
pub struct Guarded<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Guarded<B> {
    /// `body`, holding `in_flight` until it is done.
    pub fn new(body: B, in_flight: InFlight) -> Guarded<B> {
        Guarded {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, telling its [`Watch`] when bytes arrive.
#[derive(Debug)]
pub struct Watched<S> {
    stream: S,
    watch: Watch,
}

impl<S> Watched<S> {
    /// `stream`, reporting to `watch`.
    pub fn new(stream: S, watch: Watch) -> Watched<S> {
        Watched { stream, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Deadlines = Deadlines {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_misses_its_header_deadline() {
        let watch = Watch::new(LIMITS);
        let start = Instant::now();
        assert_eq!(watch.expired().await, Expired::HeaderRead);
        assert_eq!(start.elapsed(), LIMITS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_answer_the_idle_deadline_runs_then_the_header_one_from_the_first_byte() {
        let watch = Watch::new(LIMITS);
        drop(watch.request());
        let start = Instant::now();
        assert_eq!(watch.expired().await, Expired::Idle);
        assert_eq!(start.elapsed(), LIMITS.idle);

        let watch = Watch::new(LIMITS);
        drop(watch.request());
        tokio::time::advance(Duration::from_secs(5)).await;
        watch.read_some();
        let start = Instant::now();
        assert_eq!(watch.expired().await, Expired::HeaderRead);
        assert_eq!(start.elapsed(), LIMITS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_has_no_deadline() {
        let watch = Watch::new(LIMITS);
        let in_flight = watch.request();
        let waited = tokio::time::timeout(Duration::from_secs(3600), watch.expired()).await;
        assert!(waited.is_err(), "closed with a request in flight");
        drop(in_flight);
        let start = Instant::now();
        assert_eq!(watch.expired().await, Expired::Idle);
        assert_eq!(start.elapsed(), LIMITS.idle);
    }

    /// Runs the watchdog in its own task, as the connection's select does: its verdict and
    /// when it came, from now.
    fn watchdog(watch: &Watch) -> tokio::task::JoinHandle<(Expired, Duration)> {
        let watch = watch.clone();
        let start = Instant::now();
        tokio::spawn(async move { (watch.expired().await, start.elapsed()) })
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_byte_while_the_idle_deadline_runs_brings_the_header_deadline_forward() {
        let watch = Watch::new(LIMITS);
        drop(watch.request());
        let watchdog = watchdog(&watch);
        tokio::time::sleep(Duration::from_secs(33)).await;
        watch.read_some();
        let (why, after) = watchdog.await.unwrap();
        assert_eq!(why, Expired::HeaderRead);
        assert_eq!(after, Duration::from_secs(33) + LIMITS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_served_while_the_watchdog_waits_starts_a_shorter_idle_deadline() {
        // Idle shorter than the header deadline: the connection, due at 10 s from connecting,
        // is due 2 s after its first answer instead.
        let limits = Deadlines {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(2),
        };
        let watch = Watch::new(limits);
        let watchdog = watchdog(&watch);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let in_flight = watch.request();
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(in_flight);
        let (why, after) = watchdog.await.unwrap();
        assert_eq!(why, Expired::Idle);
        assert_eq!(after, Duration::from_millis(2200) + limits.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_started_while_the_watchdog_waits_holds_it_off_until_it_ends() {
        let watch = Watch::new(LIMITS);
        let watchdog = watchdog(&watch);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let in_flight = watch.request();
        tokio::time::sleep(Duration::from_secs(500)).await;
        assert!(!watchdog.is_finished(), "closed with a request in flight");
        drop(in_flight);
        let (why, after) = watchdog.await.unwrap();
        assert_eq!(why, Expired::Idle);
        assert_eq!(after, Duration::from_secs(503) + LIMITS.idle);
    }
}
