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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_follow_the_store() {
    let sidecar =
        Sidecar::start(&webhook("crm", "conversion", "", "http://127.0.0.1:9/", "")).await;
    let status = |path: &'static str| {
        let sidecar = &sidecar;
        async move {
            let answer = sidecar.http.get(&sidecar.admin_url(path)).await;
            (answer.status.as_u16(), answer.json())
        }
    };
    let (code, ready) = status("/readyz").await;
    assert_eq!((code, &ready["status"]), (200, &"ready".into()), "{ready}");
    assert_eq!(status("/healthz").await.0, 200);

    sidecar.break_store();
    let refused = sidecar
        .post_events(conversion("evt-broken").to_string())
        .await;
    assert_eq!(refused.status.as_u16(), 503);
    let (code, health) = status("/healthz").await;
    assert_eq!(
        (code, &health["status"]),
        (503, &"failing".into()),
        "{health}"
    );
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("the store is broken (test)"), "{reason}");
    let (code, ready) = status("/readyz").await;
    assert_eq!(
        (code, &ready["status"]),
        (503, &"not ready".into()),
        "{ready}"
    );
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("the outbox does not take writes"),
        "{ready}"
    );

    // Mended, the probe write succeeds and both recover without a post.
    sidecar.mend_store();
    assert_eq!(status("/readyz").await.0, 200);
    assert_eq!(status("/healthz").await.0, 200);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_outbox_stops_the_start_with_a_way_out() {
    let sidecar =
        Sidecar::start(&webhook("crm", "conversion", "", "http://127.0.0.1:9/", "")).await;
    sidecar.accept(conversion("evt-1").to_string()).await;
    let stopped = sidecar.stop().await;
    let config = stopped.config.clone();
    let db = config.data.join("outbox.db");
    std::fs::File::create(&db).expect("truncate outbox.db to 0 bytes");
    for side in ["outbox.db-wal", "outbox.db-shm"] {
        let _ = std::fs::remove_file(config.data.join(side));
    }
    let err =
        match whc::sidecar::start(config.clone(), std::sync::Arc::new(stopped.env.clone())).await {
            Err(err) => err.to_string(),
            Ok(_) => panic!("the sidecar started on an emptied outbox"),
        };
    assert!(err.contains("is missing or empty"), "{err}");
    assert!(err.contains("outbox.created"), "{err}");
    assert!(
        err.contains("to start with an empty outbox on purpose"),
        "{err}"
    );
}
