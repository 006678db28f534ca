//! Attempts, retries, timeouts, dead deliveries and replays.

use hyper::StatusCode;
use whc::sidecar::ServeConfig;

use crate::support::{Reply, Sidecar, Target, Wire, conversion, counter, webhook};

fn delivery_ids(answer: &serde_json::Value) -> Vec<String> {
    answer["events"][0]["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_a_200_retries_with_the_same_idempotency_key() {
    let target = Target::start().await;
    target.script([Reply::with_body(500, "try later"), Reply::status(200)]);
    let sidecar = Sidecar::start(&webhook("flaky", "conversion", "", &target.url("/"), "")).await;

    let answer = sidecar.accept(conversion("evt-retry").to_string()).await;
    let ids = delivery_ids(&answer);
    assert_eq!(ids.len(), 1);
    let delivered = sidecar.wait_status(&ids[0], "delivered").await;
    assert_eq!(delivered["attempts"], 2);
    assert_eq!(delivered["last_status_code"], 200);

    let got = target.requests();
    assert_eq!(got.len(), 2);
    let keys: Vec<_> = got.iter().map(|r| r.header("idempotency-key")).collect();
    assert_eq!(keys, vec![Some(ids[0].as_str()), Some(ids[0].as_str())]);
    assert_eq!(got[0].body, got[1].body, "a retry sends the same body");

    let listed = sidecar.deliveries("status=delivered").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], ids[0].as_str());
    assert!(sidecar.deliveries("status=pending").await.is_empty());
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_goes_dead_and_a_replay_delivers_it() {
    let target = Target::start().await;
    target.script([Reply::with_body(404, "no such hook")]);
    let sidecar = Sidecar::start(&webhook("gone", "conversion", "", &target.url("/x"), "")).await;

    let answer = sidecar.accept(conversion("evt-404").to_string()).await;
    let id = delivery_ids(&answer).remove(0);
    let dead = sidecar.wait_status(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "a 404 is not retried");
    assert_eq!(dead["last_status_code"], 404);
    let listed = sidecar.deliveries("status=dead&webhook=gone").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(target.count(), 1);

    // The target is fixed (it answers 200 from now on); the operator replays.
    let replay = sidecar
        .admin_post(&format!("/v1/deliveries/{id}/retry"))
        .await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text());
    let delivered = sidecar.wait_status(&id, "delivered").await;
    assert_eq!(delivered["last_status_code"], 200);
    let got = target.requests();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|r| r.header("idempotency-key") == Some(id.as_str()))
    );

    // Only dead deliveries are replayed.
    let again = sidecar
        .admin_post(&format!("/v1/deliveries/{id}/retry"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    sidecar.shutdown().await;
}

/// A hanging target for conversions (`slow`, with `timeout` and no retries) and an answering one
/// for refunds (`fast`), behind a sidecar whose settings `tweak` adjusts.
async fn slow_and_fast(
    timeout: &str,
    tweak: impl FnOnce(&mut ServeConfig) + 'static,
) -> (Target, Target, Sidecar) {
    let slow = Target::start().await;
    slow.set_default(Reply::Hang);
    let fast = Target::start().await;
    let rules = [
        webhook(
            "slow",
            "conversion",
            "",
            &slow.url("/slow"),
            &format!("    timeout {timeout}\n    retries 0\n"),
        ),
        webhook("fast", "refund", "", &fast.url("/fast"), ""),
    ]
    .concat();
    let sidecar = Sidecar::builder()
        .file("main.whc", &rules)
        .config(tweak)
        .start()
        .await;
    (slow, fast, sidecar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_times_out_without_delaying_another() {
    // Long enough that a stalled shared machine still gets the fast one through while the
    // slow one hangs.
    let (slow, fast, sidecar) = slow_and_fast("2s", |_| {}).await;

    let answer = sidecar.accept(conversion("evt-slow").to_string()).await;
    let slow_id = delivery_ids(&answer).remove(0);
    slow.wait_for(1).await;
    let mut refund = conversion("evt-fast");
    refund["type"] = "refund".into();
    sidecar.accept(refund.to_string()).await;
    let fast_got = fast.wait_for(1).await;

    // The slow attempt ends with the timeout, which closes its connection.
    let dead = sidecar.wait_status(&slow_id, "dead").await;
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("no answer within 2 s"), "{dead:#?}");
    assert!(dead["last_status_code"].is_null());
    slow.wait("the slow target to see its client go", |r| {
        r[0].ended.is_some()
    })
    .await;
    let slow_req = &slow.requests()[0];
    let slow_ended = slow_req.ended.unwrap();
    assert!(
        slow_req.at < fast_got[0].at && fast_got[0].at < slow_ended,
        "the fast target's request (tick {}) arrived while the slow one (ticks {}..{}) hung",
        fast_got[0].at,
        slow_req.at,
        slow_ended
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_slow_endpoint_does_not_delay_another() {
    let (slow, fast, sidecar) = slow_and_fast("30s", |c| {
        c.limits.overall = 3;
        c.limits.per_endpoint = 2;
    })
    .await;

    // More slow deliveries than the slow endpoint's slots, and than all the slots.
    for i in 0..6 {
        sidecar
            .accept(conversion(&format!("slow-{i}")).to_string())
            .await;
    }
    slow.wait_for(2).await;
    let mut refund = conversion("fast-1");
    refund["type"] = "refund".into();
    sidecar.accept(refund.to_string()).await;
    let fast_got = fast.wait_for(1).await;

    let slow_got = slow.requests();
    assert_eq!(
        slow_got.len(),
        2,
        "the slow endpoint gets at most its 2 slots"
    );
    for r in &slow_got {
        assert!(
            r.at < fast_got[0].at,
            "the slow requests were on the wire first"
        );
        assert!(
            r.ended.is_none_or(|end| end > fast_got[0].at),
            "the slow requests still hung when the fast one arrived"
        );
    }
    assert_eq!(
        sidecar
            .deliveries("status=pending&webhook=slow")
            .await
            .len(),
        6
    );
    // Shutdown gives up on the hanging attempts after the grace period, cleanly; they stay
    // pending for the next start.
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let elsewhere = Target::start().await;
    let target = Target::start().await;
    target.script([Reply::Answer {
        status: 302,
        headers: vec![("location".into(), elsewhere.url("/moved"))],
        body: String::new(),
    }]);
    let sidecar = Sidecar::start(&webhook(
        "moved",
        "conversion",
        "",
        &target.url("/old"),
        "    retries 0\n",
    ))
    .await;

    let answer = sidecar.accept(conversion("evt-302").to_string()).await;
    let id = delivery_ids(&answer).remove(0);
    let dead = sidecar.wait_status(&id, "dead").await;
    assert_eq!(dead["last_status_code"], 302);
    assert_eq!(target.count(), 1);
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_clean_restart() {
    let target = Target::start().await;
    // Down (503) until the restart; retries far apart so the delivery waits in the store.
    target.set_default(Reply::status(503));
    let sidecar = Sidecar::builder()
        .file(
            "main.whc",
            &webhook("later", "conversion", "", &target.url("/"), ""),
        )
        .config(|c| {
            c.retry = whc::deliver::RetryPolicy::try_new(
                vec![std::time::Duration::from_millis(300); 20],
                0.0,
            )
            .unwrap();
        })
        .start()
        .await;
    let answer = sidecar.accept(conversion("evt-restart").to_string()).await;
    let id = delivery_ids(&answer).remove(0);
    target.wait_for(1).await;

    let sidecar = sidecar.restart().await;
    target.set_default(Reply::status(200));
    let delivered = sidecar.wait_status(&id, "delivered").await;
    assert!(
        delivered["attempts"].as_u64().unwrap() >= 2,
        "{delivered:#}"
    );
    let got = target.requests();
    assert!(
        got.iter()
            .all(|r| r.header("idempotency-key") == Some(id.as_str()))
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_missing_from_the_environment_sends_nothing() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook(
        "unsigned",
        "conversion",
        "",
        &target.url("/"),
        "    secret env(\"WHC_E2E_NOT_SET\")\n",
    ))
    .await;
    let answer = sidecar.accept(conversion("evt-nosecret").to_string()).await;
    let id = delivery_ids(&answer).remove(0);
    let dead = sidecar.wait_status(&id, "dead").await;
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("WHC_E2E_NOT_SET"),
        "{dead:#}"
    );
    assert_eq!(target.count(), 0, "an unsigned request went out");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let target = Target::start().await;
    target.script([Reply::Answer {
        status: 429,
        headers: vec![("retry-after".into(), "2".into())],
        body: "slow down".into(),
    }]);
    let sidecar = Sidecar::start(&webhook("limited", "conversion", "", &target.url("/"), "")).await;
    let answer = sidecar.accept(conversion("evt-429").to_string()).await;
    let id = delivery_ids(&answer).remove(0);

    // After the 429 the store schedules the retry at least 2 s after the answer, although
    // the retry schedule says 50 ms.
    let waiting = crate::support::wait_until_async(
        "the 429 to be recorded",
        || sidecar.delivery(&id),
        |d| d["attempts"] == 1,
    )
    .await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["last_status_code"], 429);
    // The answer came at the earliest `last_attempt_ms` after the delivery was created.
    let next = waiting["next_attempt_at"].as_i64().unwrap();
    let answered =
        waiting["created_at"].as_i64().unwrap() + waiting["last_attempt_ms"].as_i64().unwrap();
    assert!(
        next - answered >= 2000,
        "retry scheduled {} ms after the 429: {waiting:#}",
        next - answered
    );
    let delivered = sidecar.wait_status(&id, "delivered").await;
    assert_eq!(delivered["attempts"], 2);
    assert_eq!(target.count(), 2);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoints_backlog_larger_than_the_claims_does_not_starve_another() {
    // More deliveries wait for the hung endpoint than the dispatcher may claim in all: they
    // must not hold every claim while the healthy endpoint's delivery waits behind them.
    let (slow, fast, sidecar) = slow_and_fast("60s", |c| {
        c.limits.per_endpoint = 2;
        c.limits.claimed = 50;
    })
    .await;

    let backlog: Vec<_> = (0..300).map(|i| conversion(&format!("slow-{i}"))).collect();
    sidecar
        .accept(serde_json::Value::Array(backlog).to_string())
        .await;
    slow.wait_for(2).await;
    let mut refund = conversion("fast-1");
    refund["type"] = "refund".into();
    let fast_id = delivery_ids(&sidecar.accept(refund.to_string()).await).remove(0);
    let fast_got = fast.wait_for(1).await;
    sidecar.wait_status(&fast_id, "delivered").await;

    let slow_got = slow.requests();
    assert_eq!(slow_got.len(), 2, "the hung endpoint holds its 2 slots");
    assert!(
        slow_got.iter().all(|r| r.ended.is_none()),
        "the fast delivery went out while the hung ones still hung"
    );
    assert!(fast_got[0].at > slow_got[1].at);
    let metrics = sidecar.metrics().await;
    assert_eq!(counter(&metrics, "whc_queue_depth"), 300.0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_whose_body_never_ends_is_delivered_once_with_a_note() {
    let target = Target::start().await;
    target.set_default(Reply::Endless);
    let sidecar = Sidecar::start(&webhook(
        "trickle",
        "conversion",
        "",
        &target.url("/"),
        "    timeout 300ms\n",
    ))
    .await;
    let id = delivery_ids(&sidecar.accept(conversion("evt-trickle").to_string()).await).remove(0);
    let delivered = sidecar.wait_status(&id, "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(delivered["last_status_code"], 200);
    assert_eq!(delivered["response_excerpt"], "partial");
    let note = delivered["last_error"].as_str().unwrap_or_default();
    assert!(
        note.contains("still arriving at the deadline"),
        "{delivered:#?}"
    );
    assert_eq!(target.count(), 1, "a 200 is not sent again");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_breaks_off_short_of_its_length_is_retried_not_delivered() {
    let target = Target::speaking(Wire::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\nshort",
    ))
    .await;
    // The test schedule allows one retry: two attempts, then dead.
    let sidecar = Sidecar::start(&webhook("short", "conversion", "", &target.url("/"), "")).await;
    let id = delivery_ids(&sidecar.accept(conversion("evt-short").to_string()).await).remove(0);
    let dead = sidecar.wait_status(&id, "dead").await;
    assert_eq!(dead["attempts"], 2, "{dead:#?}");
    assert_eq!(dead["last_status_code"], 200);
    assert_eq!(dead["response_excerpt"], "short");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "HTTP 200, but the answer is incomplete: the body ended after 5 of the 1073741824 bytes"
        ),
        "{error}"
    );
    assert_eq!(target.connections(), 2);
    sidecar.shutdown().await;
}
