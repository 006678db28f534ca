//! The delivery client against the loopback target: statuses, deadlines, caps, signing.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use whc::deliver::{
    AttemptHeaders, BodyEnd, Client, EXCERPT_LIMIT, Outcome, OutgoingRequest, Secret, SendError,
    Verdict, classify, verify,
};

use crate::support::{Reply, Target, Wire};

/// A target that answers every request with `reply`.
async fn answering(reply: Reply) -> Target {
    let target = Target::start().await;
    target.set_default(reply);
    target
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
    let target = answering(Reply::with_body(200, r#"{"received":true}"#)).await;
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
    assert!(!answer.truncated());
    assert_eq!(answer.header("content-length"), Some("17"));

    let seen = target.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path_and_query, "/hook?a=1");
    assert_eq!(seen[0].body, r#"{"n":1}"#);
    assert_eq!(seen[0].headers["content-type"], "application/json");
    target.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried() {
    let target = answering(Reply::with_body(500, "boom")).await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None }
    );
    assert_eq!(response(&attempt.outcome).excerpt_text(), "boom");
    target.stop().await;
}

#[tokio::test]
async fn too_many_requests_passes_on_retry_after() {
    let target = answering(Reply::with_header(429, "Retry-After", "7")).await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    target.stop().await;
}

#[tokio::test]
async fn not_found_is_dead() {
    let target = answering(Reply::with_body(404, "no such hook")).await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    assert_eq!(attempt.outcome.verdict(), Verdict::Dead);
    target.stop().await;
}

#[tokio::test]
async fn redirects_are_dead_and_not_followed() {
    // The first request is redirected; any other would get the default 200.
    let target = Target::start().await;
    target.script([Reply::with_header(302, "Location", "/new")]);
    let attempt = Client::new().send(post(target.url("/moved"), "{}")).await;
    assert_eq!(attempt.outcome.verdict(), Verdict::Dead);
    assert_eq!(response(&attempt.outcome).header("location"), Some("/new"));
    let paths: Vec<String> = target
        .requests()
        .into_iter()
        .map(|s| s.path_and_query)
        .collect();
    assert_eq!(paths, ["/moved"]);
    target.stop().await;
}

// === deadlines and failures ===

#[tokio::test]
async fn a_silent_target_times_out() {
    // Accepts connections and never reads or answers.
    let target = Target::speaking(Wire::Silent).await;
    let mut request = post(target.url("/"), "{}");
    request.timeout = Duration::from_millis(200);
    let attempt = Client::new().send(request).await;
    let error = failure(&attempt.outcome);
    assert_eq!(*error, SendError::Timeout(Duration::from_millis(200)));
    assert_eq!(error.to_string(), "no answer within 200 ms");
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None }
    );
    target.stop().await;
}

#[tokio::test]
async fn a_body_that_never_ends_is_cut_at_the_deadline_and_the_status_stands() {
    // Headers at once, then a body that never finishes: the 200 is the target's answer; the
    // body is read until the deadline and cut, not turned into a timeout and a resend.
    let target = answering(Reply::Endless).await;
    let mut request = post(target.url("/"), "{}");
    request.timeout = Duration::from_millis(300);
    let attempt = Client::new().send(request).await;
    let answer = response(&attempt.outcome);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.excerpt, "partial");
    assert_eq!(answer.body, BodyEnd::StillArriving);
    assert!(
        answer.body_note().unwrap().contains("still arriving"),
        "{answer:?}"
    );
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Delivered { status: 200 }
    );
    target.stop().await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_an_incomplete_answer() {
    let target = Target::speaking(Wire::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\nshort",
    ))
    .await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    let answer = response(&attempt.outcome);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.excerpt, "short");
    assert_eq!(
        answer.body,
        BodyEnd::BrokeOff(
            "the body ended after 5 of the 1073741824 bytes its Content-Length declared".into()
        )
    );
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Retry { retry_after: None },
        "an incomplete 2xx is no proof of delivery"
    );
    target.stop().await;
}

#[tokio::test]
async fn a_target_that_is_not_http_says_so() {
    let target = Target::speaking(Wire::Banner(b"SSH-2.0-OpenSSH_9.6\r\n")).await;
    let addr = target.addr;
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
    target.stop().await;
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
    let target = Target::start().await;
    let url = format!("https://{}/", target.addr);
    let attempt = Client::new().send(post(url, "{}")).await;
    let error = failure(&attempt.outcome);
    assert!(matches!(error, SendError::Tls(_)), "{error:?}");
    assert!(error.to_string().contains("does not speak TLS"), "{error}");
    target.stop().await;
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
    let target = answering(Reply::with_body(200, &"x".repeat(200_000))).await;
    let attempt = Client::new().send(post(target.url("/"), "{}")).await;
    let answer = response(&attempt.outcome);
    assert_eq!(answer.excerpt.len(), EXCERPT_LIMIT);
    assert!(answer.truncated());
    assert_eq!(
        attempt.outcome.verdict(),
        Verdict::Delivered { status: 200 }
    );
    target.stop().await;
}

// === headers, signing, pooling ===

#[tokio::test]
async fn signed_attempts_verify_at_the_receiver() {
    let target = answering(Reply::status(204)).await;
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

    let seen = &target.requests()[0];
    let header = |name: &str| seen.header(name).unwrap().to_owned();
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
    target.stop().await;
}

#[tokio::test]
async fn get_sends_no_body_and_connections_are_reused() {
    let target = answering(Reply::with_body(200, "ok")).await;
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
    let seen = target.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.method == Method::GET && s.body.is_empty())
    );
    assert_eq!(target.connections(), 1);
    target.stop().await;
}

#[tokio::test]
async fn a_target_that_hangs_up_is_retried_with_a_clear_message() {
    let target = Target::speaking(Wire::HangUp).await;
    let addr = target.addr;
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
    target.stop().await;
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
