//! The delivery client against real HTTP servers on loopback: statuses, deadlines, caps, signing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use whc::deliver::{
    AttemptHeaders, Client, EXCERPT_LIMIT, Outcome, OutgoingRequest, Secret, SendError, Verdict,
    classify, verify,
};

// === test servers ===

/// A request as the target saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A real hyper HTTP/1 server on 127.0.0.1:0 answering every request with `respond`.
struct Target {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

type Reply = Response<Full<Bytes>>;

impl Target {
    async fn start(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let task = tokio::spawn({
            let seen = seen.clone();
            let connections = connections.clone();
            async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (seen, respond) = (seen.clone(), respond.clone());
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (seen, respond) = (seen.clone(), respond.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let request = Seen {
                                method: parts.method,
                                path: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            };
                            let reply = respond(&request);
                            seen.lock().unwrap().push(request);
                            Ok::<_, Infallible>(reply)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            seen,
            connections,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops the server, failing the test if its accept loop died.
    fn stop(self) {
        assert!(
            !self.task.is_finished(),
            "the target's accept loop ended early"
        );
        self.task.abort();
    }
}

fn reply(status: u16, body: &'static str) -> Reply {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn post(url: String, body: &'static str) -> OutgoingRequest {
    OutgoingRequest {
        method: Method::POST,
        url,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some(Bytes::from_static(body.as_bytes())),
        timeout: Duration::from_secs(5),
    }
}

fn response(outcome: &Outcome) -> &whc::deliver::Response {
    match outcome {
        Outcome::Response(response) => response,
        Outcome::Failed(error) => panic!("expected an answer, got: {error}"),
    }
}

fn failure(outcome: &Outcome) -> &SendError {
    match outcome {
        Outcome::Failed(error) => error,
        Outcome::Response(r) => panic!("expected a failure, got HTTP {}", r.status),
    }
}

// === statuses ===

#[tokio::test]
async fn ok_is_delivered_with_the_body_excerpt() {
    let target = Target::start(|_| reply(200, r#"{"received":true}"#)).await;
    let attempt = Client::new()
        .send(post(target.url("/hook?a=1"), r#"{"n":1}"#))
        .await;
    assert_eq!(
        classify(&attempt.outcome),
        Verdict::Delivered { status: 200 }
    );
    let answer = response(&attempt.outcome);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.excerpt_text(), r#"{"received":true}"#);
    assert!(!answer.truncated);
    assert_eq!(answer.header("content-length"), Some("17"));

    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path, "/hook?a=1");
    assert_eq!(seen[0].body, r#"{"n":1}"#);
    assert_eq!(seen[0].headers["content-type"], "application/json");
    target.stop();
}

#[tokio::test]
async fn server_errors_are_retried() {
    let target = Target::start(|_| reply(500, "boom")).await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None }
    );
    assert_eq!(response(&attempt.outcome).excerpt_text(), "boom");
    target.stop();
}

#[tokio::test]
async fn too_many_requests_passes_on_retry_after() {
    let target = Target::start(|_| {
        Response::builder()
            .status(429)
            .header("Retry-After", "7")
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    target.stop();
}

#[tokio::test]
async fn not_found_is_dead() {
    let target = Target::start(|_| reply(404, "no such hook")).await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    assert_eq!(attempt.outcome.verdict(), Verdict::Dead);
    target.stop();
}

#[tokio::test]
async fn redirects_are_dead_and_not_followed() {
    let target = Target::start(|seen| {
        if seen.path == "/moved" {
            Response::builder()
                .status(302)
                .header("Location", "/new")
                .body(Full::new(Bytes::new()))
                .unwrap()
        } else {
            reply(200, "")
        }
    })
    .await;
    let attempt = Client::new().send(post(target.url("/moved"), "{}")).await;
    assert_eq!(attempt.outcome.verdict(), Verdict::Dead);
    assert_eq!(response(&attempt.outcome).header("location"), Some("/new"));
    let paths: Vec<String> = target.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/moved"]);
    target.stop();
}

// === deadlines and failures ===

#[tokio::test]
async fn a_silent_target_times_out() {
    // Accepts connections and never reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(listener.accept().await.unwrap());
        }
    });
    let mut request = post(format!("http://{addr}/"), "{}");
    request.timeout = Duration::from_millis(200);
    let attempt = Client::new().send(request).await;
    let error = failure(&attempt.outcome);
    assert_eq!(*error, SendError::Timeout(Duration::from_millis(200)));
    assert_eq!(error.to_string(), "no answer within 200 ms");
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None }
    );
    holder.abort();
}

#[tokio::test]
async fn a_body_that_never_ends_times_out() {
    // Headers at once, then a body that never finishes: the deadline covers the body too.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Endless { sent: false }))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let mut request = post(format!("http://{addr}/"), "{}");
    request.timeout = Duration::from_millis(300);
    let attempt = Client::new().send(request).await;
    assert_eq!(
        *failure(&attempt.outcome),
        SendError::Timeout(Duration::from_millis(300))
    );
    server.abort();
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

#[tokio::test]
async fn a_target_that_is_not_http_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream.read(&mut [0; 1024]).await.unwrap();
        stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let attempt = Client::new()
        .send(post(format!("http://{addr}/"), "{}"))
        .await;
    let error = failure(&attempt.outcome);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{addr} did not answer in HTTP")),
        "{error}"
    );
    server.abort();
}

#[tokio::test]
async fn a_refused_connection_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let attempt = Client::new()
        .send(post(format!("http://{addr}/"), "{}"))
        .await;
    let error = failure(&attempt.outcome);
    assert_eq!(
        *error,
        SendError::Connect(format!("connection refused by {addr}"))
    );
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None }
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let target = Target::start(|_| reply(200, "")).await;
    let url = format!("https://{}/", target.addr);
    let attempt = Client::new().send(post(url, "{}")).await;
    let error = failure(&attempt.outcome);
    assert!(matches!(error, SendError::Tls(_)), "{error:?}");
    assert!(error.to_string().contains("does not speak TLS"), "{error}");
    target.stop();
}

#[tokio::test]
async fn bad_requests_are_refused_before_sending() {
    let client = Client::new();
    for url in [
        "not a url",
        "/relative",
        "ftp://example.com/",
        "http:///nohost",
    ] {
        let attempt = client.send(post(url.into(), "{}")).await;
        let error = failure(&attempt.outcome);
        assert!(
            matches!(error, SendError::InvalidRequest(_)),
            "{url}: {error:?}"
        );
        assert_eq!(attempt.outcome.verdict(), Verdict::Dead);
    }
    let mut injected = post("http://127.0.0.1:9/".into(), "{}");
    injected
        .headers
        .push(("X-Evil".into(), "a\r\nInjected: yes".into()));
    let attempt = client.send(injected).await;
    assert_eq!(
        failure(&attempt.outcome).to_string(),
        "invalid request: the value of header `x-evil` is not valid"
    );
}

// === body cap ===

#[tokio::test]
async fn a_big_body_is_cut_to_the_excerpt() {
    static BIG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "x".repeat(200_000));
    let target = Target::start(|_| {
        Response::builder()
            .status(200)
            .body(Full::new(Bytes::from_static(BIG.as_bytes())))
            .unwrap()
    })
    .await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    let answer = response(&attempt.outcome);
    assert_eq!(answer.excerpt.len(), EXCERPT_LIMIT);
    assert!(answer.truncated);
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Delivered { status: 200 }
    );
    target.stop();
}

