//! Refused posts store nothing.

use hyper::StatusCode;
use serde_json::json;

use crate::support::{Sidecar, Target, conversion, webhook};

fn counter(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample `{sample}` in:\n{metrics}"))
        .parse()
        .expect("a number")
}

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
