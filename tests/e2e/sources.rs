//! Tracker sources: real postback requests (GET with a query, form and JSON posts) on a
//! source's route, mapped to events whose deliveries arrive at a loopback receiver.

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::support::{Http, Sidecar, Target};

/// A Voluum-like source and a webhook that sends conversions back to the ad network with its
/// own click id.
fn rules(target: &Target) -> String {
    format!(
        r#"
source tracker {{
    route get, post "/in/tracker"
    secret query "token" = env("TRACKER_TOKEN")
    id = hash(type, transaction, last.clickId)
    type = param "et" {{ "sale" -> conversion, "lead" -> event 2, "rejected" -> refund }}
    negative revenue -> refund
    revenue = param "payout"
    currency = param "cur"
    transaction = param "txid"
    last.clickId = param "cid"
    last.externalId = param "gclid"
    isFromGoogleAds = param "gads"
    utm_source = json "/click/source"
    occurredAt = param "ts"
    status = param "st" {{ "approved" -> conversion, "pending" -> ignore, "hold" -> ignore }}
}}

webhook network {{
    on conversion, refund, event 2
    post "{}?click=[last.externalId]&cid=[clickId]&amount=[revenue]&cur=[currency]&e=[event]&g=[isFromGoogleAds]&s=[utm_source]&t=[timestamp]"
}}
"#,
        target.url("/pb")
    )
}

async fn start(target: &Target) -> Sidecar {
    Sidecar::builder()
        .file("sources.whc", &rules(target))
        .env("TRACKER_TOKEN", "s3cret")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_postback_is_mapped_and_delivered_with_the_networks_click_id() {
    let target = Target::start().await;
    let sidecar = start(&target).await;
    let http = Http::new();
    let url = sidecar.events_url(
        "/in/tracker?token=s3cret&et=sale&payout=12.50&cur=EUR&txid=T1&cid=C1&gclid=G%2B1&gads=yes",
    );
    let answer = http.get(&url).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["webhooks"][0], "network", "{}", answer.text());
    let got = target.wait_for(1).await;
    let q = got[0].query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("click").as_deref(), Some("G+1"));
    assert_eq!(get("cid").as_deref(), Some("C1"));
    assert_eq!(get("amount").as_deref(), Some("12.5"));
    assert_eq!(get("cur").as_deref(), Some("EUR"));
    assert_eq!(get("e").as_deref(), Some("conversion"));
    assert_eq!(get("g").as_deref(), Some("true"));

    // The tracker retries the same postback: the same id, nothing fired again.
    let again = http.get(&url).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["duplicate"], true, "{}", again.text());
    assert_eq!(again.json()["id"], answer.json()["id"]);
    assert_eq!(sidecar.deliveries("").await.len(), 1);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_and_json_posts_are_mapped_the_same_way() {
    let target = Target::start().await;
    let sidecar = start(&target).await;
    let http = Http::new();
    let url = sidecar.events_url("/in/tracker?token=s3cret");
    let form = http
        .send(
            Method::POST,
            &url,
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from("et=lead&txid=F1&cid=C2&gclid=fb+x"),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text());
    let json = http
        .post_json(
            &url,
            r#"{"et":"sale","payout":-5,"txid":"J1","cid":"C3","click":{"source":"google"}}"#,
        )
        .await;
    assert_eq!(json.status, StatusCode::OK, "{}", json.text());
    let got = target.wait_for(2).await;
    let mut seen: Vec<String> = got.iter().map(|r| r.query().to_owned()).collect();
    seen.sort();
    assert!(
        seen.iter()
            .any(|q| q.contains("e=event2") && q.contains("click=fb%20x")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|q| q.contains("e=refund") && q.contains("amount=-5") && q.contains("s=google")),
        "a negative payout is a refund: {seen:?}"
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_postbacks_name_the_parameter_and_store_nothing() {
    let target = Target::start().await;
    let sidecar = start(&target).await;
    let http = Http::new();
    for (query, status, key) in [
        ("token=nope&et=sale", StatusCode::UNAUTHORIZED, "token"),
        ("et=sale", StatusCode::UNAUTHORIZED, "token"),
        ("token=s3cret&et=upsell", StatusCode::BAD_REQUEST, "et"),
        ("token=s3cret", StatusCode::BAD_REQUEST, "et"),
        (
            "token=s3cret&et=sale&payout=lots",
            StatusCode::BAD_REQUEST,
            "payout",
        ),
        (
            "token=s3cret&et=sale&gads=maybe",
            StatusCode::BAD_REQUEST,
            "gads",
        ),
        (
            "token=s3cret&et=sale&cid=1&cid=2",
            StatusCode::BAD_REQUEST,
            "cid",
        ),
    ] {
        let answer = http
            .get(&sidecar.events_url(&format!("/in/tracker?{query}")))
            .await;
        assert_eq!(answer.status, status, "{query}: {}", answer.text());
        assert_eq!(answer.json()["key"], key, "{query}: {}", answer.text());
    }
    let bad_json = http
        .post_json(
            &sidecar.events_url("/in/tracker?token=s3cret"),
            r#"{"et":"sale","et":"lead"}"#,
        )
        .await;
    assert_eq!(
        bad_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_json.text()
    );
    let put = http
        .send(
            Method::PUT,
            &sidecar.events_url("/in/tracker"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers["allow"], "GET, POST");
    let elsewhere = http.get(&sidecar.events_url("/in/other")).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert!(sidecar.deliveries("").await.is_empty());
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_status_is_answered_200_and_stores_nothing_until_it_settles() {
    let target = Target::start().await;
    let sidecar = start(&target).await;
    let http = Http::new();
    let pending =
        http.get(&sidecar.events_url(
            "/in/tracker?token=s3cret&et=sale&st=pending&txid=P1&cid=C9&ts=1764238500",
        ))
        .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text());
    assert_eq!(pending.json()["ignored"], true, "{}", pending.text());
    assert!(
        pending.json()["reason"]
            .as_str()
            .unwrap()
            .contains("\"pending\""),
        "{}",
        pending.text()
    );
    assert!(sidecar.deliveries("").await.is_empty());
    assert!(
        sidecar
            .metrics()
            .await
            .contains("whc_events_total{result=\"ignored\"} 1")
    );

    // The tracker settles it: the same conversion, approved, fires once. Its Unix time is
    // written as RFC 3339.
    let approved = http
        .get(&sidecar.events_url(
            "/in/tracker?token=s3cret&et=sale&st=approved&txid=P1&cid=C9&ts=1764238500",
        ))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    assert_eq!(approved.json()["duplicate"], false, "{}", approved.text());
    let got = target.wait_for(1).await;
    assert!(
        got[0].query().contains("t=2025-11-27T10%3A15%3A00Z"),
        "{}",
        got[0].query()
    );

    // A time that is neither RFC 3339 nor a Unix time is refused, naming the parameter.
    let bad = http
        .get(&sidecar.events_url("/in/tracker?token=s3cret&et=sale&txid=P2&ts=27.11.2025"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    assert_eq!(bad.json()["key"], "ts", "{}", bad.text());
    assert_eq!(sidecar.deliveries("").await.len(), 1);
    sidecar.shutdown().await;
}