// === headers, signing, pooling ===

#[tokio::test]
async fn signed_attempts_verify_at_the_receiver() {
    let target = Target::start(|_| reply(204, "")).await;
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let body = br#"{"type":"conversion"}"#;
    let rule_headers = vec![("X-Team".to_string(), "growth".to_string())];
    let headers = AttemptHeaders {
        delivery_id: "dlv_01J",
        rule_headers: &rule_headers,
        secret: Some(&secret),
        timestamp: whc::deliver::unix_now(),
        body: Some(body),
        test: true,
    }
    .build();
    let request = OutgoingRequest {
        method: Method::POST,
        url: target.url("/signed"),
        headers,
        body: Some(Bytes::from_static(body)),
        timeout: Duration::from_secs(5),
    };
    let attempt = Client::new().send(request).await;
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Delivered { status: 204 }
    );

    let seen = &target.seen()[0];
    let header = |name: &str| seen.headers[name].to_str().unwrap().to_owned();
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert_eq!(header("webhook-id"), "dlv_01J");
    assert_eq!(header("idempotency-key"), "dlv_01J");
    assert_eq!(header("x-team"), "growth");
    assert_eq!(header("whc-test"), "true");
    assert!(header("user-agent").starts_with("whc/"));
    assert!(verify(
        &secret,
        &header("webhook-id"),
        timestamp,
        &seen.body,
        &header("webhook-signature")
    ));
    assert!(!verify(
        &secret,
        "dlv_other",
        timestamp,
        &seen.body,
        &header("webhook-signature")
    ));
    target.stop();
}

#[tokio::test]
async fn get_sends_no_body_and_connections_are_reused() {
    let target = Target::start(|_| reply(200, "ok")).await;
    let client = Client::new();
    for _ in 0..3 {
        let attempt = client
            .send(OutgoingRequest {
                method: Method::GET,
                url: target.url("/pixel?tx=1"),
                headers: vec![],
                body: None,
                timeout: Duration::from_secs(5),
            })
            .await;
        assert_eq!(
            attempt.outcome.verdict(),
            Verdict::Delivered { status: 200 }
        );
    }
    let seen = target.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.method == Method::GET && s.body.is_empty())
    );
    assert_eq!(target.connections.load(Ordering::SeqCst), 1);
    target.stop();
}

#[tokio::test]
async fn a_target_that_hangs_up_is_retried_with_a_clear_message() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
        }
    });
    let attempt = Client::new()
        .send(post(format!("http://{addr}/"), "{}"))
        .await;
    assert_eq!(
        *failure(&attempt.outcome),
        SendError::Other(format!("{addr} closed the connection before answering"))
    );
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None }
    );
    server.abort();
}

#[tokio::test]
async fn an_unknown_host_says_so() {
    // `.invalid` never resolves (RFC 6761), so this needs no network.
    let attempt = Client::new()
        .send(post("http://whc-test.invalid/".into(), "{}"))
        .await;
    let error = failure(&attempt.outcome);
    assert!(matches!(error, SendError::Connect(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("could not resolve host whc-test.invalid"),
        "{error}"
    );
}
