//! Refused posts store nothing.

use hyper::StatusCode;
use serde_json::json;

use crate::support::{Sidecar, Target, conversion, counter, webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_oversized_posts_are_refused_and_store_nothing() {
    let target = Target::start().await;
    let sidecar = Sidecar::builder()
        .file(
            "all.whc",
            &webhook("all", "conversion, refund, event", "", &target.url("/"), ""),
        )
        .config(|c| c.max_body = 512)
        .start()
        .await;

    let bad_json = sidecar.post_events("{\"id\": \"e1\", \"type\": ").await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(bad_json.json()["error"].is_string(), "{}", bad_json.text());

    let mut wrong_type = conversion("e2");
    wrong_type["revenue"] = json!("lots");
    let wrong_type = sidecar.post_events(wrong_type.to_string()).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.json()["key"], "revenue", "{}", wrong_type.text());
    assert!(
        wrong_type.json()["error"]
            .as_str()
            .unwrap()
            .contains("the string \"lots\""),
        "{}",
        wrong_type.text()
    );

    let mut unknown = conversion("e3");
    unknown["type"] = json!("purchase");
    let unknown = sidecar.post_events(unknown.to_string()).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.json()["key"], "type", "{}", unknown.text());

    let mut big = conversion("e4");
    big["padding"] = json!("x".repeat(2048));
    let big = sidecar.post_events(big.to_string()).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.text());

    // A batch with one bad event stores none of them.
    let mut batch_bad = conversion("e6");
    batch_bad["revenue"] = json!(true);
    let batch = json!([conversion("e5"), batch_bad]).to_string();
    let batch = sidecar.post_events(batch).await;
    assert_eq!(batch.status, StatusCode::BAD_REQUEST);

    assert!(sidecar.deliveries("").await.is_empty());
    let metrics = sidecar.metrics().await;
    assert_eq!(
        counter(&metrics, "whc_events_total{result=\"rejected\"}"),
        5.0
    );
    assert_eq!(
        counter(&metrics, "whc_events_total{result=\"accepted\"}"),
        0.0
    );
    assert_eq!(counter(&metrics, "whc_queue_depth"), 0.0);

    // Nothing of the refused events was kept: their ids are new to the store.
    for id in ["e2", "e3", "e5"] {
        let answer = sidecar.accept(conversion(id).to_string()).await;
        assert_eq!(answer["events"][0]["duplicate"], false, "{id}");
    }
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_token_is_required_when_set() {
    let target = Target::start().await;
    let sidecar = Sidecar::builder()
        .file(
            "all.whc",
            &webhook("all", "conversion", "", &target.url("/"), ""),
        )
        .config(|c| c.ingest_token = Some("s3cret".into()))
        .start()
        .await;
    let url = sidecar.events_url("/v1/events");
    let body = conversion("tok-1").to_string();
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "s3cret")],
    ] {
        let answer = sidecar
            .http
            .send(hyper::Method::POST, &url, &headers, body.clone())
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    assert!(sidecar.deliveries("").await.is_empty());
    let answer = sidecar
        .http
        .send(
            hyper::Method::POST,
            &url,
            &[("authorization", "Bearer s3cret")],
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(answer.json()["events"][0]["duplicate"], false);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_per_event_and_repeats_inside_it_are_duplicates() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook("sales", "conversion", "", &target.url("/"), "")).await;
    let mut refund = conversion("b-2");
    refund["type"] = json!("refund");
    let batch = json!([conversion("b-1"), refund, conversion("b-1")]).to_string();
    let answer = sidecar.accept(batch).await;
    let events = answer["events"].as_array().unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["id"].clone(),
                e["duplicate"].clone(),
                e["webhooks"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!("b-1"), json!(false), json!(["sales"])),
            (json!("b-2"), json!(false), json!([])),
            (json!("b-1"), json!(true), json!([])),
        ]
    );
    let got = target.wait_for(1).await;
    let all = sidecar.deliveries("").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    sidecar
        .wait_status(all[0]["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(got[0].json()["event"]["id"], "b-1");
    assert_eq!(target.count(), 1);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_max_body_is_accepted_and_one_byte_more_is_not() {
    let target = Target::start().await;
    let sidecar = Sidecar::builder()
        .file(
            "all.whc",
            &webhook("all", "conversion", "", &target.url("/"), ""),
        )
        .config(|c| c.max_body = 600)
        .start()
        .await;
    let sized = |id: &str, len: usize| {
        let mut event = conversion(id);
        event["padding"] = json!("");
        let base = event.to_string().len();
        event["padding"] = json!("x".repeat(len - base));
        let text = event.to_string();
        assert_eq!(text.len(), len);
        text
    };
    let over = sidecar.post_events(sized("edge-2", 601)).await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    let exact = sidecar.post_events(sized("edge-1", 600)).await;
    assert_eq!(exact.status, StatusCode::ACCEPTED, "{}", exact.text());
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_an_id_is_known_by_the_id_it_was_given_everywhere_and_after_a_restart() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook("crm", "conversion", "", &target.url("/"), "")).await;
    let mut event = conversion("unused");
    event.as_object_mut().expect("object").remove("id");
    let answer = sidecar.accept(event.to_string()).await;
    let id = answer["events"][0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert_eq!(answer["events"][0]["duplicate"], false);

    // The receiver, the admin API and a second post all know the event by that id.
    let received = target.wait_for(1).await;
    assert_eq!(received[0].json()["event"]["id"], id.as_str());
    let stored = sidecar.admin_json(&format!("/v1/events/{id}")).await;
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["transaction"], "txn-unused");

    let sidecar = sidecar.restart().await;
    let stored = sidecar.admin_json(&format!("/v1/events/{id}")).await;
    assert_eq!(stored["id"], id.as_str());
    event["id"] = json!(id);
    let again = sidecar.accept(event.to_string()).await;
    assert_eq!(again["events"][0]["duplicate"], true, "{again}");
    assert_eq!(
        again["events"][0]["deliveries"],
        answer["events"][0]["deliveries"]
    );
    // The next event without an id gets another.
    event.as_object_mut().expect("object").remove("id");
    let next = sidecar.accept(event.to_string()).await;
    assert_ne!(next["events"][0]["id"], id.as_str());
    assert_eq!(next["events"][0]["duplicate"], false);
    sidecar.shutdown().await;
}
