//! Proxy mode: the tracker's clients get the upstream's exact answer, and intercepted event
//! bodies are fanned out too.

use hyper::{Method, StatusCode};

use whc::sidecar::{ProxyConfig, ServeConfig};

use crate::support::{Reply, Sidecar, Target, conversion, counter, webhook};

/// Intercepted bodies the sidecar forwarded without matching them.
async fn invalid_events(sidecar: &Sidecar) -> f64 {
    counter(
        &sidecar.metrics().await,
        "whc_proxy_requests_total{result=\"invalid_event\"}",
    )
}

/// A sidecar proxying to `upstream`, with one webhook, `sales`, that posts conversions to
/// `hook_url`; `tweak` adjusts the rest of its configuration.
async fn proxying(
    upstream: hyper::Uri,
    hook_url: &str,
    tweak: impl FnOnce(&mut ServeConfig) + 'static,
) -> Sidecar {
    Sidecar::builder()
        .file(
            "main.whc",
            &webhook("sales", "conversion", "", hook_url, ""),
        )
        .config(move |c| {
            c.proxy = Some(ProxyConfig::new(upstream));
            tweak(c);
        })
        .start()
        .await
}

fn upstream_reply() -> Reply {
    Reply::Answer {
        status: 203,
        headers: vec![
            ("x-upstream".into(), "tracker-7".into()),
            ("content-type".into(), "text/x-tracker".into()),
        ],
        body: "the tracker's own answer".into(),
    }
}

