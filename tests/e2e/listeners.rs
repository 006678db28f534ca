//! The listeners' own limits: a request's headers must arrive in time, an idle connection is
//! closed, and each listener serves a bounded number of connections.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use whc::sidecar::ProxyConfig;

use crate::support::{PATIENCE, Reply, Sidecar, Target};

/// A small deadline for the limit under test.
const SHORT: Duration = Duration::from_millis(300);

/// A raw connection to `url`'s host and port.
async fn connect(url: &str) -> TcpStream {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http URL");
    TcpStream::connect(authority).await.expect("connect")
}

/// Waits until the server closes the connection (end of stream or reset); returns how long
/// that took. Fails the test after [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {PATIENCE:?}"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one answer (headers and a `Content-Length` body); returns its status line.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().expect("a length"));
            if data.len() >= end + 4 + length {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
        let n = stream.read(&mut buf).await.expect("read an answer");
        assert!(n > 0, "closed before a whole answer: {data:?}");
        data.extend_from_slice(&buf[..n]);
    }
}

/// A whole keep-alive request.
fn request(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_connection_is_closed_after_the_header_read_timeout() {
    let sidecar = Sidecar::builder()
        .config(|c| {
            c.header_read_timeout = SHORT;
            c.idle_timeout = PATIENCE * 2;
        })
        .start()
        .await;
    for url in [sidecar.events_url("/"), sidecar.admin_url("/")] {
        // Part of the headers, then nothing.
        let mut slow = connect(&url).await;
        slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
            .await
            .unwrap();
        // Nothing at all (not even enough to tell HTTP/1 from HTTP/2).
        let mut silent = connect(&url).await;
        let waited = closed_by_server(&mut slow).await;
        assert!(waited >= SHORT / 2, "closed too early ({waited:?}): {url}");
        closed_by_server(&mut silent).await;
    }
    // Others are still served.
    let health = sidecar.http.get(&sidecar.admin_url("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_is_answered_408_after_the_body_read_timeout() {
    let sidecar = Sidecar::builder()
        .config(|c| {
            c.body_read_timeout = SHORT;
            c.header_read_timeout = PATIENCE * 2;
            c.idle_timeout = PATIENCE * 2;
        })
        .start()
        .await;
    for url in [
        sidecar.events_url("/v1/events"),
        sidecar.admin_url("/v1/explain"),
    ] {
        let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
        let mut slow = connect(&url).await;
        // Whole headers announcing 100 bytes, then 10 of them, then nothing.
        slow.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{{\"type\": "
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let start = Instant::now();
        let status = tokio::time::timeout(PATIENCE, read_answer(&mut slow))
            .await
            .unwrap_or_else(|_| panic!("no answer after {PATIENCE:?}: {url}"));
        assert!(status.contains(" 408 "), "{url}: {status}");
        assert!(start.elapsed() >= SHORT / 2, "answered too early: {url}");
        closed_by_server(&mut slow).await;
    }
    // Nothing was stored, and others are still served.
    let deliveries = sidecar.http.get(&sidecar.admin_url("/v1/deliveries")).await;
    assert_eq!(deliveries.status, StatusCode::OK);
    assert_eq!(deliveries.json()["deliveries"], serde_json::json!([]));
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let sidecar = Sidecar::builder()
        .config(|c| {
            c.header_read_timeout = PATIENCE * 2;
            c.idle_timeout = SHORT;
        })
        .start()
        .await;
    for url in [sidecar.events_url("/"), sidecar.admin_url("/")] {
        let mut conn = connect(&url).await;
        conn.write_all(request("GET", "/healthz").as_bytes())
            .await
            .unwrap();
        read_answer(&mut conn).await;
        let waited = closed_by_server(&mut conn).await;
        assert!(waited >= SHORT / 2, "closed too early ({waited:?}): {url}");
    }
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_outlives_both_deadlines() {
    let upstream = Target::start().await;
    upstream.set_default(Reply::Delayed(SHORT * 3, 200));
    let upstream_uri: hyper::Uri = upstream.url("/").parse().unwrap();
    let sidecar = Sidecar::builder()
        .config(move |c| {
            c.proxy = Some(ProxyConfig::new(upstream_uri));
            c.header_read_timeout = SHORT;
            c.idle_timeout = SHORT;
        })
        .start()
        .await;
    let mut conn = connect(&sidecar.events_url("/")).await;
    conn.write_all(request("GET", "/slow").as_bytes())
        .await
        .unwrap();
    let status = read_answer(&mut conn).await;
    assert!(status.contains(" 200 "), "{status}");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_events_listener_makes_new_connections_wait_and_admin_still_answers() {
    let sidecar = Sidecar::builder()
        .config(|c| c.max_connections = 2)
        .start()
        .await;
    let url = sidecar.events_url("/");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(&url).await;
        conn.write_all(request("GET", "/v1/events").as_bytes())
            .await
            .unwrap();
        let status = read_answer(&mut conn).await;
        assert!(status.contains(" 405 "), "{status}");
        held.push(conn);
    }
    let mut third = connect(&url).await;
    third
        .write_all(request("GET", "/v1/events").as_bytes())
        .await
        .unwrap();
    // Not served while both slots are held: this wait is the behaviour under test.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(SHORT, third.read(&mut byte)).await;
    assert!(early.is_err(), "the third connection was served: {early:?}");

    let health = sidecar.http.get(&sidecar.admin_url("/healthz")).await;
    assert_eq!(
        health.status,
        StatusCode::OK,
        "the admin listener has its own slots"
    );

    drop(held.pop());
    let status = tokio::time::timeout(PATIENCE, read_answer(&mut third))
        .await
        .expect("served once a slot freed");
    assert!(status.contains(" 405 "), "{status}");
    sidecar.shutdown().await;
}
