//! The console's admin API over HTTP: its static files and their headers, the delivery log's
//! filters and pages, replaying a webhook's dead deliveries, the webhooks with their counts,
//! explaining a posted event, the metrics history. The page itself is driven in `browser.rs`.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, Sidecar, Target, conversion, webhook};

fn ids(deliveries: &[Value]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_locked_down_and_without_the_token() {
    let target = Target::start().await;
    let sidecar = Sidecar::builder()
        .file(
            "a.whc",
            &webhook("crm", "conversion", "", &target.url("/"), ""),
        )
        .config(|c| c.admin_token = Some("adm".into()))
        .start()
        .await;
    let page = sidecar.http.get(&sidecar.admin_url("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("<script src=\"/console.js\""));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let script = sidecar.http.get(&sidecar.admin_url("/console.js")).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // The data behind it still wants the token.
    let examples = sidecar.http.get(&sidecar.admin_url("/v1/examples")).await;
    assert_eq!(examples.status, StatusCode::UNAUTHORIZED);
    let examples = sidecar
        .http
        .send(
            Method::GET,
            &sidecar.admin_url("/v1/examples"),
            &[("authorization", "Bearer adm")],
            Bytes::new(),
        )
        .await;
    assert_eq!(examples.json()["refund-tiktok"]["type"], "refund");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filters_by_type_text_and_time_and_pages_without_gaps() {
    let target = Target::start().await;
    let rules = format!(
        "{}{}",
        webhook("crm", "conversion", "", &target.url("/c"), ""),
        webhook("refunds", "refund", "", &target.url("/r"), "")
    );
    let sidecar = Sidecar::start(&rules).await;
    for i in 0..7 {
        sidecar
            .accept(conversion(&format!("evt-{i}")).to_string())
            .await;
    }
    let refund = json!({"id": "rf-1", "type": "refund", "transaction": "ORD-9%x", "revenue": "-5"});
    sidecar.accept(refund.to_string()).await;

    let refunds = sidecar.deliveries("type=refund").await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["webhook"], "refunds");
    // The text is an event id or a transaction, matched as typed (`%` is no wildcard).
    assert_eq!(sidecar.deliveries("q=ORD-9%25x").await.len(), 1);
    assert_eq!(sidecar.deliveries("q=ORD-9x").await.len(), 0);
    assert_eq!(sidecar.deliveries("q=txn-evt-3").await.len(), 1);
    assert_eq!(sidecar.deliveries("q=evt-").await.len(), 7);

    let all = sidecar.deliveries("limit=1000").await;
    assert_eq!(all.len(), 8);
    let newest = all[0]["created_at"].as_i64().unwrap();
    let oldest = all[7]["created_at"].as_i64().unwrap();
    assert_eq!(
        sidecar
            .deliveries(&format!("since={}", newest + 1))
            .await
            .len(),
        0
    );
    assert_eq!(
        sidecar.deliveries(&format!("until={oldest}")).await.len(),
        0
    );
    assert_eq!(
        sidecar
            .deliveries(&format!("since={oldest}&until={}", newest + 1))
            .await
            .len(),
        8
    );

    // Pages of 3 follow `next` through the whole log, newest first, each row once.
    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();
    loop {
        let page = sidecar.admin_json(&format!("/v1/deliveries?{query}")).await;
        let rows = page["deliveries"].as_array().unwrap();
        seen.extend(ids(rows));
        match page["next"].as_str() {
            Some(next) => query = format!("limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));

    let bad = sidecar
        .http
        .get(&sidecar.admin_url("/v1/deliveries?since=monday"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("since"));
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_webhooks_dead_requeues_them_all_and_only_them() {
    let gone = Target::start().await;
    gone.script([Reply::status(404), Reply::status(404), Reply::status(404)]);
    let fine = Target::start().await;
    let rules = format!(
        "{}{}",
        webhook("gone", "conversion", "", &gone.url("/"), ""),
        webhook("fine", "conversion", "", &fine.url("/"), "")
    );
    let sidecar = Sidecar::start(&rules).await;
    let mut dead = Vec::new();
    for i in 0..3 {
        let answer = sidecar
            .accept(conversion(&format!("evt-{i}")).to_string())
            .await;
        for id in answer["events"][0]["deliveries"].as_array().unwrap() {
            let d = sidecar.delivery(id.as_str().unwrap()).await;
            if d["webhook"] == "gone" {
                dead.push(d["id"].as_str().unwrap().to_owned());
            }
        }
    }
    for id in &dead {
        sidecar.wait_status(id, "dead").await;
    }
    fine.wait_for(3).await;

    let webhooks = sidecar.admin_json("/v1/webhooks").await;
    let gone_row = &webhooks["webhooks"][0];
    assert_eq!(gone_row["webhook"]["name"], "gone");
    assert_eq!(gone_row["last_hour"]["dead"], 3);
    assert_eq!(gone_row["success_rate"], 0.0);
    let fine_row = &webhooks["webhooks"][1];
    assert_eq!(fine_row["last_day"]["delivered"], 3);
    assert_eq!(fine_row["success_rate"], 1.0);
    assert_eq!(webhooks["last_error"], Value::Null);

    let answer = sidecar.admin_post("/v1/webhooks/gone/replay").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["replayed"], 3);
    for id in &dead {
        let delivered = sidecar.wait_status(id, "delivered").await;
        // Every attempt is kept: the 404 before the replay and the 200 after it.
        let history: Vec<_> = delivered["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["outcome"].clone(), a["status_code"].clone()))
            .collect();
        assert_eq!(
            history,
            [
                (json!("dead"), json!(404)),
                (json!("delivered"), json!(200))
            ]
        );
    }
    assert_eq!(fine.count(), 3, "delivered deliveries are not sent again");
    let again = sidecar.admin_post("/v1/webhooks/gone/replay").await;
    assert_eq!(again.json()["replayed"], 0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_explained_by_the_served_rules_and_nothing_is_stored() {
    let target = Target::start().await;
    let rules = format!(
        "{}{}",
        webhook(
            "big",
            "conversion",
            "revenue > 50",
            &target.url("/[transaction]"),
            ""
        ),
        webhook("small", "conversion", "revenue < 50", &target.url("/"), "")
    );
    let sidecar = Sidecar::start(&rules).await;
    let answer = sidecar
        .http
        .post_json(
            &sidecar.admin_url("/v1/explain"),
            conversion("evt-x").to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["event"], json!({"id": "evt-x", "type": "conversion"}));
    let big = &json["webhooks"][0];
    assert_eq!(
        (big["webhook"].as_str(), big["fires"].as_bool()),
        (Some("big"), Some(true))
    );
    assert_eq!(big["conditions"][0]["value"], "79.9");
    assert!(big["url"].as_str().unwrap().ends_with("/txn-evt-x"));
    assert_eq!(json["webhooks"][1]["fires"], false);
    assert!(sidecar.deliveries("").await.is_empty(), "nothing stored");
    assert_eq!(target.count(), 0, "nothing sent");

    let bad = sidecar
        .http
        .post_json(
            &sidecar.admin_url("/v1/explain"),
            r#"{"id": "e", "type": "conversion", "revenue": "lots"}"#,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("revenue"), "{}", bad.text());

    let stored = sidecar
        .http
        .get(&sidecar.admin_url("/v1/events/nope"))
        .await;
    assert_eq!(stored.status, StatusCode::NOT_FOUND);
    sidecar.accept(conversion("evt-s").to_string()).await;
    let stored = sidecar.admin_json("/v1/events/evt-s").await;
    assert_eq!(stored["transaction"], "txn-evt-s");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_has_a_sample_from_start() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook("crm", "conversion", "", &target.url("/"), "")).await;
    let history = crate::support::wait_until_async(
        "the first sample",
        || sidecar.admin_json("/v1/history"),
        |h| !h["samples"].as_array().unwrap().is_empty(),
    )
    .await;
    assert_eq!(history["every_ms"], 10_000);
    let sample = &history["samples"][0];
    for key in [
        "at",
        "queue_depth",
        "events",
        "delivered",
        "retried",
        "dead",
    ] {
        assert!(sample[key].is_i64() || sample[key].is_u64(), "{key}");
    }
    sidecar.shutdown().await;
}