fn assert_upstream_answer(answer: &crate::support::Answer) {
    assert_eq!(answer.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
    assert_eq!(
        answer
            .headers
            .get("x-upstream")
            .map(|v| v.to_str().unwrap()),
        Some("tracker-7")
    );
    assert_eq!(
        answer
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/x-tracker")
    );
    assert_eq!(answer.text(), "the tracker's own answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_gets_the_upstreams_answer_and_intercepted_events_fan_out() {
    let upstream = Target::start().await;
    upstream.set_default(upstream_reply());
    let hook = Target::start().await;
    let sidecar = proxying(
        upstream.url("/").parse().unwrap(),
        &hook.url("/sale?txn=[transaction]"),
        |_| {},
    )
    .await;

    // The intercepted route.
    let event = conversion("evt-proxy").to_string();
    let answer = sidecar
        .http
        .send(
            Method::POST,
            &sidecar.events_url("/v1/events?src=ads"),
            &[("content-type", "application/json"), ("x-client", "c1")],
            event.clone(),
        )
        .await;
    assert_upstream_answer(&answer);
    let forwarded = upstream.wait_for(1).await;
    assert_eq!(forwarded[0].method, Method::POST);
    assert_eq!(forwarded[0].path_and_query, "/v1/events?src=ads");
    assert_eq!(forwarded[0].header("x-client"), Some("c1"));
    assert_eq!(
        forwarded[0].body,
        event.as_bytes(),
        "the body goes on unchanged"
    );
    let fired = hook.wait_for(1).await;
    assert_eq!(
        fired[0].query_pairs(),
        vec![("txn".into(), "txn-evt-proxy".into())]
    );
    assert_eq!(fired[0].json()["event"]["id"], "evt-proxy");

    // Another path is only forwarded.
    let answer = sidecar
        .http
        .send(
            Method::GET,
            &sidecar.events_url("/stats/today?x=1"),
            &[("x-client", "c2")],
            bytes::Bytes::new(),
        )
        .await;
    assert_upstream_answer(&answer);
    let forwarded = upstream.wait_for(2).await;
    assert_eq!(forwarded[1].method, Method::GET);
    assert_eq!(forwarded[1].path_and_query, "/stats/today?x=1");
    assert_eq!(forwarded[1].header("x-client"), Some("c2"));

    // An intercepted body that is no event is still the tracker's business.
    let answer = sidecar
        .http
        .post_json(&sidecar.events_url("/v1/events"), "{\"not\": \"an event\"")
        .await;
    assert_upstream_answer(&answer);
    let forwarded = upstream.wait_for(3).await;
    assert_eq!(forwarded[2].body.as_ref(), b"{\"not\": \"an event\"");
    assert_eq!(invalid_events(&sidecar).await, 1.0);
    // Counted once, as the proxy's: it was not an event post refused to a client.
    assert_eq!(
        counter(
            &sidecar.metrics().await,
            "whc_events_total{result=\"rejected\"}"
        ),
        0.0
    );
    assert_eq!(
        counter(
            &sidecar.metrics().await,
            "whc_proxy_requests_total{result=\"forwarded\"}"
        ),
        3.0
    );

    // Exactly one delivery: the valid event's.
    let all = sidecar.deliveries("").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    sidecar
        .wait_status(all[0]["id"].as_str().unwrap(), "delivered")
        .await;
    hook.wait("no more requests", |r| r.len() == 1).await;
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusal_is_returned_as_is_and_nothing_fans_out() {
    let upstream = Target::start().await;
    upstream.script([Reply::Answer {
        status: 500,
        headers: vec![("x-upstream".into(), "sad".into())],
        body: "tracker down".into(),
    }]);
    let hook = Target::start().await;
    let sidecar = proxying(upstream.url("/").parse().unwrap(), &hook.url("/"), |_| {}).await;

    let answer = sidecar
        .http
        .post_json(
            &sidecar.events_url("/v1/events"),
            conversion("evt-500").to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer
            .headers
            .get("x-upstream")
            .map(|v| v.to_str().unwrap()),
        Some("sad")
    );
    assert_eq!(answer.text(), "tracker down");
    assert_eq!(upstream.count(), 1);
    assert!(
        sidecar.deliveries("").await.is_empty(),
        "the tracker refused it"
    );

    // The same event again, now that the tracker takes it: it fans out (it was not stored
    // the first time, so it is no duplicate).
    let answer = sidecar
        .http
        .post_json(
            &sidecar.events_url("/v1/events"),
            conversion("evt-500").to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let fired = hook.wait_for(1).await;
    assert_eq!(fired[0].json()["event"]["id"], "evt-500");
    assert_eq!(invalid_events(&sidecar).await, 0.0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream_uri: hyper::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let hook = Target::start().await;
    let sidecar = proxying(upstream_uri, &hook.url("/"), |_| {}).await;
    let answer = sidecar
        .http
        .post_json(
            &sidecar.events_url("/v1/events"),
            conversion("evt-502").to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    assert!(sidecar.deliveries("").await.is_empty());
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_body_over_the_limit_is_forwarded_whole_and_not_matched() {
    let upstream = Target::start().await;
    upstream.set_default(upstream_reply());
    let hook = Target::start().await;
    let sidecar = proxying(upstream.url("/").parse().unwrap(), &hook.url("/"), |c| {
        c.max_body = 1000;
    })
    .await;

    // A valid event, padded past the limit: the tracker gets all of it, the rules none.
    let event = conversion("evt-big").to_string();
    let body = format!("{event}{}", " ".repeat(5000));
    let answer = sidecar
        .http
        .post_json(&sidecar.events_url("/v1/events"), body.clone())
        .await;
    assert_upstream_answer(&answer);
    let forwarded = upstream.wait_for(1).await;
    assert_eq!(forwarded[0].body.as_ref(), body.as_bytes());
    assert_eq!(invalid_events(&sidecar).await, 1.0);

    // The same event within the limit is matched as usual.
    let answer = sidecar
        .http
        .post_json(&sidecar.events_url("/v1/events"), event)
        .await;
    assert_upstream_answer(&answer);
    let fired = hook.wait_for(1).await;
    assert_eq!(fired[0].json()["event"]["id"], "evt-big");
    assert_eq!(sidecar.deliveries("").await.len(), 1);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_counted_as_unstored_events_not_invalid_ones() {
    let upstream = Target::start().await;
    upstream.set_default(upstream_reply());
    let hook = Target::start().await;
    let sidecar = proxying(upstream.url("/").parse().unwrap(), &hook.url("/"), |_| {}).await;
    sidecar.break_store();
    let answer = sidecar
        .http
        .post_json(
            &sidecar.events_url("/v1/events"),
            conversion("evt-outage").to_string(),
        )
        .await;
    // The tracker's answer stands; the valid event is counted as one the store failed to take.
    assert_upstream_answer(&answer);
    let metrics = sidecar.metrics().await;
    assert_eq!(invalid_events(&sidecar).await, 0.0, "{metrics}");
    assert_eq!(
        counter(&metrics, "whc_events_total{result=\"unstored\"}"),
        1.0
    );
    assert_eq!(
        counter(&metrics, "whc_events_total{result=\"rejected\"}"),
        0.0
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_is_a_504_after_the_upstream_timeout() {
    let upstream = Target::start().await;
    upstream.set_default(Reply::Hang);
    let hook = Target::start().await;
    let sidecar = proxying(upstream.url("/").parse().unwrap(), &hook.url("/"), |c| {
        if let Some(proxy) = &mut c.proxy {
            proxy.timeout = std::time::Duration::from_millis(300);
        }
    })
    .await;
    let answer = sidecar
        .http
        .post_json(
            &sidecar.events_url("/v1/events"),
            conversion("evt-hung").to_string(),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.text()
    );
    assert!(answer.text().contains("300ms"), "{}", answer.text());
    // The upstream never took it, so neither did the rules.
    assert!(sidecar.deliveries("").await.is_empty());
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercept_naming_a_source_maps_the_trackers_own_posts() {
    let upstream = Target::start().await;
    upstream.set_default(upstream_reply());
    let hook = Target::start().await;
    let rules = format!(
        r#"
source tracker_json {{
    route post "/in/tracker-json"
    secret header "X-Tracker-Key" = env("TRACKER_KEY")
    id = json "/conversion/id"
    status = json "/conversion/status" {{ "approved" -> conversion, "rejected" -> refund }}
    revenue = json "/conversion/payout"
    last.externalId = json "/click/gclid"
}}

webhook network {{
    on conversion
    get "{}"
}}
"#,
        hook.url("/pb?click=[last.externalId]&sum=[revenue]")
    );
    let upstream_uri: hyper::Uri = upstream.url("/").parse().unwrap();
    let sidecar = Sidecar::builder()
        .file("main.whc", &rules)
        .env("TRACKER_KEY", "k1")
        .config(move |c| {
            let mut proxy = ProxyConfig::new(upstream_uri);
            proxy.intercept = vec![
                whc::sidecar::config::Intercept::parse("POST /api/conversions source=tracker_json")
                    .unwrap(),
            ];
            c.proxy = Some(proxy);
        })
        .start()
        .await;
    let body =
        r#"{"conversion":{"id":"c-1","status":"approved","payout":"8.5"},"click":{"gclid":"G-7"}}"#;
    let answer = sidecar
        .http
        .send(
            Method::POST,
            &sidecar.events_url("/api/conversions"),
            &[
                ("content-type", "application/json"),
                ("x-tracker-key", "k1"),
            ],
            body,
        )
        .await;
    assert_upstream_answer(&answer);
    let fired = hook.wait_for(1).await;
    assert_eq!(
        fired[0].query_pairs(),
        vec![("click".into(), "G-7".into()), ("sum".into(), "8.5".into())]
    );
    // Without the source's secret: forwarded, answered by the tracker, not matched.
    let answer = sidecar
        .http
        .send(
            Method::POST,
            &sidecar.events_url("/api/conversions"),
            &[("content-type", "application/json")],
            body.replace("c-1", "c-2"),
        )
        .await;
    assert_upstream_answer(&answer);
    assert_eq!(upstream.wait_for(2).await.len(), 2);
    assert_eq!(sidecar.deliveries("").await.len(), 1);
    sidecar.shutdown().await;
}
