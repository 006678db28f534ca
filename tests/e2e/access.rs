//! Who may use the listeners: the ingest token (direct and proxy mode) and the admin API's
//! origin, Host and token checks.

use hyper::{Method, StatusCode};

use whc::sidecar::ProxyConfig;

use crate::support::{Sidecar, Target, conversion, counter, webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_proxy_mode_an_intercepted_post_without_the_ingest_token_is_forwarded_not_matched() {
    let upstream = Target::start().await;
    let hook = Target::start().await;
    let upstream_uri: hyper::Uri = upstream.url("/").parse().unwrap();
    let sidecar = Sidecar::builder()
        .file(
            "main.whc",
            &webhook("sales", "conversion", "", &hook.url("/sale"), ""),
        )
        .config(move |c| {
            c.proxy = Some(ProxyConfig::new(upstream_uri));
            c.ingest_token = Some("s3cret".into());
        })
        .start()
        .await;
    let url = sidecar.events_url("/v1/events");
    let refused: [&[(&str, &str)]; 4] = [
        &[],
        &[("authorization", "Bearer wrong")],
        &[("authorization", "Bearer s3cre")],
        &[("authorization", "Bearer s3cret-and-more")],
    ];
    for (i, headers) in refused.iter().enumerate() {
        let event = conversion(&format!("unauthorised-{i}")).to_string();
        let answer = sidecar.http.send(Method::POST, &url, headers, event).await;
        // The tracker's own answer: its authentication is its business.
        assert_eq!(answer.status, StatusCode::OK, "{headers:?}");
    }
    upstream.wait_for(refused.len()).await;
    // Matching happens before the answer goes back: nothing was stored.
    assert!(sidecar.deliveries("").await.is_empty());
    let metrics = sidecar.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            "whc_proxy_requests_total{result=\"unauthorised\"}"
        ),
        refused.len() as f64
    );
    assert_eq!(
        counter(&metrics, "whc_proxy_requests_total{result=\"forwarded\"}"),
        refused.len() as f64
    );

    let answer = sidecar
        .http
        .send(
            Method::POST,
            &url,
            &[("authorization", "Bearer s3cret")],
            conversion("authorised").to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let forwarded = upstream.wait_for(refused.len() + 1).await;
    assert_eq!(
        forwarded.last().unwrap().header("authorization"),
        Some("Bearer s3cret"),
        "the token goes on to the tracker"
    );
    let stored = sidecar.deliveries("").await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0]["event"], "authorised");
    hook.wait_for(1).await;
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_token_that_is_a_prefix_or_an_extension_is_refused() {
    let sidecar = Sidecar::builder()
        .config(|c| c.ingest_token = Some("s3cret".into()))
        .start()
        .await;
    let url = sidecar.events_url("/v1/events");
    let body = conversion("tok").to_string();
    for token in [
        "Bearer s3cre",
        "Bearer s3cret0",
        "Bearer ",
        "bearer s3cretx",
    ] {
        let answer = sidecar
            .http
            .send(
                Method::POST,
                &url,
                &[("authorization", token)],
                body.clone(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
    }
    // The scheme's name is case-insensitive (RFC 9110).
    let answer = sidecar
        .http
        .send(
            Method::POST,
            &url,
            &[("authorization", "bearer s3cret")],
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    sidecar.shutdown().await;
}
