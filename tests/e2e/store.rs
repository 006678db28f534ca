//! The outbox under trouble: records it fails to write, corrupt or missing files, health.

use crate::support::{Sidecar, Target, conversion, counter, wait_until_async, webhook};

/// The one delivery id of an accepted single event.
fn delivery_id(answer: &serde_json::Value) -> String {
    answer["events"][0]["deliveries"][0]
        .as_str()
        .expect("a delivery id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_store_cannot_write_is_kept_and_the_request_not_resent() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook("crm", "conversion", "", &target.url("/hook"), "")).await;
    sidecar.break_records();

    let id = delivery_id(
        &sidecar
            .accept(conversion("evt-full-disk").to_string())
            .await,
    );
    target.wait_for(1).await;
    // The record fails again and again; the receiver must not hear of it again meanwhile.
    wait_until_async(
        "three failed tries to record the attempt",
        || sidecar.metrics(),
        |m| counter(m, "whc_delivery_record_failures_total") >= 3.0,
    )
    .await;
    assert_eq!(target.count(), 1, "the delivered request was sent again");

    sidecar.mend_store();
    let delivered = sidecar.wait_status(&id, "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(delivered["last_status_code"], 200);
    assert_eq!(target.count(), 1);
    let metrics = sidecar.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            "whc_delivery_attempts_total{outcome=\"delivered\"}"
        ),
        1.0
    );
    sidecar.shutdown().await;
    target.stop().await;
}
