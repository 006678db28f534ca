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

/// Whether deliveries are paused, by the metrics gauge.
async fn paused(sidecar: &Sidecar) -> f64 {
    counter(&sidecar.metrics().await, "whc_deliveries_paused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_cannot_pause_deliveries() {
    let sidecar = Sidecar::builder().start().await;
    let pause = sidecar.admin_url("/v1/deliveries/pause");
    for origin in ["https://evil.example", "null"] {
        let answer = sidecar
            .http
            .send(Method::POST, &pause, &[("origin", origin)], "")
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(answer.json()["error"].is_string(), "{}", answer.text());
    }
    assert_eq!(paused(&sidecar).await, 0.0, "nothing was paused");

    // The admin listener's own pages may.
    let own = sidecar.admin_url("").replace("127.0.0.1", "localhost");
    let answer = sidecar
        .http
        .send(Method::POST, &pause, &[("origin", &own)], "")
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(paused(&sidecar).await, 1.0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_is_refused() {
    let sidecar = Sidecar::builder().start().await;
    let port = sidecar.admin_url("").rsplit(':').next().unwrap().to_owned();
    let evil = format!("evil.example:{port}");
    for (method, path) in [
        (Method::GET, "/v1/deliveries"),
        (Method::POST, "/v1/deliveries/pause"),
    ] {
        let answer = sidecar
            .http
            .send(method, &sidecar.admin_url(path), &[("host", &evil)], "")
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.text().contains("evil.example"), "{}", answer.text());
    }
    assert_eq!(paused(&sidecar).await, 0.0, "nothing was paused");
    let localhost = format!("localhost:{port}");
    let answer = sidecar
        .http
        .send(
            Method::GET,
            &sidecar.admin_url("/v1/deliveries"),
            &[("host", &localhost)],
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_only_health_answers_without_it() {
    let sidecar = Sidecar::builder()
        .config(|c| c.admin_token = Some("adm1n".into()))
        .start()
        .await;
    let answer = sidecar.http.get(&sidecar.admin_url("/healthz")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let pause = sidecar.admin_url("/v1/deliveries/pause");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer adm1"),
        Some("adm1n"),
    ] {
        let headers: Vec<_> = auth.iter().map(|a| ("authorization", *a)).collect();
        for (method, url) in [
            (Method::GET, sidecar.admin_url("/metrics")),
            (Method::GET, sidecar.admin_url("/v1/deliveries")),
            (Method::POST, pause.clone()),
        ] {
            let answer = sidecar.http.send(method, &url, &headers, "").await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{url} {auth:?}");
            assert_eq!(
                answer.headers.get("www-authenticate").unwrap(),
                "Bearer",
                "{url}"
            );
        }
    }
    let right = [("authorization", "Bearer adm1n")];
    let answer = sidecar.http.send(Method::POST, &pause, &right, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let metrics = sidecar
        .http
        .send(Method::GET, &sidecar.admin_url("/metrics"), &right, "")
        .await;
    assert_eq!(counter(&metrics.text(), "whc_deliveries_paused"), 1.0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_admin_api_is_read_only_without_a_token() {
    let sidecar = Sidecar::builder()
        .config(|c| c.admin_listen = std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
        .start()
        .await;
    let port = sidecar.admin_url("").rsplit(':').next().unwrap().to_owned();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let answer = sidecar.http.get(&url("/v1/deliveries")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let answer = sidecar
        .http
        .send(Method::POST, &url("/v1/deliveries/pause"), &[], "")
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert!(answer.text().contains("--admin-token"), "{}", answer.text());
    let metrics = sidecar.http.get(&url("/metrics")).await.text();
    assert_eq!(counter(&metrics, "whc_deliveries_paused"), 0.0);
    sidecar.shutdown().await;
}
